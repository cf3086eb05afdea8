"""Provenance: what every output says about itself in its container metadata.

A dubbed file declares that its picture was altered by lip sync, by which tool and version, and
which frame ranges (with source timecode when known) were changed. MOV/MP4 store the keys as
``mdta`` metadata (``ffprobe -show_format`` lists them), Matroska as global tags.
"""

from __future__ import annotations

import json
from fractions import Fraction

from lipdub.pipeline.media.timecode import Timecode, frames_to_timecode

TOOL = "lipdub"


def tool_version() -> str:
    """The installed lipdub version ("unknown" when run from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(TOOL)
    except PackageNotFoundError:
        return "unknown"


def provenance_metadata(segments: list[dict], *, rate: Fraction | None,
                        timecode: Timecode | None = None) -> dict[str, str]:
    """Container tags for an output whose ``segments`` were altered.

    Arguments:
        segments: dicts with ``start`` and ``end`` (frames, end exclusive) and optionally
            ``character`` and ``shot``.
        rate: the picture rate (for timecodes).
        timecode: the source's start timecode, if any.
    """
    listed = []
    for seg in segments:
        item = {k: seg[k] for k in ("start", "end", "character", "shot") if seg.get(k) is not None}
        if timecode is not None and rate:
            item["tc_in"] = frames_to_timecode(timecode.frames + seg["start"], rate,
                                               timecode.drop_frame)
            item["tc_out"] = frames_to_timecode(timecode.frames + seg["end"], rate,
                                                timecode.drop_frame)
        listed.append(item)
    version = tool_version()
    summary = (f"Picture altered by lip sync ({TOOL} {version}): {len(listed)} segment(s) "
               "changed, listed in lipdub_segments" if listed else
               f"Processed by {TOOL} {version} (lip sync); no picture segment was changed")
    return {
        "comment": summary,
        "lipdub_altered": "lip-sync" if listed else "none",
        "lipdub_tool": TOOL,
        "lipdub_version": version,
        "lipdub_segments": json.dumps(listed, separators=(",", ":")),
    }
