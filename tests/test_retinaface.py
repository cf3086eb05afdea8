"""RetinaFace-MobileNet0.25 and FaceDetector: keys, real checkpoints, real photos and video.

Tests that need ../shared (weights, media) skip cleanly without it; the pure-function tests at
the top run everywhere.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipdub.models.face_detector import Detections, FaceDetector
from lipdub.models.retinaface import RetinaFace, decode_boxes, nms, prior_boxes

DEFAULT_WEIGHTS = "retinaface_mobilenet0.25_pytorch_retinaface.pth"
DEFAULT_ANCHORS = [[16, 32], [64, 128], [256, 512]]
BIUBUG_WEIGHTS = "retinaface_mobilenet0.25.pth"
BIUBUG_ANCHORS = [[10, 20], [32, 64], [128, 256]]

# Score threshold for the counting tests. Measured with the default checkpoint at long side 640:
# every real face scores >= 0.997 and the best non-face 0.14 (group photo), so 0.5 sits in a wide
# gap on both sides (and it is FaceDetector's default). The shared media README agrees (faces
# >= 0.99, no false positive above 0.6).
SCORE_THRESHOLD = 0.5

# Face boxes (x1, y1, x2, y2) in original pixels, annotated by hand: read off a 100-px grid
# (50 px for the 256-px image) drawn over each photo, hairline/forehead to chin, cheek to cheek.
# They are deliberately rough; detections are matched with IoU > 0.4 or "centre inside".
HAND_BOXES = {
    "one_face_frontal__facerec_obama.jpg": [(365, 100, 620, 400)],
    "two_faces_frontal__facerec_two_people.jpg": [
        (215, 30, 395, 235),  # left man
        (770, 25, 950, 255),  # right man
    ],
    "group_six_faces__insightface_t1_via_liveportrait.jpg": [
        (30, 250, 150, 395),  # woman far left, head tilted, looking down at cards
        (268, 135, 385, 270),  # dark-haired woman behind, head tilted
        (460, 250, 600, 405),  # man centre-left, smiling
        (745, 320, 870, 465),  # man in red shirt, laughing
        (905, 50, 1035, 200),  # standing man top right, three-quarter view
        (1130, 260, 1240, 395),  # blonde woman right, looking down
    ],
    "one_face_lowres_256__sadtalker_happy.png": [(62, 60, 195, 215)],
}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _matches(det, hand) -> bool:
    cx, cy = (det[0] + det[2]) / 2, (det[1] + det[3]) / 2
    centre_inside = hand[0] <= cx <= hand[2] and hand[1] <= cy <= hand[3]
    return _iou(det, hand) > 0.4 or centre_inside


def _assert_one_to_one(boxes: np.ndarray, hand: list[tuple[int, int, int, int]]) -> None:
    assert len(boxes) == len(hand), f"{len(boxes)} detections for {len(hand)} faces: {boxes}"
    # At most 6 faces here, so trying every assignment (720) is simplest and exact.
    ok = any(
        all(_matches(boxes[i], hand[j]) for i, j in enumerate(perm))
        for perm in itertools.permutations(range(len(hand)))
    )
    assert ok, f"detections {boxes.round().tolist()} do not match hand boxes {hand} one-to-one"


def _assert_plausible_landmarks(d: Detections) -> None:
    for box, pts in zip(d.boxes, d.landmarks):
        eyes, mouth = pts[:2], pts[3:]
        assert eyes[:, 1].max() < mouth[:, 1].min(), f"eyes not above mouth corners: {pts}"
        assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0], f"left/right swapped: {pts}"
        inside = (
            (pts[:, 0] >= box[0]) & (pts[:, 0] <= box[2])
            & (pts[:, 1] >= box[1]) & (pts[:, 1] <= box[3])
        )  # fmt: skip
        assert inside.all(), f"landmarks {pts} outside box {box}"


# --- pure functions (no shared data needed) ------------------------------------------------------


def test_prior_count_matches_network_output_for_odd_sizes():
    # ceil(size / step) cells per level must equal what the strided convs really produce.
    model = RetinaFace().eval()
    with torch.inference_mode():
        loc, scores, ldm = model(torch.zeros(1, 3, 75, 101))
    priors = prior_boxes(75, 101, DEFAULT_ANCHORS)
    assert loc.shape == (1, len(priors), 4)
    assert scores.shape == (1, len(priors)) and ldm.shape == (1, len(priors), 10)
    assert len(prior_boxes(640, 640, DEFAULT_ANCHORS)) == 2 * (80 * 80 + 40 * 40 + 20 * 20)


def test_prior_layout_and_zero_offsets_decode_to_priors():
    priors = prior_boxes(64, 32, [[16, 32], [64], [128]], steps=(8, 16, 32))
    assert len(priors) == 8 * 4 * 2 + 4 * 2 + 2 * 1
    # First cell of level 0: centre (4, 4) px, two sizes, in row-major, size-minor order.
    # (Plain allclose: torch.testing's first use costs ~1 s of imports.)
    assert torch.allclose(priors[0], torch.tensor([4 / 32, 4 / 64, 16 / 32, 16 / 64]))
    assert torch.allclose(priors[1], torch.tensor([4 / 32, 4 / 64, 32 / 32, 32 / 64]))
    assert torch.allclose(priors[2, :2], torch.tensor([12 / 32, 4 / 64]))
    # First prior of level 1: centre (8, 8) px, size 64.
    assert torch.allclose(priors[64], torch.tensor([8 / 32, 8 / 64, 64 / 32, 64 / 64]))
    boxes = decode_boxes(torch.zeros(len(priors), 4), priors)
    assert torch.allclose(boxes[0], torch.tensor([-4 / 32, -4 / 64, 12 / 32, 12 / 64]))


def test_nms_greedy():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=torch.float32
    )
    scores = torch.tensor([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.96).tolist() == [1, 0, 2, 3]  # IoU(0, 3) = 100/105
    assert nms(torch.zeros(0, 4), torch.zeros(0)).numel() == 0


# --- real checkpoints and media ------------------------------------------------------------------


def _load(weights_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(weights_dir / name, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def detector(weights_dir: Path) -> FaceDetector:
    sd = _load(weights_dir, DEFAULT_WEIGHTS)
    return FaceDetector.from_state_dict(sd, DEFAULT_ANCHORS, score_threshold=SCORE_THRESHOLD)


def _image(media_dir: Path, name: str) -> np.ndarray:
    img = cv2.imread(str(media_dir / "images" / name), cv2.IMREAD_COLOR)
    assert img is not None, name
    return img


def test_state_dict_keys_and_checkpoints_load_strictly(shared_dir: Path, weights_dir: Path):
    expected = (shared_dir / "docs" / "retinaface_mobilenet_keys.txt").read_text().splitlines()
    model = RetinaFace()
    actual = [f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items()]
    assert actual == expected
    for name in (DEFAULT_WEIGHTS, BIUBUG_WEIGHTS):
        model.load_state_dict(_load(weights_dir, name), strict=True)


@pytest.mark.parametrize("name", list(HAND_BOXES))
def test_faces_found_at_hand_annotated_places(detector: FaceDetector, media_dir: Path, name):
    (d,) = detector.detect([_image(media_dir, name)])
    _assert_one_to_one(d.boxes, HAND_BOXES[name])
    assert (d.scores >= 0.99).all(), d.scores
    assert np.all(np.diff(d.scores) <= 0), "not sorted by score"
    assert d.boxes.dtype == np.float32 and d.landmarks.shape == (len(d), 5, 2)
    _assert_plausible_landmarks(d)


def test_biubug_checkpoint_with_its_own_anchors(weights_dir: Path, media_dir: Path):
    sd = _load(weights_dir, BIUBUG_WEIGHTS)
    det = FaceDetector.from_state_dict(sd, BIUBUG_ANCHORS, score_threshold=0.99)
    name = "one_face_frontal__facerec_obama.jpg"
    (d,) = det.detect([_image(media_dir, name)])
    _assert_one_to_one(d.boxes, HAND_BOXES[name])
    _assert_plausible_landmarks(d)


def test_mixed_size_batch_equals_one_by_one(detector: FaceDetector, media_dir: Path):
    # 910x1137 -> 512x640 and 1126x661 -> 640x376, padded together to 640x640.
    frames = [
        _image(media_dir, "one_face_frontal__facerec_obama.jpg"),
        _image(media_dir, "two_faces_frontal__facerec_two_people.jpg"),
    ]
    batched = detector.detect(frames)
    for frame, b in zip(frames, batched):
        (s,) = detector.detect([frame])
        assert len(s) == len(b)
        # These faces sit well away from the padded bottom/right edges, so the padding is outside
        # what their features see and only float rounding differs (measured ~1e-4 px). 0.01 px
        # leaves room for other CPU kernels while still catching any coordinate-mapping mistake,
        # which would be off by pixels. (A face touching a padded edge, like the tight 256-px
        # crop, moves by up to ~0.4 px: the padded region changes features at that edge.)
        np.testing.assert_allclose(b.boxes, s.boxes, atol=0.01)
        np.testing.assert_allclose(b.landmarks, s.landmarks, atol=0.01)
        np.testing.assert_allclose(b.scores, s.scores, atol=1e-4)


def test_crowd_video_frames(detector: FaceDetector, media_dir: Path):
    av = pytest.importorskip("av")
    path = media_dir / "video" / "crowd_many_faces_no_speech_1080p__facenet_video.mp4"
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 25 == 0:  # one frame a second, 4 s of a 4.2 s clip
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == 4:
                break
    assert len(frames) == 4 and frames[0].shape == (1080, 1920, 3)
    for i, d in enumerate(detector.detect(np.stack(frames))):
        assert len(d) >= 4, f"frame {25 * i}: only {len(d)} faces, scores {d.scores}"
        assert (d.boxes[:, 2] > d.boxes[:, 0]).all() and d.boxes[:, 2].max() > 640, "not rescaled"
