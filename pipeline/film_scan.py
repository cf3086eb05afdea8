"""Film-level picture analysis: frame times and cuts (one pass), then face tracks per shot.

Face tracks never cross a cut. Each shot is decoded on its own (seeking to it), so shots can be
tracked in parallel and a film is never held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.faces.face_track import (
    FaceTrack,
    detection_size,
    iou,
    link_tracks,
    smooth_boxes,
    steady_faces,
    track_gap,
)
from lipdub.pipeline.faces.keyframes import KeyframeDetector
from lipdub.pipeline.faces.motion_frames import MotionFrames
from lipdub.pipeline.faces.mouth_activity import mouth_deformation, mouth_from_square
from lipdub.pipeline.media.decode import Damage, VideoInfo
from lipdub.pipeline.media.frames import to_bgr
from lipdub.pipeline.partial_files import writing
from lipdub.pipeline.shots import (
    SHOT_DETECT_SIDE,
    Shot,
    ShotDetector,
    shots_from_cuts,
    shots_from_list,
)

# Bumped whenever what a saved track holds changes meaning (2: mouth motion by optical flow in
# the smoothed box; 3: keyframes every 4th frame, refined, motion still every 2nd), so that a
# work folder never serves tracks of an older kind.
TRACKS_VERSION = 3
# The mouth's motion is measured between frames this far apart (what routing's thresholds were
# set on); detection may be sparser.
MOTION_STEP = 2


@dataclass
class FilmScan:
    """Every frame's presentation time and the shots; the damage found on the way (when the
    film's damage is accepted, see :func:`lipdub.pipeline.media.decode.iter_video_frames`)."""

    times: np.ndarray
    shots: list[Shot]
    damage: list[Damage] = field(default_factory=list)

    @property
    def frame_duration(self) -> float:
        return float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.04

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0] + self.frame_duration)

    def frame_at(self, seconds_from_start: float) -> int:
        """Index of the first frame shown at or after ``seconds_from_start``."""
        target = self.times[0] + seconds_from_start - self.frame_duration / 2
        return int(np.searchsorted(self.times, target))


def scan_film(info: VideoInfo, *, cut_times: list[float] | None = None,
              threshold: float = 27.0, progress: Callable[[int], None] | None = None) -> FilmScan:
    """One decode pass: frame times, and shot cuts from PySceneDetect (unless given).

    Arguments:
        info: the probed film.
        cut_times: an editor's cut list in seconds from the first frame (skips detection).
        threshold: ContentDetector's threshold.
        progress: called with the number of frames done, every 100 frames.
    """
    detector = None if cut_times is not None else ShotDetector(info.average_rate, threshold)
    scale = min(1.0, SHOT_DETECT_SIDE / max(info.width, info.height))
    small = (max(2, round(info.width * scale)) & ~1, max(2, round(info.height * scale)) & ~1)
    times, damage = [], []
    frames = info.frames(damage=damage)
    for i, frame in enumerate(frames):
        times.append(float(frame.pts * frame.time_base))
        if detector is not None:
            detector.add(frame.pts, frame.time_base, to_bgr(frame, *small))
        if progress and i % 100 == 99:
            progress(i + 1)
    arr = np.asarray(times)
    if cut_times is not None:
        return FilmScan(arr, shots_from_list(arr, [arr[0] + t for t in cut_times]), damage)
    return FilmScan(arr, shots_from_cuts(arr, detector.cut_times), damage)


@dataclass
class TrackInfo:
    """A face track of one shot with what routing and lip sync need.

    Attributes:
        shot: the shot index.
        track_id: unique within the shot, left-to-right order of the faces is ``order``.
        order: place from the left among the shot's steady faces (0 = leftmost).
        first, last: film frame indices covered (inclusive).
        boxes: (last - first + 1, 4) per-frame float boxes (NaN where the face is not seen).
        motion_frames: film frame indices of the keyframes with a mouth-motion value.
        motion: the mouth's own motion since the keyframe before
            (:func:`lipdub.pipeline.faces.mouth_activity.mouth_deformation`).
    """

    shot: int
    track_id: int
    order: int
    first: int
    last: int
    boxes: np.ndarray
    motion_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    motion: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def box_at(self, frame: int) -> np.ndarray | None:
        if not self.first <= frame <= self.last:
            return None
        box = self.boxes[frame - self.first]
        return None if np.isnan(box[0]) else box


