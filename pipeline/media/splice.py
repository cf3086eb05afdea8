"""Edited pictures of an intra-only master keep the source's coded bytes outside the edit.

ProRes and DNxHR code a picture in independent pieces: ProRes in slices (a run of up to eight
16x16 macroblocks of one macroblock row, each with its own quantiser and size in an index
table), DNxHR in macroblock rows (each found through a table of byte offsets, its DC prediction
reset at the row's start). When a lip-synced picture is encoded again, every piece that does
not touch a changed face box can be taken from the source's packet instead: decoded, those
pixels are the source's own, bit for bit, and the generation loss of a re-encode stays inside
the pieces that hold the new mouth.

Splicing needs both packets laid out alike: the same frame header (quantisation matrices,
size, chroma format; the encoder's four-letter vendor tag aside) and the same piece layout.
When they differ, or for interlaced pictures, the freshly encoded packet is used whole and the
reason is returned. The byte layouts follow FFmpeg's decoders (``proresdec2.c``,
``dnxhddec.c``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), picture pixels

MB = 16  # macroblock size, both codecs


@dataclass(frozen=True)
class SpliceResult:
    """The packet bytes to write, and how many coded pieces came from the source."""

    data: bytes
    pieces_from_source: int
    pieces_total: int
    reason: str = ""


def _touches(x0: int, y0: int, x1: int, y1: int, boxes: Sequence[Box]) -> bool:
    return any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in boxes)


def _whole(edited: bytes, reason: str) -> SpliceResult:
    return SpliceResult(edited, 0, 0, reason)


# --- ProRes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ProResPicture:
    frame_header: bytes  # from offset 8 (after size and 'icpf'), hdr_size bytes
    picture_header: bytes  # hdr_size bytes
    slices: list[bytes]
    rects: list[tuple[int, int, int]]  # (mb_x, mb_y, mb_count) per slice


def _parse_prores(data: bytes) -> _ProResPicture | str:
    if len(data) < 28 or data[4:8] != b"icpf":
        return "not a ProRes frame"
    frame_size = struct.unpack(">I", data[:4])[0]
    buf = data[8:frame_size]
    hdr_size = struct.unpack(">H", buf[:2])[0]
    width, height = struct.unpack(">HH", buf[8:12])
    if (buf[12] >> 2) & 3:
        return "interlaced ProRes"
    pic = buf[hdr_size:]
    pic_hdr_size = pic[0] >> 3
    pic_size = struct.unpack(">I", pic[1:5])[0]
    log2_w, log2_h = pic[7] >> 4, pic[7] & 0xF
    if log2_h != 0 or pic_size > len(pic):
        return "unusual ProRes picture layout"
    mb_width, mb_height = (width + 15) >> 4, (height + 15) >> 4
    per_row = (mb_width >> log2_w) + bin(mb_width & ((1 << log2_w) - 1)).count("1")
    count = mb_height * per_row
    index = pic[pic_hdr_size: pic_hdr_size + 2 * count]
    sizes = struct.unpack(f">{count}H", index)
    offset = pic_hdr_size + 2 * count
    slices, rects = [], []
    mb_x = mb_y = 0
    step = 1 << log2_w
    for size in sizes:
        while mb_width - mb_x < step:
            step >>= 1
        slices.append(bytes(pic[offset: offset + size]))
        rects.append((mb_x, mb_y, step))
        offset += size
        mb_x += step
        if mb_x == mb_width:
            step, mb_x, mb_y = 1 << log2_w, 0, mb_y + 1
    if offset > pic_size:
        return "truncated ProRes picture"
    return _ProResPicture(bytes(buf[:hdr_size]), bytes(pic[:pic_hdr_size]), slices, rects)


def _without_vendor(frame_header: bytes) -> bytes:
    return frame_header[:4] + frame_header[8:]


def splice_prores(source: bytes, edited: bytes, boxes: Sequence[Box]) -> SpliceResult:
    """The edited ProRes frame with every slice that touches no box taken from ``source``."""
    src, new = _parse_prores(source), _parse_prores(edited)
    if isinstance(src, str) or isinstance(new, str):
        return _whole(edited, src if isinstance(src, str) else new)
    if _without_vendor(src.frame_header) != _without_vendor(new.frame_header):
        return _whole(edited, "the source's ProRes frame header (matrices, tags) differs")
    if src.rects != new.rects or src.picture_header[7:] != new.picture_header[7:] or \
            src.picture_header[0] != new.picture_header[0]:
        return _whole(edited, "the source's ProRes slice layout differs")
    chosen, copied = [], 0
    for (mb_x, mb_y, n), old, fresh in zip(src.rects, src.slices, new.slices):
        if _touches(mb_x * MB, mb_y * MB, (mb_x + n) * MB, (mb_y + 1) * MB, boxes):
            chosen.append(fresh)
        else:
            chosen.append(old)
            copied += 1
    index = struct.pack(f">{len(chosen)}H", *(len(s) for s in chosen))
    body = b"".join(chosen)
    pic_size = len(new.picture_header) + len(index) + len(body)
    picture = new.picture_header[:1] + struct.pack(">I", pic_size) + new.picture_header[5:]
    frame = new.frame_header + picture + index + body
    return SpliceResult(struct.pack(">I", 8 + len(frame)) + b"icpf" + frame, copied,
                        len(chosen))


# --- DNxHR --------------------------------------------------------------------------------------

_DNX_TABLE = 0x170  # macroblock-row offsets (4 bytes each) start here
_DNX_TRAILER = b"\x60\x0d\xc0\xde"


@dataclass(frozen=True)
class _DnxPicture:
    header: bytes
    rows: list[bytes]
    width: int
    frame_size: int


def _parse_dnxhd(data: bytes) -> _DnxPicture | str:
    if len(data) < 0x280:
        return "not a DNxHD/HR frame"
    if data[:4] not in (b"\x00\x00\x02\x80", b"\x00\x00\x03\x8c") or data[4] not in (1, 3):
        return "not a DNxHD/HR frame"
    if data[5] & 2:  # interlaced (two fields)
        return "interlaced DNxHD"
    width = struct.unpack(">H", data[0x1A:0x1C])[0]
    mb_height = struct.unpack(">H", data[0x16C:0x16E])[0]
    # Up to 68 rows the table fits a 0x280-byte header; taller DNxHR pictures extend it.
    data_offset = 0x280 if mb_height <= 68 else _DNX_TABLE + (mb_height << 2)
    if len(data) < data_offset:
        return "truncated DNxHD frame"
    starts = list(struct.unpack(f">{mb_height}I", data[_DNX_TABLE: _DNX_TABLE + 4 * mb_height]))
    end = len(data) - 4 if data[-4:] == _DNX_TRAILER else len(data)
    bounds = starts + [end - data_offset]
    if any(b < a for a, b in zip(bounds, bounds[1:])):
        return "unordered DNxHD row table"
    rows = [bytes(data[data_offset + a: data_offset + b]) for a, b in zip(bounds, bounds[1:])]
    # The frame's zero padding up to its fixed size trails the last row; zeros are what a
    # decoder reading past the row's end finds there anyway, so they need not travel with it.
    rows[-1] = rows[-1].rstrip(b"\x00")
    return _DnxPicture(bytes(data[:data_offset]), rows, width, len(data))


def splice_dnxhd(source: bytes, edited: bytes, boxes: Sequence[Box]) -> SpliceResult:
    """The edited DNxHR frame with every macroblock row that touches no box from ``source``.

    A DNxHR frame of a given profile and size has a fixed byte size; the spliced rows must fit
    it (they are padded up to it), or the edited frame is used whole.
    """
    src, new = _parse_dnxhd(source), _parse_dnxhd(edited)
    if isinstance(src, str) or isinstance(new, str):
        return _whole(edited, src if isinstance(src, str) else new)
    if src.header[:_DNX_TABLE] != new.header[:_DNX_TABLE] or len(src.rows) != len(new.rows) \
            or src.frame_size != new.frame_size:
        return _whole(edited, "the source's DNxHR frame header or size differs")
    chosen, copied = [], 0
    for y, (old, fresh) in enumerate(zip(src.rows, new.rows)):
        if _touches(0, y * MB, src.width, (y + 1) * MB, boxes):
            chosen.append(fresh)
        else:
            chosen.append(old)
            copied += 1
    offsets, position = [], 0
    for row in chosen:
        offsets.append(position)
        position += len(row)
    header = bytearray(new.header)
    header[_DNX_TABLE: _DNX_TABLE + 4 * len(offsets)] = struct.pack(f">{len(offsets)}I", *offsets)
    body = bytes(header) + b"".join(chosen)
    room = new.frame_size - 4 - len(body)
    if room < 0:
        return _whole(edited, "the spliced DNxHR rows do not fit the frame size")
    return SpliceResult(body + bytes(room) + _DNX_TRAILER, copied, len(chosen))


SPLICERS = {"prores": splice_prores, "dnxhd": splice_dnxhd}
