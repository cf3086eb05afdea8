"""Pixel access to decoded frames that leaves untouched pixels bit-exact.

Converting a whole YUV frame to BGR and back changes pixels everywhere (4:2:0 chroma and
rounding), so an edited frame is rebuilt from the source frame's own planes: only the pixels
under the mouth mask are replaced by the converted patch, everything else is copied as decoded.
"""

from __future__ import annotations

import av
import numpy as np

# Colourspace tags that libswscale understands; other values fall back to its default (BT.601).
_SWS_COLORSPACES = {1: "itu709", 5: "itu601", 6: "smpte170m", 7: "smpte240m", 9: "bt2020"}


def to_bgr(frame: av.VideoFrame, width: int | None = None, height: int | None = None):
    """The frame as (H, W, 3) uint8 BGR, optionally scaled (one libswscale pass)."""
    return frame.to_ndarray(format="bgr24", width=width, height=height)


def is_deep(frame: av.VideoFrame) -> bool:
    """Whether the frame has more than 8 bits per sample (10-bit, 12-bit...)."""
    return frame.format.components[0].bits > 8


def to_bgr_at_depth(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) BGR at the frame's own precision: uint8 for 8-bit, else uint16 (0..65535)."""
    return frame.to_ndarray(format="bgr48le", threads=1) if is_deep(frame) else to_bgr(frame)


def _plane_dtype(frame: av.VideoFrame) -> np.dtype:
    return np.dtype(np.uint16) if frame.format.components[0].bits > 8 else np.dtype(np.uint8)


def plane_arrays(frame: av.VideoFrame) -> list[np.ndarray]:
    """Copies of the frame's planes as 2-D arrays (uint8, or uint16 for > 8-bit formats)."""
    dtype = _plane_dtype(frame)
    out = []
    for plane in frame.planes:
        row = plane.line_size // dtype.itemsize
        arr = np.frombuffer(plane, dtype).reshape(plane.height, row)[:, : plane.width]
        out.append(arr.copy())
    return out


def frame_from_planes(planes: list[np.ndarray], like: av.VideoFrame,
                      size: tuple[int, int] | None = None) -> av.VideoFrame:
    """A new frame of ``like``'s format, timing and colour tags holding ``planes``, of
    ``like``'s size or ``size`` (width, height)."""
    width, height = size or (like.width, like.height)
    frame = av.VideoFrame(width, height, like.format.name)
    dtype = _plane_dtype(like)
    for plane, data in zip(frame.planes, planes):
        buf = np.zeros((plane.height, plane.line_size // dtype.itemsize), dtype)
        buf[:, : plane.width] = data
        plane.update(buf)
    frame.pts = like.pts
    frame.time_base = like.time_base
    frame.colorspace = like.colorspace
    frame.color_range = like.color_range
    return frame


def pad_frame(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` enlarged to ``width`` x ``height`` by repeating its last column and row (what
    a 4:2:0 encoder needs of an odd-sized picture; nothing is resampled)."""
    if not is_planar_yuv(frame):  # packed or RGB pictures: planar 4:4:4 at their depth
        frame = frame.reformat(format="yuv444p16le" if is_deep(frame) else "yuv444p")
    target = av.VideoFrame(width, height, frame.format.name)
    planes = [np.pad(p, ((0, out.height - p.shape[0]), (0, out.width - p.shape[1])), mode="edge")
              for p, out in zip(plane_arrays(frame), target.planes)]
    return frame_from_planes(planes, frame, (width, height))


def is_planar_yuv(frame: av.VideoFrame) -> bool:
    """Whether :func:`patch_frame` can edit this format in place (planar YUV or grey)."""
    name = frame.format.name
    return name.startswith(("yuv", "yuvj", "gray")) and len(frame.planes) in (1, 3)


def patch_frame(
    frame: av.VideoFrame, frame_bgr: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray
) -> av.VideoFrame:
    """Rebuild ``frame`` with the BGR pixels of ``box`` where ``mask`` > 0.

    Arguments:
        frame: the decoded source frame (planar YUV).
        frame_bgr: (H, W, 3) BGR of the whole frame, already edited inside ``box``: uint8, or
            uint16 (0..65535, see :func:`to_bgr_at_depth`) so that a 10-bit frame is patched
            from 16-bit pixels, not 8-bit ones.
        box: ``x0, y0, x1, y1`` integer face box (exclusive ends) the mask belongs to.
        mask: (y1 - y0, x1 - x0) float mask; pixels where it is 0 keep their source values.

    Returns:
        A new frame; luma and chroma samples outside the mask are bit-identical to ``frame``.
    """
    x0, y0, x1, y1 = box
    planes = plane_arrays(frame)
    # Chroma subsampling: align the patch to whole chroma samples so every replaced chroma
    # sample is converted from the full block of luma pixels it covers.
    sx = max(1, round(frame.width / planes[-1].shape[1]))
    sy = max(1, round(frame.height / planes[-1].shape[0]))
    ax0, ay0 = x0 - x0 % sx, y0 - y0 % sy
    ax1 = min(frame.width, x1 + (-x1) % sx)
    ay1 = min(frame.height, y1 + (-y1) % sy)
    region_mask = np.zeros((ay1 - ay0, ax1 - ax0), bool)
    region_mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0] = mask > 0
    if not region_mask.any():
        return frame
    region = np.ascontiguousarray(frame_bgr[ay0:ay1, ax0:ax1])
    colorspace = _SWS_COLORSPACES.get(int(frame.colorspace or 0))
    bgr_format = "bgr48le" if region.dtype == np.uint16 else "bgr24"
    # One thread: libswscale 8's threaded slices were seen to leave rows of a bgr48le -> 10-bit
    # patch unconverted now and then; a patch is small anyway.
    patch = av.VideoFrame.from_ndarray(region, format=bgr_format).reformat(
        format=frame.format.name, dst_colorspace=colorspace, threads=1
    )
    patch_planes = plane_arrays(patch)
    for i, (dst, src) in enumerate(zip(planes, patch_planes)):
        if i == 0 or len(planes) == 1:
            sel, oy, ox = region_mask, ay0, ax0
        else:  # a chroma sample changes when any luma pixel of its block does
            h, w = src.shape
            padded = np.zeros((h * sy, w * sx), bool)
            padded[: region_mask.shape[0], : region_mask.shape[1]] = region_mask
            sel = padded.reshape(h, sy, w, sx).any(axis=(1, 3))
            oy, ox = ay0 // sy, ax0 // sx
        view = dst[oy : oy + sel.shape[0], ox : ox + sel.shape[1]]
        view[sel] = src[: sel.shape[0], : sel.shape[1]][sel]
    return frame_from_planes(planes, frame)
