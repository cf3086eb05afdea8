"""Face tracks: detections on (downscaled) keyframes, linked by overlap, interpolated per frame.

Detection is the costly step, so it runs on every ``every``-th frame of a small copy of the
picture; boxes in between are interpolated, which also removes most detector jitter. A centred
moving average (float maths, unlike the reference's forward-looking integer window) smooths what
is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lipdub.models.face_detector import Detections
from lipdub.pipeline.errors import LipdubError


def track_gap(every: int) -> int:
    """Most frames a track may go unseen and stay one track, for detection every ``every``-th
    frame: two keyframes missed, and never under half a second at 25 fps (a blink of the
    detector on a turned head is not a new face)."""
    return max(2 * every, 12)


def detection_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size of the picture copy a detector sees: the long side at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


@dataclass
class FaceTrack:
    """One face followed through a run of frames.

    Attributes:
        track_id: its number, in order of first appearance.
        frames: (K,) frame indices where the face was detected (ascending).
        boxes: (K, 4) ``x1, y1, x2, y2`` in frame pixels.
        scores: (K,) detector confidences.
        landmarks: (K, 5, 2) eyes, nose, mouth corners.
    """

    track_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)

    def add(self, frame: int, box: np.ndarray, score: float, landmarks: np.ndarray) -> None:
        self.frames.append(int(frame))
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))
        self.landmarks.append(np.asarray(landmarks, dtype=np.float64))

    @property
    def first_frame(self) -> int:
        return self.frames[0]

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    @property
    def mean_area(self) -> float:
        b = np.asarray(self.boxes)
        return float(np.mean((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))

    @property
    def mean_centre(self) -> np.ndarray:
        b = np.asarray(self.boxes)
        return np.array([(b[:, 0] + b[:, 2]).mean() / 2, (b[:, 1] + b[:, 3]).mean() / 2])

    def boxes_for_frames(self, n_frames: int, *, hold: int = 0, max_gap: int = 0) -> np.ndarray:
        """Per-frame boxes over ``range(n_frames)``, NaN where the face is not covered.

        Arguments:
            n_frames: length of the run.
            hold: frames before the first and after the last detection that keep those boxes
                (the keyframe spacing, so that the ends of a run are not dropped).
            max_gap: detections further apart than this are not interpolated across.
        """
        out = np.full((n_frames, 4), np.nan)
        frames = np.asarray(self.frames)
        boxes = np.asarray(self.boxes)
        for (fa, ba), (fb, bb) in zip(zip(frames, boxes), zip(frames[1:], boxes[1:])):
            if max_gap and fb - fa > max_gap:
                continue
            t = (np.arange(fa, fb + 1) - fa) / max(fb - fa, 1)
            out[fa : fb + 1] = ba[None] + t[:, None] * (bb - ba)[None]
        out[frames] = boxes
        start, end = max(frames[0] - hold, 0), min(frames[-1] + hold + 1, n_frames)
        out[start : frames[0]] = boxes[0]
        out[frames[-1] + 1 : end] = boxes[-1]
        return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of ``a`` (N,4) and ``b`` (M,4) -> (N, M)."""
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def faces_moved(a: Detections, b: Detections, min_iou: float) -> bool:
    """Whether two keyframes' faces differ enough that the frames between need detecting.

    True when the face count changes (a face entered, left, or the shot cut) or when some face
    of either keyframe overlaps no face of the other by ``min_iou`` (fast motion, where
    interpolating between the keyframes would lag).
    """
    if len(a) != len(b):
        return True
    if not len(a):
        return False
    overlap = iou(a.boxes, b.boxes)
    return bool((overlap.max(axis=1) < min_iou).any() or (overlap.max(axis=0) < min_iou).any())


