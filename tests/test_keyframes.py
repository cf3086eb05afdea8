"""KeyframeDetector: which pictures are detected, in what batches, with what pixels."""

from __future__ import annotations

import numpy as np

from lipdub.models.face_detector import Detections
from lipdub.pipeline.faces.keyframes import DETECT_BATCH, KeyframeDetector


def test_refines_where_faces_jump_and_never_mixes_up_pictures():
    # Picture i is filled with i; the fake detector reads it back and puts the face at x = 0
    # until picture 20, then at x = 300 (a cut between keyframes 16 and 20).
    seen: list[int] = []
    batches: list[int] = []

    def detect(images):
        batches.append(len(images))
        out = []
        for image in images:
            index = int(image[0, 0, 0])
            seen.append(index)
            x = 0.0 if index < 20 else 300.0
            out.append(Detections(np.array([[x, 0, x + 100, 100]], np.float32),
                                  np.array([0.99], np.float32), np.zeros((1, 5, 2), np.float32)))
        return out

    keyframes = KeyframeDetector(detect, every=4, refine_iou=0.85)
    for i in range(38):  # the last picture, 37, is not a keyframe: it closes the last interval
        keyframes.add(i, np.full((8, 8, 3), i, np.uint8))
    found = keyframes.finish()
    expected = sorted({*range(0, 38, 4), 17, 18, 19, 37})
    assert [i for i, _ in found] == expected == sorted(seen)  # each once, in order
    # Each detection is of its own picture (pooled arrays are never reused while waiting).
    assert all(d.boxes[0, 0] == (0 if i < 20 else 300) for i, d in found)
    # Whole batches only, but for the last keyframes and the last refinements.
    assert batches[0] == DETECT_BATCH and all(size == DETECT_BATCH for size in batches[:-2])
    assert sum(batches) == len(expected)


def test_settled_marks_where_every_detection_is_known():
    # A cut between keyframes 16 and 20 sends 17-19 to refinement: until they are detected,
    # nothing from 17 on is settled; after finish() everything is.
    def detect(images):
        return [Detections(np.array([[0.0 if image[0, 0, 0] < 20 else 300.0, 0, 100, 100]],
                                    np.float32), np.array([0.9], np.float32),
                           np.zeros((1, 5, 2), np.float32)) for image in images]

    keyframes = KeyframeDetector(detect, every=4, refine_iou=0.85)
    settled_when = {}
    for i in range(38):
        keyframes.add(i, np.full((8, 8, 3), i, np.uint8))
        settled_when[i] = keyframes.settled
        detected = {index for index, _ in keyframes.detections}
        # Whatever is settled has all it will get: a keyframe below it is detected.
        assert all(k in detected for k in range(0, min(i + 1, int(keyframes.settled)), 4))
        assert len(detected) == len(keyframes.detections)  # each picture detected once
    assert settled_when[3] == 0  # nothing detected before the first batch of 8 keyframes
    assert 17 <= settled_when[29] <= 29  # the batch of keyframes 0-28 is in
    found = keyframes.finish()
    assert keyframes.settled == float("inf")
    assert [i for i, _ in found] == sorted(i for i, _ in found)