def track_shot(info: VideoInfo, scan: FilmScan, shot: Shot, detect: Callable, *,
               every: int = 4, max_side: int = 480, smooth_window: int = 5,
               refine_iou: float = 0.85) -> list[TrackInfo]:
    """Detect, link and measure the faces of one shot.

    The mouth's motion is measured on every ``MOTION_STEP``-th frame; faces are detected on
    every ``every``-th (a multiple of it) and wherever two such keyframes disagree
    (:class:`~lipdub.pipeline.faces.keyframes.KeyframeDetector`, as ``lipdub sync`` detects); on
    the motion frames between, each face is followed from the keyframes by phase correlation
    (:class:`~lipdub.pipeline.faces.motion_frames.MotionFrames`).

    Arguments:
        info, scan: the film and its scan.
        shot: which shot.
        detect: ``FaceDetector.detect``.
        every: keyframe spacing in frames (a multiple of ``MOTION_STEP``).
        max_side: long side of the copy the detector sees.
        refine_iou: keyframes whose faces overlap less get the frames between detected.

    Returns:
        The shot's face tracks, steady faces first in left-to-right order.
    """
    if every % MOTION_STEP:
        raise LipdubError(f"detect_every is {every}: it must be a multiple of {MOTION_STEP} "
                          f"(the mouth's motion is measured on every {MOTION_STEP}nd frame)")
    small_w, small_h = detection_size(info.width, info.height, max_side)
    back = np.array([info.width / small_w, info.height / small_h])
    frames = info.frames(start_time=float(scan.times[shot.start]),
                         end_time=float(scan.times[shot.end]) if shot.end < len(scan.times)
                         else None)
    # The detector sees motion frames only, numbered in motion steps, so that its keyframes
    # fall every ``every`` frames and a refinement never detects a frame nobody measures.
    keyframes = KeyframeDetector(detect, every // MOTION_STEP, refine_iou)
    motion = MotionFrames(lambda step: shot.start + MOTION_STEP * step)
    for offset, frame in enumerate(frames):
        if shot.start + offset >= shot.end:
            break
        if offset % MOTION_STEP == 0:
            small = to_bgr(frame, small_w, small_h)
            keyframes.add(offset // MOTION_STEP, small)
            motion.add(offset // MOTION_STEP, small, keyframes)
    keyframes.finish()
    motion.settle(keyframes)
    # The faces followed between keyframes count as detections: tracks, their boxes and the
    # mouths then have a face on every motion frame, as when every one was detected.
    detections = sorted([(motion.frame_of(step), dets) for step, dets in keyframes.detections]
                        + motion.estimated, key=lambda item: item[0])
    return _tracks_from_detections(shot, detections, motion.squares, back, every, smooth_window)


def _tracks_from_detections(shot, detections, squares, back, every, smooth_window):
    """The shot's tracks from its detections (film frame, Detections in the small copy's
    pixels) and its motion frames' squares (film frame -> [(crop, square, box)])."""
    # Track in the small copy's pixels, then scale boxes to the film's.
    tracks = link_tracks(detections, max_gap=track_gap(every))
    groups = steady_faces(tracks, keyframes=len(detections))
    groups.sort(key=lambda g: np.mean([t.mean_centre[0] for t in g]))
    out = []
    for order, group in enumerate(groups):
        for track in group:
            out.append(_track_info(shot, track, order, squares, back, every, smooth_window,
                                   len(out)))
    return out


def _track_info(shot, track: FaceTrack, order, squares, back, every, smooth_window,
                track_id) -> TrackInfo:
    n = shot.frames
    local = FaceTrack(track.track_id, [f - shot.start for f in track.frames],
                      [b * np.r_[back, back] for b in track.boxes], track.scores,
                      track.landmarks)
    boxes = smooth_boxes(local.boxes_for_frames(n, hold=every - 1, max_gap=track_gap(every)),
                         smooth_window)
    valid = np.flatnonzero(~np.isnan(boxes[:, 0]))
    first, last = int(valid[0]), int(valid[-1])
    # Mouth deformation between consecutive motion frames of this track, the mouth placed by
    # the smoothed box (in the detector copy's pixels, as the squares are) and cut from the
    # square of the face that box overlaps most.
    keys, motion, previous = [], [], None
    for frame in range(track.first_frame, track.last_frame + 1, MOTION_STEP):
        smoothed = boxes[frame - shot.start] / np.r_[back, back]
        faces = squares.get(frame, [])
        overlap = iou(smoothed[None], np.asarray([box for *_, box in faces])) if faces else None
        if np.isnan(smoothed[0]) or overlap is None or overlap.max() < 0.3:
            previous = None
            continue
        crop, square, _ = faces[int(overlap.argmax())]
        mouth = mouth_from_square(crop, square, smoothed)
        if previous is not None:
            keys.append(frame)
            motion.append(mouth_deformation(previous, mouth))
        previous = mouth
    return TrackInfo(shot.index, track_id, order, shot.start + first, shot.start + last,
                     boxes[first : last + 1], np.asarray(keys, int), np.asarray(motion))


def save_tracks(tracks: list[TrackInfo], path: Path) -> None:
    """Keep a shot's tracks in the work folder (npz; atomic)."""
    arrays = {}
    for t in tracks:
        prefix = f"t{t.track_id}_"
        arrays[prefix + "meta"] = np.array([t.shot, t.track_id, t.order, t.first, t.last])
        arrays[prefix + "boxes"] = t.boxes
        arrays[prefix + "motion_frames"] = t.motion_frames
        arrays[prefix + "motion"] = t.motion
    with writing(path) as tmp:
        np.savez(tmp, count=np.array(len(tracks)), **arrays)


def load_tracks(path: Path) -> list[TrackInfo]:
    with np.load(path) as data:
        out = []
        for i in range(int(data["count"])):
            prefix = f"t{i}_"
            shot, track_id, order, first, last = (int(v) for v in data[prefix + "meta"])
            out.append(TrackInfo(shot, track_id, order, first, last, data[prefix + "boxes"],
                                 data[prefix + "motion_frames"], data[prefix + "motion"]))
    return out
