"""Batched face detection on video frames with :class:`~lipdub.models.retinaface.RetinaFace`.

No file I/O here: callers load the checkpoint and pass its ``state_dict`` and anchor sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from lipdub.models.fuse import fold_batchnorm
from lipdub.models.retinaface import (
    MEAN_BGR,
    RetinaFace,
    decode_boxes,
    decode_landmarks,
    nms,
    prior_boxes,
)

# Integer mean colour: padding with it becomes exactly zero after mean subtraction, i.e. the
# network sees the same "nothing" there as beyond the image border of an unpadded frame.
_PAD_BGR = tuple(int(v) for v in MEAN_BGR)


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, in that frame's pixel coordinates, best score first.

    ``boxes (K, 4)`` float32 ``x1, y1, x2, y2`` (not clipped: a face cut by the border may reach
    outside the frame), ``scores (K,)`` float32 in ``[0, 1]``, ``landmarks (K, 5, 2)`` float32
    ``(x, y)`` of left eye, right eye, nose tip, left and right mouth corner (left/right as seen
    in the image).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
        )


class FaceDetector:
    """Runs RetinaFace on batches of BGR frames of any (even mixed) sizes.

    Each frame is shrunk so its long side is at most ``max_side`` (never enlarged), the batch is
    padded bottom/right to a common size, run through the network in one pass (per
    ``batch_size`` frames), decoded with the priors of the padded size and mapped back to each
    frame's own coordinates.

    The given network is folded for inference in place (its BatchNorms become part of the
    convolutions), so it can no longer be trained; build a fresh one for that.
    """

    def __init__(
        self,
        model: RetinaFace,
        min_sizes: Sequence[Sequence[float]],
        *,
        max_side: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ) -> None:
        if len(min_sizes) != 3:
            raise ValueError(f"min_sizes needs one list per pyramid level (3), got {min_sizes!r}")
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32 (the coarsest stride), got {max_side}")
        self.device = torch.device(device)
        # BatchNorm folded into the convolutions and channels-last activations: 2.4x faster on a
        # CPU (9.6 vs 22.7 ms per 480x480 frame), outputs within 5e-5 of the plain network.
        folded = fold_batchnorm(model.eval()).to(self.device)
        self.model = folded.to(memory_format=torch.channels_last)
        self.min_sizes = [list(map(float, s)) for s in min_sizes]
        self.max_side = int(max_side)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.batch_size = int(batch_size)
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        min_sizes: Sequence[Sequence[float]],
        **kw,
    ) -> FaceDetector:
        """Build the network, load ``state_dict`` strictly (every key must match) and wrap it."""
        model = RetinaFace()
        model.load_state_dict(state_dict, strict=True)
        model.eval()
        return cls(model, min_sizes, **kw)

    def detect(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[Detections]:
        """Detect faces in ``frames``: a list of ``(H, W, 3)`` uint8 BGR images (sizes may differ)
        or one ``(N, H, W, 3)`` uint8 array. Returns one :class:`Detections` per frame."""
        frames = list(frames)
        for i, f in enumerate(frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(
                    f"frame {i}: expected (H, W, 3) uint8 BGR, got {f.shape} {f.dtype}"
                )
        out: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            out.extend(self._detect_batch(frames[start : start + self.batch_size]))
        return out

    # --- internals ----------------------------------------------------------------------------

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = self.max_side / max(h, w)
        if scale >= 1.0:
            return frame
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # INTER_AREA averages the source pixels, avoiding the aliasing of a plain subsample.
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def _priors_for(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            if len(self._priors) >= 32:  # mixed-size inputs: keep the cache from growing forever
                self._priors.clear()
            self._priors[key] = prior_boxes(height, width, self.min_sizes).to(self.device)
        return self._priors[key]

    def _detect_batch(self, frames: list[np.ndarray]) -> list[Detections]:
        small = [self._resize(f) for f in frames]
        ph = max(s.shape[0] for s in small)
        pw = max(s.shape[1] for s in small)
        batch = np.empty((len(small), ph, pw, 3), np.uint8)
        batch[:] = _PAD_BGR
        for i, s in enumerate(small):
            batch[i, : s.shape[0], : s.shape[1]] = s

        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        x = x - torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            loc, scores, ldm = self.model(x)
            priors = self._priors_for(ph, pw)
            # Padding is bottom/right only, so pixel coordinates in the padded input are the
            # resized frame's coordinates; one per-axis scale then maps them to the original.
            pad_wh = torch.tensor([pw, ph], dtype=torch.float32, device=self.device)
            boxes = decode_boxes(loc, priors) * pad_wh.repeat(2)
            points = decode_landmarks(ldm, priors) * pad_wh

            results = []
            for i, (frame, s) in enumerate(zip(frames, small)):
                keep = scores[i] >= self.score_threshold
                if not bool(keep.any()):
                    results.append(Detections.empty())
                    continue
                b, sc, p = boxes[i][keep], scores[i][keep], points[i][keep]
                kept = nms(b, sc, self.nms_threshold)  # highest score first
                to_frame = torch.tensor(
                    [frame.shape[1] / s.shape[1], frame.shape[0] / s.shape[0]],
                    dtype=torch.float32,
                    device=self.device,
                )
                results.append(
                    Detections(
                        boxes=(b[kept] * to_frame.repeat(2)).cpu().numpy().astype(np.float32),
                        scores=sc[kept].cpu().numpy().astype(np.float32),
                        landmarks=(p[kept] * to_frame).cpu().numpy().astype(np.float32),
                    )
                )
        return results