def link_tracks(
    detections: Iterable[tuple[int, Detections]],
    *,
    min_iou: float = 0.3,
    max_gap: int = 25,
) -> list[FaceTrack]:
    """Greedily link per-keyframe detections into tracks by box overlap.

    Arguments:
        detections: (frame index, detections) in ascending frame order.
        min_iou: overlap needed to continue a track.
        max_gap: frames a track may go undetected before it is closed.

    Returns:
        Tracks in order of first appearance.
    """
    tracks: list[FaceTrack] = []
    open_tracks: list[FaceTrack] = []
    for frame, dets in detections:
        open_tracks = [t for t in open_tracks if frame - t.last_frame <= max_gap]
        unmatched = set(range(len(dets)))
        if open_tracks and len(dets):
            overlap = iou(np.asarray([t.boxes[-1] for t in open_tracks]), dets.boxes)
            for ti, di in zip(*np.unravel_index(np.argsort(-overlap, axis=None), overlap.shape)):
                if overlap[ti, di] < min_iou:
                    break
                track = open_tracks[ti]
                if di in unmatched and track.last_frame != frame:
                    track.add(frame, dets.boxes[di], dets.scores[di], dets.landmarks[di])
                    unmatched.discard(di)
        for di in sorted(unmatched):
            track = FaceTrack(len(tracks))
            track.add(frame, dets.boxes[di], dets.scores[di], dets.landmarks[di])
            tracks.append(track)
            open_tracks.append(track)
    return tracks


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of per-frame boxes within each run of frames that have a box.

    The window shrinks symmetrically at the ends of a run, so a box is only ever averaged with
    frames of the same run; NaN rows stay NaN.
    """
    out = boxes.copy()
    if window <= 1:
        return out
    valid = ~np.isnan(boxes[:, 0])
    half = window // 2
    edges = np.flatnonzero(np.diff(np.r_[0, valid.astype(int), 0]))
    for start, end in zip(edges[::2], edges[1::2]):
        run = boxes[start:end]
        for i in range(len(run)):
            r = min(half, i, len(run) - 1 - i)
            out[start + i] = run[i - r : i + r + 1].mean(axis=0)
    return out


def _same_place(a: FaceTrack, b: FaceTrack) -> bool:
    """Whether two tracks sit where one face sits (centres within half a box of each other)."""
    ba = np.asarray(a.boxes)
    half_w = np.mean(ba[:, 2] - ba[:, 0]) / 2
    half_h = np.mean(ba[:, 3] - ba[:, 1]) / 2
    dx, dy = np.abs(a.mean_centre - b.mean_centre)
    return bool(dx < half_w and dy < half_h)


def group_faces(tracks: Sequence[FaceTrack]) -> list[list[FaceTrack]]:
    """Group tracks that are one face seen in pieces (split by an occlusion or a missed stretch).

    Pieces of a group never overlap in time and sit at the same place in the frame.
    """
    groups: list[list[FaceTrack]] = []
    for track in sorted(tracks, key=lambda t: t.first_frame):
        for group in groups:
            later = all(track.first_frame > piece.last_frame for piece in group)
            if later and _same_place(group[-1], track):
                group.append(track)
                break
        else:
            groups.append([track])
    return groups


def steady_faces(tracks: Sequence[FaceTrack], keyframes: int) -> list[list[FaceTrack]]:
    """The faces (groups of track pieces) seen on enough keyframes: at least 10, or a fifth of
    ``keyframes``. A face seen on only a few is a passer-by or a false detection: it must not
    shift the left-to-right count or win "largest" by one big spurious box. All faces when
    none is steady."""
    groups = group_faces(tracks)
    steady = [g for g in groups if sum(len(t.frames) for t in g) >= min(10, 0.2 * keyframes)]
    return steady or groups


def choose_face(
    tracks: Sequence[FaceTrack],
    *,
    mode: str = "largest",
    index: int | None = None,
    point: tuple[float, float] | None = None,
) -> list[FaceTrack]:
    """Pick the face to lip-sync; returns its track pieces (empty when nothing matches).

    Arguments:
        mode: ``largest`` (biggest box weighted by how long the face is seen), ``index`` (the
            ``index``-th face counted left to right by mean centre, from 0) or ``point`` (the
            face whose boxes contain ``point`` most often).
    """
    groups = steady_faces(tracks, keyframes=len({f for t in tracks for f in t.frames}))
    if not groups:
        return []
    if mode == "largest":
        return max(groups, key=lambda g: sum(t.mean_area * len(t.frames) for t in g))
    if mode == "index":
        ordered = sorted(groups, key=lambda g: np.mean([t.mean_centre[0] for t in g]))
        return ordered[index] if index is not None and 0 <= index < len(ordered) else []
    if mode == "point":
        x, y = point

        def hits(group: list[FaceTrack]) -> int:
            b = np.concatenate([np.asarray(t.boxes) for t in group])
            return int(((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])).sum())

        best = max(groups, key=hits)
        return best if hits(best) > 0 else []
    raise LipdubError(f"unknown face choice {mode!r}: use largest, index, point or box")


def face_boxes(pieces: Sequence[FaceTrack], n_frames: int, *, hold: int, max_gap: int):
    """Per-frame boxes (n_frames, 4) of one face from its track pieces; NaN where not seen."""
    out = np.full((n_frames, 4), np.nan)
    for piece in pieces:
        boxes = piece.boxes_for_frames(n_frames, hold=hold, max_gap=max_gap)
        fill = np.isnan(out[:, 0]) & ~np.isnan(boxes[:, 0])
        out[fill] = boxes[fill]
    return out
