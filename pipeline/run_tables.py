"""The film run's tables for people (Prefect table artifacts), in one vocabulary.

Every table speaks the same way: frames are half-open, ``first frame`` shown to ``end frame``
not shown (the tables' descriptions say so), a timecode in and out beside them (the out point
is the last frame shown; the film's own timecode, else counted from 00:00:00:00), characters by
name, faces described by their place ("face 2 of 3 from the left") with the track id beside.
Two characters routed onto overlapping frames of different faces are said so in the routing
table.
"""

from __future__ import annotations

from collections.abc import Iterable

from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.media.timecode import FrameClock
from lipdub.pipeline.routing import Decision
from lipdub.pipeline.stems import StemAnalysis

FRAMES_NOTE = "frames: [first, end), the end frame not shown; timecode out: the last frame shown"


def describe_faces(tracks: Iterable[TrackInfo]) -> dict[tuple[int, int], str]:
    """(shot, track id) -> "face 2 of 3 from the left" among the shot's steady faces."""
    by_shot: dict[int, list[TrackInfo]] = {}
    for track in tracks:
        by_shot.setdefault(track.shot, []).append(track)
    names = {}
    for shot, found in by_shot.items():
        places = sorted({t.order for t in found})
        for t in found:
            names[(shot, t.track_id)] = (f"face {places.index(t.order) + 1} of {len(places)} "
                                         "from the left")
    return names


def shot_rows(scan: FilmScan, clock: FrameClock) -> list[dict]:
    return [{"shot": s.index, **clock.span(s.start, s.end),
             "start (s)": round(s.start_time - scan.times[0], 3)} for s in scan.shots]


def track_rows(tracks: Iterable[TrackInfo], clock: FrameClock) -> list[dict]:
    tracks = list(tracks)
    faces = describe_faces(tracks)
    return [{"shot": t.shot, "face": faces[(t.shot, t.track_id)], "track": t.track_id,
             **clock.span(t.first, t.last + 1)} for t in tracks]


def segment_rows(stems: Iterable[StemAnalysis], clock: FrameClock,
                 scan: FilmScan) -> list[dict]:
    """Speech found in each stem (seconds from the first picture, and the frames they cover)."""
    rows = []
    for stem in stems:
        for seg in stem.segments:
            first = scan.frame_at(seg.start)
            rows.append({"character": seg.character, "start (s)": round(seg.start, 3),
                         "end (s)": round(seg.end, 3),
                         **clock.span(first, max(first + 1, scan.frame_at(seg.end)))})
    return rows


def routing_rows(decisions: list[Decision], tracks: Iterable[TrackInfo],
                 clock: FrameClock) -> list[dict]:
    """What happened to each piece of speech, with the faces named and overlaps said."""
    faces = describe_faces(tracks)

    def face(d: Decision) -> str:
        if d.track_id is None:
            return "left alone"
        return f"{faces.get((d.shot, d.track_id), 'face')} (track {d.track_id})"

    rows = []
    for d in decisions:
        clashes = [o for o in decisions if o is not d and o.synced and d.synced
                   and o.shot == d.shot and o.track_id != d.track_id
                   and o.character != d.character
                   and o.start_frame < d.end_frame and d.start_frame < o.end_frame]
        overlap = "; ".join(
            f"overlaps {o.character} on {face(o)} at frames "
            f"[{max(o.start_frame, d.start_frame)}, {min(o.end_frame, d.end_frame)})"
            for o in clashes)
        rows.append({"character": d.character, "shot": d.shot,
                     **clock.span(d.start_frame, d.end_frame), "face": face(d),
                     "rule": d.rule, "reason": d.reason, "score": d.score, "margin": d.margin,
                     "overlap": overlap or "none",
                     "evidence": "; ".join(e.describe() for e in d.evidence)})
    return rows
