"""How much a face's mouth moves between two keyframes, measured without any learned weights.

At each keyframe the face scan keeps a small grey square around every detected face
(:func:`face_square`). Once the face's track is linked and smoothed, the mouth is cut out of
those squares with the *smoothed* box (:func:`mouth_from_square`): a crop placed by one frame's
raw detection jitters, and that jitter reads as motion (measured: with landmark-placed patches the
speaker ranked first in 3 of 13 two-face pieces of the routing benchmark, with smoothed boxes in
10). The motion is dense optical flow (Farneback) between consecutive mouth crops, less its median
(what the whole crop does: head motion, a residual of the box), averaged: the mouth's own
deformation, in percent of the crop's width per keyframe step (talking mouths measured 0.4-1.2,
still ones from photos and a nodding listener 0.1-0.25).
"""

from __future__ import annotations

import cv2
import numpy as np

SQUARE = 128  # side of the grey square kept around a face at each keyframe
SQUARE_SCALE = 1.3  # the square's side, in face-box sizes (room for the smoothed box to move)
MOUTH = (48, 36)  # width, height of the mouth crop the flow is measured on (64x48: same
# rankings on the routing benchmark, 1.6x the time)
# The mouth within a face box (fractions of its width and height): RetinaFace boxes run from the
# brow to the chin, so the lower two fifths hold the lips whatever the face's size.
MOUTH_REGION = (0.2, 0.6, 0.8, 1.0)


def face_square(grey: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``SQUARE`` x ``SQUARE`` crop around ``box`` (x1, y1, x2, y2 in ``grey``'s pixels).

    Returns:
        (the crop as uint8, its square in ``grey``'s pixels: x, y, side).
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = SQUARE_SCALE * max(box[2] - box[0], box[3] - box[1], 8.0)
    x0, y0 = cx - side / 2, cy - side / 2
    scale = SQUARE / side
    m = np.float32([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
    crop = cv2.warpAffine(grey, m, (SQUARE, SQUARE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, np.array([x0, y0, side])


def mouth_from_square(crop: np.ndarray, square: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The mouth of the face at ``box`` (same pixels as ``square``), cut from a face square."""
    x0, y0, side = square
    w, h = box[2] - box[0], box[3] - box[1]
    left, top, right, bottom = MOUTH_REGION
    scale = SQUARE / side
    mx0, my0 = (box[0] + left * w - x0) * scale, (box[1] + top * h - y0) * scale
    mw, mh = (right - left) * w * scale, (bottom - top) * h * scale
    sx, sy = MOUTH[0] / max(mw, 1.0), MOUTH[1] / max(mh, 1.0)
    m = np.float32([[sx, 0, -mx0 * sx], [0, sy, -my0 * sy]])
    return cv2.warpAffine(crop, m, MOUTH, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def mouth_deformation(before: np.ndarray, after: np.ndarray) -> float:
    """Mean optical-flow magnitude of the mouth crop, less what the whole crop does, in
    percent of the crop's width (so that it does not depend on the crop's size)."""
    flow = cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 1, 9, 2, 5, 1.1, 0)
    return float(100 * np.abs(flow - np.median(flow.reshape(-1, 2), axis=0)).mean() / MOUTH[0])
