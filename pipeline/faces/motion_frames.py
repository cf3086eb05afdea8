"""Faces on the frames where a shot's mouth motion is measured, between sparser keyframes.

Film tracking detects faces on keyframes only
(:class:`~lipdub.pipeline.faces.keyframes.KeyframeDetector`,
every 4th frame as ``lipdub sync`` does), but routing measures the mouth on every 2nd frame. A
mouth placed by boxes interpolated between keyframes lags the head, and the lag reads as mouth
motion: on the routing benchmark a nodding listener's z-score rose from 0.0 to 1.4 (the speaker
beside him was no longer told apart) and a lone listener's from -0.6 to 1.7. Detecting the face
again in a small crop around the interpolated box is no cure: the detector's box at another
scale jitters against the keyframes' (a still face read as moving, 0.07 -> 0.25). So each face is
followed from the keyframes either side by phase correlation of its grey picture (the head's own
shift, measured, not assumed linear), which costs a fraction of a millisecond per face.

Pictures wait here only until the detections around them are settled, so memory stays flat over
a long shot.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import cv2
import numpy as np

from lipdub.models.face_detector import Detections
from lipdub.pipeline.faces.face_track import iou
from lipdub.pipeline.faces.keyframes import KeyframeDetector
from lipdub.pipeline.faces.mouth_activity import face_square

PATCH = 64  # side of the grey face patch a shift is measured on
MIN_RESPONSE = 0.1  # weaker phase-correlation peaks (no texture, occlusion) are not trusted
MIN_IOU = 0.3  # a face of the keyframe after must overlap this much to be the same face


class MotionFrames:
    """Detections and grey face squares of a shot's motion frames.

    Arguments:
        frame_of: maps a motion step (the index given to :meth:`add`) to its film frame.
    """

    def __init__(self, frame_of: Callable[[int], int]):
        self.frame_of = frame_of
        self.squares: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.estimated: list[tuple[int, Detections]] = []  # (film frame, faces followed)
        self._waiting: list[tuple[int, np.ndarray]] = []  # (motion step, grey picture)
        self._last_key: tuple[int, np.ndarray] | None = None  # the last keyframe's grey
        self._found: dict[int, Detections] = {}  # motion step -> whole-picture detections
        self._steps: list[int] = []  # the steps in ``_found``, ascending
        self._seen = 0

    def add(self, step: int, small: np.ndarray, keyframes: KeyframeDetector) -> None:
        """A motion frame's small BGR picture (the one ``keyframes`` was given)."""
        self._waiting.append((step, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)))
        self.settle(keyframes)

    def settle(self, keyframes: KeyframeDetector) -> None:
        """Handle every waiting picture whose keyframe detections are all known."""
        for step, dets in keyframes.detections[self._seen:]:
            self._found[step] = dets
            bisect.insort(self._steps, step)
        self._seen = len(keyframes.detections)
        settled = keyframes.settled
        ready = []
        while self._waiting and self._waiting[0][0] < settled:
            ready.append(self._waiting.pop(0))
        greys = dict(ready)
        if self._last_key is not None:
            greys.setdefault(*self._last_key)
        for step, grey in ready:
            if step in self._found:
                self._add(step, grey, self._found[step])
                self._last_key = (step, grey)
            else:
                self._add(step, grey, self._followed(step, grey, greys), estimated=True)

    def _add(self, step: int, grey: np.ndarray, faces: Detections, estimated=False) -> None:
        frame = self.frame_of(step)
        self.squares[frame] = [(*face_square(grey, box), box) for box in faces.boxes]
        if estimated and len(faces):
            self.estimated.append((frame, faces))

    def _followed(self, step: int, grey: np.ndarray, greys: dict) -> Detections:
        """The faces at a step between keyframes: each face of the keyframe before, moved by
        its measured shift from that keyframe and from the face it overlaps most in the
        keyframe after (their mean; the linear interpolation where neither is measurable)."""
        at = bisect.bisect(self._steps, step)
        if at == 0:
            return Detections.empty()
        a = self._steps[at - 1]
        before = self._found[a]
        after = self._found[self._steps[at]] if at < len(self._steps) else None
        if not len(before):
            return before
        boxes, landmarks = before.boxes.copy(), before.landmarks.copy()
        overlap = iou(before.boxes, after.boxes) if after is not None and len(after) else None
        for k, box in enumerate(before.boxes):
            moves = [_shift(greys.get(a), box, grey)]
            target = box
            if overlap is not None and overlap[k].max() >= MIN_IOU:
                b = self._steps[at]
                other = after.boxes[int(overlap[k].argmax())]
                t = (step - a) / (b - a)
                target = box + t * (other - box)
                moves.append(_shift(greys.get(b), other, grey))
            moves = [m for m in moves if m is not None]
            # Size from the interpolation, place from the measurement.
            centre = (np.mean(moves, axis=0) if moves else
                      (target[:2] + target[2:]) / 2)
            half = (target[2:] - target[:2]) / 2
            boxes[k] = np.r_[centre - half, centre + half]
            landmarks[k] += centre - (box[:2] + box[2:]) / 2
        return Detections(boxes.astype(np.float32), before.scores, landmarks.astype(np.float32))


def _shift(reference: np.ndarray | None, box: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
    """The centre of the face at ``box`` in ``reference``, found again in ``grey`` by phase
    correlation (None when the reference is gone or the peak is too weak)."""
    if reference is None:
        return None
    side = max(box[2] - box[0], box[3] - box[1], 8.0)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = PATCH / side
    m = np.float32([[scale, 0, (PATCH / 2) - cx * scale], [0, scale, (PATCH / 2) - cy * scale]])
    cut = [cv2.warpAffine(g, m, (PATCH, PATCH), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
           for g in (reference, grey)]
    (dx, dy), response = cv2.phaseCorrelate(cut[0], cut[1], _window())
    if response < MIN_RESPONSE:
        return None
    return np.array([cx, cy]) + np.array([dx, dy]) / scale


_WINDOW: list[np.ndarray] = []


def _window() -> np.ndarray:
    if not _WINDOW:
        _WINDOW.append(cv2.createHanningWindow((PATCH, PATCH), cv2.CV_32F))
    return _WINDOW[0]
