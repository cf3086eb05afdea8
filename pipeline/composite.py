"""Paste a generated mouth back into the frame without a visible rectangle.

The reference writes the resized 96x96 prediction straight over the whole face box, which leaves
the "box around the mouth" users complain about. Here the prediction only replaces the lower face
through a feathered mask, and its colour is matched to the frame along the mask's soft edge (where
a seam would show), not over the mouth itself (an open mouth is rightly darker than a closed one).

Composite, per pixel of the face box (all float32, BGR, 0..255 for 8-bit pictures; 0..65535 for
deeper ones, the generator's output scaled by 257, so that a 10-bit picture is blended at its own
precision):
    pred   = resize(generated 96x96, box size, bilinear) + offset
    offset = per-channel weighted mean of (frame - resized) over the edge band of the mask
             (weights m * (1 - m) * 4, largest where the mask is half way)
    out    = round(clip(frame * (1 - m) + pred * m, 0, max))
"""

from __future__ import annotations

import functools

import av
import cv2
import numpy as np

from lipdub.pipeline.media.frames import is_planar_yuv, patch_frame, to_bgr_at_depth

# The mask covers the crop from MASK_TOP (a fraction of the box height, about the nose tip) down,
# inset by MASK_INSET of the width at the sides and bottom, then feathered over FEATHER of the
# box size: everything the generator redraws (rows 48-95 of 96) and a margin to blend.
MASK_TOP = 0.5
MASK_INSET = 0.08
FEATHER = 0.12


@functools.lru_cache(maxsize=64)
def lower_face_mask(height: int, width: int) -> np.ndarray:
    """Feathered lower-face mask of a ``height`` x ``width`` face box, float32 in [0, 1]."""
    mask = np.zeros((height, width), np.float32)
    feather = max(1.0, FEATHER * min(height, width))
    top = int(round(MASK_TOP * height + feather / 2))
    inset_x = int(round(MASK_INSET * width + feather / 2))
    bottom = height - int(round(MASK_INSET * height + feather / 2))
    centre = ((width - 1) / 2, (top + bottom) / 2)
    axes = (max(1, (width - 2 * inset_x) // 2), max(1, (bottom - top) // 2))
    # An ellipse over the lower face, clipped flat at its top, blurred into a soft edge.
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 1.0, -1)
    mask[:top] = 0
    sigma = feather / 2
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma)
    mask[: int(MASK_TOP * height)] = 0  # nothing above the mouth region ever changes
    mask[mask < 1 / 512] = 0  # below half a grey level: leave those pixels exactly as they were
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=64)
def _blend_region(height: int, width: int):
    """Where the mask of a box this size is non-zero, and the colour match's edge weights.

    Returns:
        (rows slice, columns slice, (n, 1) float32 mask values, (n,) float32 edge weights
        m * (1 - m) * 4, their sum): everything the blend touches, flattened; the rest of the
        box is copied as it is.
    """
    mask = lower_face_mask(height, width)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0), np.zeros((0, 1), np.float32), np.zeros(0, np.float32), 0.0
    ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    m = mask[ys, xs].reshape(-1)
    weight = m * (1.0 - m) * 4.0
    return ys, xs, m[:, None].copy(), weight, float(weight.sum())


def composite_face(frame_box: np.ndarray, generated: np.ndarray, *, match_colour: bool = True):
    """Blend a generated 96x96 face into its box.

    Arguments:
        frame_box: (h, w, 3) BGR pixels of the face box in the frame, uint8 or uint16.
        generated: (96, 96, 3) float32 BGR 0..255 generator output for that box.

    Returns:
        (blended (h, w, 3) of ``frame_box``'s dtype, mask (h, w) float32): pixels where the
        mask is 0 are unchanged.
    """
    h, w = frame_box.shape[:2]
    mask = lower_face_mask(h, w)
    ys, xs, m, weight, total = _blend_region(h, w)
    blended = frame_box.copy()
    if not m.size:  # a box too small to hold any mask
        return blended, mask
    # Only the mask's rectangle is worked on (the lower half of the box, about 40 % of it).
    resized = cv2.resize(generated, (w, h), interpolation=cv2.INTER_LINEAR)[ys, xs].reshape(-1, 3)
    top = 255
    if frame_box.dtype == np.uint16:
        top = 65535
        resized = resized * np.float32(65535 / 255)
    frame = frame_box[ys, xs].reshape(-1, 3).astype(np.float32)
    if match_colour and total >= 1e-6:
        # Per-channel offset that makes the prediction meet the frame along the mask's edge.
        resized = resized + (weight @ (frame - resized)) / np.float32(total)
    out = frame * (1.0 - m) + resized * m
    region = np.clip(np.rint(out), 0, top).astype(frame_box.dtype)
    blended[ys, xs] = region.reshape(ys.stop - ys.start, xs.stop - xs.start, 3)
    return blended, mask


def paste_faces(frame: av.VideoFrame, faces: list[tuple[tuple[int, int, int, int], np.ndarray]],
                *, match_colour: bool = True, bgr: np.ndarray | None = None) -> av.VideoFrame:
    """Composite generated faces into a decoded frame at its own bit depth.

    Arguments:
        frame: the decoded source frame.
        faces: (box ``x0, y0, x1, y1``, generated 96x96 float32 BGR 0..255) per face.
        match_colour: see :func:`composite_face`.
        bgr: the frame as 8-bit BGR when the caller has it already (used for 8-bit frames).

    Returns:
        The new frame (``frame`` itself when it cannot be patched or nothing changes); samples
        outside every mask are the source's, bit for bit.
    """
    if not faces or not is_planar_yuv(frame):
        return frame
    canvas = bgr if bgr is not None and frame.format.components[0].bits <= 8 else (
        to_bgr_at_depth(frame))
    for box, generated in faces:
        x0, y0, x1, y1 = box
        blended, mask = composite_face(canvas[y0:y1, x0:x1],
                                       np.asarray(generated, np.float32),
                                       match_colour=match_colour)
        canvas[y0:y1, x0:x1] = blended
        frame = patch_frame(frame, canvas, (x0, y0, x1, y1), mask)
    return frame
