"""What routing decided, shot by shot, in a form people read: QC's routing strips and tables.

For every shot with speech or faces: the faces on screen (their spans), where the original audio
is heard, where each character's stem speaks, and what was synced on which face; plus every
decision with its rule and the evidence of each face. Frame ranges here are ``[first, end)``
film frames, as everywhere in the report.
"""

from __future__ import annotations

import cv2
import numpy as np

from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.routing import Decision
from lipdub.pipeline.stems import SpeechSegment


def _spans(mask: np.ndarray, offset: int) -> list[list[int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    return [[int(a) + offset, int(b) + offset] for a, b in zip(edges[::2], edges[1::2])]


def routing_by_shot(scan: FilmScan, tracks: dict[int, list[TrackInfo]],
                    segments: list[SpeechSegment], decisions: list[Decision],
                    heard: np.ndarray | None) -> list[dict]:
    """Per shot: faces, original speech, stem speech, synced spans and decisions (JSON-able)."""
    out = []
    for shot in scan.shots:
        mine = [d for d in decisions if d.shot == shot.index]
        faces = tracks.get(shot.index, [])
        if not mine and not faces:
            continue
        stems: dict[str, list[list[int]]] = {}
        for seg in segments:
            a = max(scan.frame_at(seg.start), shot.start)
            b = min(scan.frame_at(seg.end), shot.end)
            if b > a:
                stems.setdefault(seg.character, []).append([a, b])
        out.append({
            "shot": shot.index, "start": shot.start, "end": shot.end,
            "faces": [{"track": t.track_id, "from_left": t.order, "first": t.first,
                       "end": t.last + 1} for t in faces],
            "original_heard": None if heard is None else _spans(heard[shot.start:shot.end],
                                                                shot.start),
            "stems": stems,
            "decisions": [{"character": d.character, "first": d.start_frame,
                           "end": d.end_frame, "track": d.track_id, "rule": d.rule,
                           "reason": d.reason, "score": d.score, "margin": d.margin,
                           "evidence": [e.describe() for e in d.evidence]} for d in mine],
        })
    return out


COLOURS = [(40, 110, 230), (60, 170, 60), (200, 120, 30), (170, 60, 170), (30, 170, 200)]
ROW, LABEL, WIDTH = 22, 150, 900


def routing_strip(shot: dict) -> np.ndarray:
    """A picture of one shot's routing: rows are time lines over the shot's frames.

    Rows: the original audio (grey where heard), each character's stem (its colour where it
    speaks), then each face (light grey where on screen, the character's colour where synced).
    Pieces left alone are on no face row; the decision table under the strip says why.
    """
    characters = sorted({*shot["stems"], *(d["character"] for d in shot["decisions"])})
    colour = {c: COLOURS[i % len(COLOURS)] for i, c in enumerate(characters)}
    rows = ["original audio", *(f"stem {c}" for c in characters),
            *(f"face {f['track']} ({_side(f['from_left'], len(shot['faces']))})"
              for f in shot["faces"])]
    image = np.full((ROW * len(rows) + 24, LABEL + WIDTH + 10, 3), 255, np.uint8)
    first, length = shot["start"], max(shot["end"] - shot["start"], 1)

    def x(frame: int) -> int:
        return LABEL + int(round((frame - first) / length * WIDTH))

    def bar(row: int, a: int, b: int, bgr, fill: float = 1.0) -> None:
        top = row * ROW + 4
        cv2.rectangle(image, (x(a), top), (max(x(b) - 1, x(a)), top + int((ROW - 8) * fill)),
                      bgr, -1)

    for row, label in enumerate(rows):
        cv2.putText(image, label[:22], (4, row * ROW + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(image, (LABEL, row * ROW + ROW - 2), (LABEL + WIDTH, row * ROW + ROW - 2),
                 (225, 225, 225), 1)
    if shot["original_heard"] is None:
        cv2.putText(image, "no original audio", (LABEL + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (0, 0, 160), 1, cv2.LINE_AA)
    for a, b in shot["original_heard"] or []:
        bar(0, a, b, (120, 120, 120))
    for i, c in enumerate(characters, start=1):
        for a, b in shot["stems"].get(c, []):
            bar(i, a, b, colour[c])
    face_row = {f["track"]: 1 + len(characters) + i for i, f in enumerate(shot["faces"])}
    for f in shot["faces"]:
        bar(face_row[f["track"]], f["first"], f["end"], (215, 215, 215))
    for d in shot["decisions"]:
        if d["track"] is not None and d["track"] in face_row:
            bar(face_row[d["track"]], d["first"], d["end"], colour[d["character"]])
    bottom = ROW * len(rows) + 16
    cv2.putText(image, f"frames {shot['start']}-{shot['end'] - 1}", (LABEL, bottom),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    return image


def _side(order: int, count: int) -> str:
    if count == 1:
        return "alone"
    if order in (0, count - 1):
        return "left" if order == 0 else "right"
    return f"{order + 1} of {count} from left"
