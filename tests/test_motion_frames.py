"""Faces followed between keyframes (lipdub.pipeline.faces.motion_frames): measured, not
interpolated."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lipdub.models.face_detector import Detections
from lipdub.pipeline.faces.keyframes import KeyframeDetector
from lipdub.pipeline.faces.motion_frames import MotionFrames

SIZE, SIDE = 240, 80  # picture and "face" sizes


def _top(i: int) -> float:
    """A nodding head: the face's top edge, a fast sine (not linear between keyframes)."""
    return 70 + 24 * np.sin(2 * np.pi * i / 7)


def _texture() -> np.ndarray:
    rng = np.random.default_rng(3)
    face = rng.integers(0, 255, (SIDE, SIDE), np.uint8)
    return cv2.GaussianBlur(face, (5, 5), 1.5)


def _picture(i: int, face: np.ndarray) -> np.ndarray:
    """The textured face at (80, _top(i)) with sub-pixel placement, on a flat background."""
    m = np.float32([[1, 0, 80], [0, 1, _top(i)]])
    grey = cv2.warpAffine(face, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=90)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _detector(truth: dict):
    """A detector that knows where the face is in each picture it is shown."""
    def detect(images):
        out = []
        for image in images:
            i = truth[image.tobytes()]
            box = np.array([[80, _top(i), 80 + SIDE, _top(i) + SIDE]], np.float32)
            out.append(Detections(box, np.array([0.99], np.float32),
                                  np.zeros((1, 5, 2), np.float32)))
        return out
    return detect


def _follow(pictures: list[np.ndarray]) -> MotionFrames:
    """Every picture through keyframe detection (every 2nd) and MotionFrames, as tracking does."""
    truth = {p.tobytes(): i for i, p in enumerate(pictures)}
    keyframes = KeyframeDetector(_detector(truth), every=2, refine_iou=0.3)
    motion = MotionFrames(frame_of=lambda step: step)
    for i, picture in enumerate(pictures):
        keyframes.add(i, picture)
        motion.add(i, picture, keyframes)
    keyframes.finish()
    motion.settle(keyframes)
    return motion


def test_faces_between_keyframes_follow_the_head_not_a_straight_line():
    face = _texture()
    motion = _follow([_picture(i, face) for i in range(60)])
    followed = dict(motion.estimated)
    assert sorted(followed) == list(range(1, 59, 2))  # every picture between keyframes, once
    assert sorted(motion.squares) == list(range(60))  # a face square on every picture
    errors, straight = [], []
    for i, faces in followed.items():
        errors.append(abs(faces.boxes[0, 1] - _top(i)))
        straight.append(abs((_top(i - 1) + _top(i + 1)) / 2 - _top(i)))
    # Measured to a pixel, where a straight line between the keyframes is several off.
    assert max(errors) < 1.0, errors
    assert np.mean(straight) > 4 * max(np.mean(errors), 0.25)


def test_a_face_without_texture_falls_back_to_the_straight_line():
    flat = [np.full((SIZE, SIZE, 3), 90, np.uint8) for _ in range(9)]
    for i, picture in enumerate(flat):
        picture[0, 0, 0] = i  # tell the pictures apart
    for i, faces in _follow(flat).estimated:
        assert faces.boxes[0, 1] == pytest.approx((_top(i - 1) + _top(i + 1)) / 2, abs=1e-3)
