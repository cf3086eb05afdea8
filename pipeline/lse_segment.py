"""Sync measurement for QC: LSE-D, LSE-C and the A/V offset of one dubbed segment.

With ``syncnet_v2.model`` (:class:`lipdub.models.lse.SyncNetLSE`) the figures are syncnet_python's,
computed by the parity-tested code of :mod:`lipdub.pipeline.lse_metric`: face crops cut as
syncnet_python's ``crop_video`` cuts them (a square of 2.8 half-box sizes, reaching further
below the face than above), on a 25 fps grid, against the MFCCs of the delivered audio.

Without it, Wav2Lip's expert (:class:`lipdub.models.syncnet.SyncNetExpert`) stands in: per window
of 5 pictures, its face embedding against the embedding of the mel chunk at the window's time, and
the same offset search (:func:`lipdub.pipeline.lse_metric.sync_score`) over its embeddings. Those
values are on the expert's own scale (distances of unit vectors), not comparable with published LSE
figures; the report says which model measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipdub.pipeline.audio import (
    MEL_STEP_SIZE,
    SAMPLE_RATE,
    iter_pcm16_mono_16k,
    mel_chunk_start_at,
    melspectrogram,
    read_audio,
)
from lipdub.pipeline.audio import read_pcm16_mono_16k as read_pcm16
from lipdub.pipeline.generator import crop_face
from lipdub.pipeline.partial_files import writing

LSE_FPS = 25.0  # syncnet_python's windows: 4 MFCC columns per picture
LSE_SIZE = 224
CROP_SCALE = 0.4  # syncnet_python's crop_scale
MIN_WINDOWS = 6


@dataclass
class SyncModel:
    """A loaded sync network: ``kind`` is ``syncnet_v2`` or ``expert``."""

    kind: str
    model: object
    source: str


def load_sync_model(lse: str | None, expert: str | None, device: str = "cpu") -> SyncModel | None:
    """syncnet_v2 when ``lse`` names weights, else the expert when ``expert`` does, else None.

    Raises:
        RegistryError, lipdub.models.weights.WeightsError: weights that cannot be found or read.
    """
    if not lse and not expert:
        return None
    import torch

    from lipdub.models.weights import load_weights
    from lipdub.pipeline.weights_registry import resolve_weights_file

    if lse:
        from lipdub.models.lse import SyncNetLSE

        model, kind, name = SyncNetLSE(), "syncnet_v2", lse
    else:
        model, kind, name = expert_at_its_width(resolve_weights_file(expert)), "expert", expert
    load_weights(model, resolve_weights_file(name))
    return SyncModel(kind, model.to(torch.device(device)).eval(), str(name))


def expert_at_its_width(path: Path):
    """An empty SyncNet expert as wide as the one in ``path`` (the paper's, or a narrowed one
    trained by ``lipdub train expert`` with ``width_divisor``)."""
    from lipdub.models.narrow import build_narrowed, width_divisor_of
    from lipdub.models.syncnet import SyncNetExpert
    from lipdub.models.weights import read_state_dict

    divisor = width_divisor_of(read_state_dict(path), SyncNetExpert) or 1
    try:
        return build_narrowed(SyncNetExpert, divisor)
    except ValueError:  # an odd width: the full one, whose strict load then names the keys
        return SyncNetExpert()


def lse_crop(bgr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """syncnet_python's face crop around ``box``, 224x224 BGR (grey 110 beyond the frame)."""
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) / 2
    pad = int(half * (1 + 2 * CROP_SCALE))
    padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                value=(110, 110, 110))
    cy, cx = (y0 + y1) / 2 + pad, (x0 + x1) / 2 + pad
    face = padded[int(cy - half): int(cy + half * (1 + 2 * CROP_SCALE)),
                  int(cx - half * (1 + CROP_SCALE)): int(cx + half * (1 + CROP_SCALE))]
    return cv2.resize(face, (LSE_SIZE, LSE_SIZE), interpolation=cv2.INTER_LINEAR)


