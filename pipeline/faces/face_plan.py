"""Which face box each frame of a clip gets: one scan (frame times, detections on keyframes
refined where faces move), then tracks linked, one face chosen, boxes smoothed and padded.

The face planning of ``lipdub sync`` (lipdub.pipeline.clip_sync) and of ``lipdub prepare``
(lipdub.training.prepare): training crops are cut as inference crops are. The film flow tracks
shot by shot with the same keyframe detector and rules (lipdub.pipeline.film_scan).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from tqdm import tqdm

from lipdub.pipeline import defaults
from lipdub.pipeline.faces.face_track import (
    choose_face,
    detection_size,
    face_boxes,
    link_tracks,
    smooth_boxes,
    track_gap,
)
from lipdub.pipeline.faces.keyframes import KeyframeDetector
from lipdub.pipeline.generator import padded_box
from lipdub.pipeline.media.decode import VideoInfo
from lipdub.pipeline.media.frames import to_bgr


def progress_bar(enabled: bool | None, **kw) -> tqdm:
    """A tqdm bar for a pass of ``lipdub sync`` (the face scan, the render); ``enabled`` None:
    shown when stderr is a terminal."""
    return tqdm(disable=not (sys.stderr.isatty() if enabled is None else enabled), **kw)


@dataclass
class FaceOptions:
    """How faces are found and which one is synced (``lipdub sync``'s face flags)."""

    face: str = "largest"  # largest | index | point | box
    face_index: int = 0
    face_point: tuple[float, float] | None = None
    face_box: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2: no detection at all
    pads: tuple[int, int, int, int] = defaults.PADS  # top, bottom, left, right
    smooth: bool = True
    smooth_window: int = defaults.SMOOTH_WINDOW
    detect_every: int = defaults.DETECT_EVERY
    refine_iou: float = 0.85  # keyframes whose faces overlap less: the frames between detected
    detect_max_side: int = defaults.DETECT_SIZE
    progress: bool | None = None  # None: on when stderr is a terminal


@dataclass
class FrameTimes:
    """Presentation times (s) of every frame and what is needed to re-time a still."""

    times: np.ndarray
    time_base: Fraction
    frame_duration: float

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0] + self.frame_duration) if len(self.times) else 0


def scan_video(info: VideoInfo, detect: Callable | None, options: FaceOptions,
               on_batch: Callable[[], None] | None = None, damage: list | None = None):
    """Pass 1: every frame's time, and face detections on keyframes, refined where faces move.

    Every ``detect_every``-th frame (and the last) is a keyframe. Where two consecutive
    keyframes disagree (:func:`~lipdub.pipeline.faces.face_track.faces_moved`: a face appears
    or leaves, a cut, fast motion), the frames between them are detected too, so that
    interpolation only bridges frames where faces move smoothly. Detection runs on a copy
    scaled (by libswscale, in the same pass as the colour conversion) so that its long side is
    ``detect_max_side``; boxes are mapped back to frame pixels.

    Returns:
        (FrameTimes, [(frame index, Detections)] in frame order).
    """
    times: list[float] = []
    small_w, small_h = detection_size(info.width, info.height, options.detect_max_side)
    back = (info.width / small_w, info.height / small_h)
    keyframes = KeyframeDetector(detect, options.detect_every, options.refine_iou,
                                 rescale=lambda d: _rescale(d, *back), on_batch=on_batch)
    bar = progress_bar(options.progress, total=info.frame_count or None, desc="faces", unit="fr")
    with bar:
        for index, frame in enumerate(info.frames(damage=damage)):
            times.append(float(frame.pts * frame.time_base) if frame.pts is not None else index)
            if detect is not None:
                keyframes.add(index, to_bgr(frame, small_w, small_h))
            bar.update()
    detections = keyframes.finish() if detect is not None else []
    times_arr = np.asarray(times, dtype=np.float64)
    steps = np.diff(times_arr)
    if len(steps):
        frame_duration = float(np.median(steps))
    else:
        frame_duration = float(1 / info.average_rate) if info.average_rate else 1 / 25
    return FrameTimes(times_arr, info.time_base, frame_duration), detections


def _rescale(dets, sx: float, sy: float):
    from lipdub.models.face_detector import Detections

    scale = np.array([sx, sy, sx, sy], np.float32)
    return Detections(dets.boxes * scale, dets.scores, dets.landmarks * np.array([sx, sy]))


def plan_boxes(n_frames: int, detections, options: FaceOptions, info: VideoInfo):
    """Per-frame integer crop boxes (None where no face) and the tracks chosen."""
    if options.face == "box":
        boxes = np.tile(np.asarray(options.face_box, float), (n_frames, 1))
        return [padded_box(b, (0, 0, 0, 0), info.width, info.height) for b in boxes], [], 0
    every = options.detect_every
    tracks = link_tracks(detections, max_gap=track_gap(every))
    pieces = choose_face(tracks, mode=options.face, index=options.face_index,
                         point=options.face_point)
    # No hold past a track's ends: the scan detected every frame around them (refinement).
    raw = face_boxes(pieces, n_frames, hold=0, max_gap=track_gap(every))
    if options.smooth:
        raw = smooth_boxes(raw, options.smooth_window)
    plan = [None if np.isnan(b[0]) else padded_box(b, options.pads, info.width, info.height)
            for b in raw]
    return plan, [t.track_id for t in pieces], len(tracks)