def model_crop(sync: SyncModel, bgr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The crop ``sync``'s network looks at for one picture."""
    return lse_crop(bgr, box) if sync.kind == "syncnet_v2" else crop_face(bgr, box)


class AudioSource:
    """The delivered audio, decoded once, as the network that measures wants it."""

    def __init__(self, path: Path, kind: str, delay: float = 0.0,
                 work_dir: Path | None = None):
        """Decode ``path`` for ``kind``'s network; into ``work_dir`` (memory-mapped, so a
        feature's mix is never held in memory) when given, else into memory."""
        self.kind = kind
        self.delay = delay  # seconds of audio before the first picture
        if work_dir is not None:
            self.samples = _decode_to_disk(path, kind, Path(work_dir))
        elif kind == "syncnet_v2":
            self.samples = read_pcm16(path)
        else:
            self.samples = read_audio(path).samples  # soxr, as the expert was trained on

    @classmethod
    def from_samples(cls, samples: np.ndarray, kind: str, delay: float = 0.0) -> AudioSource:
        """Samples already decoded (16 kHz, as ``kind``'s network wants them)."""
        source = cls.__new__(cls)
        source.kind, source.delay, source.samples = kind, delay, samples
        return source

    def window(self, start: float, seconds: float) -> np.ndarray:
        """``seconds`` of samples from ``start`` (seconds after the first picture), 0-padded."""
        first = int(round((start + self.delay) * SAMPLE_RATE))
        count = int(np.ceil(seconds * SAMPLE_RATE))
        out = np.zeros(count, self.samples.dtype)
        lo, hi = max(first, 0), min(first + count, len(self.samples))
        if hi > lo:
            out[lo - first: hi - first] = self.samples[lo:hi]
        return out


def _decode_to_disk(path: Path, kind: str, work_dir: Path) -> np.ndarray:
    work_dir.mkdir(parents=True, exist_ok=True)
    if kind == "syncnet_v2":
        target = work_dir / "qc_audio_pcm16.raw"
        # Renamed into place: a map of an earlier decode keeps its own file, and an interrupted
        # decode is never mapped as the whole audio. Scratch, so not durable.
        with writing(target) as tmp, open(tmp, "wb") as out:
            for chunk in iter_pcm16_mono_16k(path):
                out.write(chunk.tobytes())
        return np.memmap(target, dtype=np.int16, mode="r") if target.stat().st_size else \
            np.zeros(0, np.int16)
    from lipdub.pipeline.stems import (
        analyse_stem,  # soxr 'HQ' streamed: the samples read_audio gives
    )

    return analyse_stem("qc_audio", path, work_dir).samples()


def grid_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """Positions in ``times`` of the pictures nearest to a ``fps`` grid from the first one."""
    if len(times) == 0:
        return np.zeros(0, int)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1 / fps
    count = int(np.floor((times[-1] - times[0] + step) * fps + 1e-6))
    grid = times[0] + np.arange(count) / fps
    return np.clip(np.searchsorted(times, grid - step / 2), 0, len(times) - 1)


def measure(sync: SyncModel, crops: list[np.ndarray], times: np.ndarray, audio: AudioSource,
            t0: float) -> dict:
    """Sync figures of one segment.

    Arguments:
        sync: the network.
        crops: :func:`model_crop` of each picture of the segment, in order.
        times: the pictures' presentation times (s).
        audio: the delivered audio.
        t0: presentation time of the film's first picture.

    Returns:
        ``{"measured": True, "metric", "lse_d", "lse_c", "offset_frames", "offset_seconds",
        "offset_steps", "grid_fps", "conf_times", "conf"}`` or ``{"measured": False, "reason"}``:
        the offset in the film's frames and in seconds (``offset_steps``: in the network's own
        steps of ``grid_fps``, 25 fps for syncnet_v2, whatever the film's rate).
    """
    from lipdub.pipeline.lse_metric import mfcc, sync_score, syncnet_features

    if sync.kind == "syncnet_v2":
        picks = grid_indices(times, LSE_FPS)
        if len(picks) < MIN_WINDOWS:
            return {"measured": False, "reason": f"shorter than {MIN_WINDOWS} pictures at 25 fps"}
        frames = np.stack([crops[i] for i in picks])
        pcm = audio.window(times[picks[0]] - t0, len(picks) / LSE_FPS + 0.25)
        video_feat, audio_feat = syncnet_features(sync.model, frames, mfcc(pcm))
        grid_fps, window_times = LSE_FPS, times[picks[: len(video_feat)]]
    else:
        video_feat, audio_feat = expert_features(sync.model, crops, times, audio, t0)
        if video_feat is None:
            return {"measured": False, "reason": "shorter than 5 pictures"}
        steps = np.diff(times)
        grid_fps = float(1 / np.median(steps)) if len(steps) else LSE_FPS
        window_times = times[: len(video_feat)]
    score = sync_score(video_feat, audio_feat)
    offset_seconds = score.offset / grid_fps
    steps = np.diff(times)
    film_fps = float(1 / np.median(steps)) if len(steps) else grid_fps
    return {"measured": True, "metric": sync.kind, "model": sync.source,
            "lse_d": round(score.lse_d, 4), "lse_c": round(score.lse_c, 4),
            "offset_frames": int(round(offset_seconds * film_fps)),
            "offset_seconds": round(offset_seconds, 4), "offset_steps": score.offset,
            "grid_fps": round(grid_fps, 4),
            "conf_times": [round(float(t - t0), 4) for t in window_times],
            "conf": [round(float(c), 4) for c in score.frame_conf]}


def expert_features(model, crops: list[np.ndarray], times: np.ndarray, audio: AudioSource,
                     t0: float, batch: int = 32):
    """(face embeddings, audio embeddings) of every 5-picture window of the segment."""
    import torch

    count = len(crops) - 4
    if count < 1:
        return None, None
    start = times[0] - t0
    samples = audio.window(start, float(times[-1] - times[0]) + 0.5)
    mel = melspectrogram(samples)
    lower = np.stack([c[48:] for c in crops]).astype(np.float32) / 255.0  # (N, 48, 96, 3)
    device = next(model.parameters()).device
    faces_out, audio_out = [], []
    with torch.inference_mode():
        for lo in range(0, count, batch):
            idx = range(lo, min(count, lo + batch))
            faces = np.stack([np.concatenate(list(lower[v: v + 5]), axis=2) for v in idx])
            mels = np.stack([mel[:, c: c + MEL_STEP_SIZE] for c in (
                mel_chunk_start_at(float(times[v] - times[0]), mel.shape[1]) for v in idx)])
            face_t = torch.from_numpy(faces).permute(0, 3, 1, 2).to(device)
            mel_t = torch.from_numpy(mels[:, None]).to(device)
            audio_emb, face_emb = model(mel_t, face_t)
            faces_out.append(face_emb.cpu())
            audio_out.append(audio_emb.cpu())
    return torch.cat(faces_out), torch.cat(audio_out)
