"""``lipdub evaluate``: LSE-D / LSE-C the paper's way, and the expert's off-sync accuracy.

LSE (spec §7.6): each (video, audio) pair joins a target video with the audio of *another*
utterance; the generator lip-syncs the video to that audio (``lipdub sync`` with the evaluation
scripts' settings: no box padding, smoothing on, 25 fps timing; a pair is skipped when the
video is shorter than the audio, as the paper's script does); syncnet_python's network then
scores the **whole generated frames resized to 224x224** against the audio (Wav2Lip's
``calculate_scores_LRS.py`` variant) and the figures are averaged over the pairs. Without a
generator, the pairs' videos are scored as they are (e.g. real videos with their own audio).

The expert: eval-mode loss and off-sync detection accuracy on a dataset's val list, with the
sampling of training (balanced in-sync / off-sync windows from the same video).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from lipdub.models.lse import SyncNetLSE
from lipdub.models.weights import load_weights
from lipdub.pipeline.audio import read_pcm16_mono_16k
from lipdub.pipeline.clip_sync import SyncOptions, sync_clip
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.generator import LipSyncModel, resolve_device
from lipdub.pipeline.lse_metric import MFCC_RATE, mfcc, sync_score, syncnet_features
from lipdub.pipeline.media.decode import iter_video_frames, open_media, probe_video
from lipdub.pipeline.media.frames import to_bgr
from lipdub.pipeline.partial_files import write_text, writing
from lipdub.pipeline.weights_registry import resolve_weights_file
from lipdub.training.checkpoints import read_weights_for
from lipdub.training.data import ExpertDataset
from lipdub.training.networks import build_expert, build_generator
from lipdub.training.prepare import resample_indices
from lipdub.training.train_expert import VAL_SEED_OFFSET, validate

LSE_FPS = 25.0  # syncnet_python's windows assume 25 fps (4 MFCC columns per frame)
LSE_SIZE = 224


@dataclass
class PairResult:
    """The score of one (video, audio) pair."""

    video: str
    audio: str
    output: str
    lse_d: float = math.nan
    lse_c: float = math.nan
    offset: int = 0
    skipped: str = ""  # why the pair was not scored


def read_pairs(path: str | Path, root: str | Path | None = None) -> list[tuple[Path, Path]]:
    """(video, audio) pairs of a filelist: one ``VIDEO AUDIO`` pair per line.

    Relative paths are taken from ``root`` (default: the filelist's folder); ``#`` starts a
    comment. The paper's own lists put the audio first: swap the columns with ``--audio-first``.

    Raises:
        LipdubError: missing file, a line without two paths, or no pairs.
    """
    path = Path(path)
    if not path.is_file():
        raise LipdubError(f"{path}: pairs filelist not found")
    base = Path(root) if root else path.parent
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise LipdubError(f"{path}:{number}: expected 'VIDEO AUDIO', got {line!r}")
        pairs.append(tuple(p if Path(p).is_absolute() else base / p for p in map(Path, parts)))
    if not pairs:
        raise LipdubError(f"{path}: lists no pairs")
    return pairs


def make_pairs(videos: list[Path], seed: int = 0) -> list[tuple[Path, Path]]:
    """Pair every video with the audio of another one (a random derangement), as the protocol.

    Raises:
        LipdubError: fewer than two videos.
    """
    if len(videos) < 2:
        raise LipdubError("pairing needs at least two videos (audio must come from another one)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(videos))
    # Shifting a random order by one gives every video another's audio.
    partner = {int(order[i]): int(order[(i + 1) % len(order)]) for i in range(len(order))}
    return [(videos[i], videos[partner[i]]) for i in range(len(videos))]


def load_lse_model(name_or_path: str | Path, device: torch.device) -> SyncNetLSE:
    """syncnet_python's network (``syncnet_v2.model``), from a file or a registry name."""
    model = load_weights(SyncNetLSE(), resolve_weights_file(name_or_path))
    return model.to(device).eval()


def _audio_start(path: Path) -> float:
    with open_media(path) as container:
        if not container.streams.audio:
            raise LipdubError(f"{path}: has no audio stream to score against")
        stream = container.streams.audio[0]
        if stream.start_time is None:
            return 0.0
        return float(stream.start_time * stream.time_base)


def frames_for_lse(video: str | Path, fps: float = LSE_FPS) -> tuple[np.ndarray, float]:
    """Whole frames of ``video`` on a ``fps`` grid, resized to 224x224 BGR (uint8).

    Returns:
        (frames (N, 224, 224, 3), time of the first frame in seconds).
    """
    info = probe_video(video)
    times, frames = [], []
    for frame in iter_video_frames(video):
        times.append(float(frame.pts * frame.time_base) if frame.pts is not None else len(times))
        frames.append(cv2.resize(to_bgr(frame), (LSE_SIZE, LSE_SIZE),
                                 interpolation=cv2.INTER_LINEAR))
    times_arr = np.asarray(times)
    step = float(np.median(np.diff(times_arr))) if len(times_arr) > 1 else (
        float(1 / info.average_rate) if info.average_rate else 1 / fps)
    picks = resample_indices(times_arr, fps, step)
    return np.stack([frames[i] for i in picks]), float(times_arr[0])


def score_video(model: SyncNetLSE, video: str | Path, audio: str | Path | None = None):
    """LSE of one video against ``audio`` (default: its own soundtrack).

    Returns:
        A :class:`lipdub.pipeline.lse_metric.SyncScore`.
    """
    video = Path(video)
    frames, first_time = frames_for_lse(video)
    source = Path(audio) if audio else video
    pcm = read_pcm16_mono_16k(source)
    if audio is None:  # align the soundtrack with the first picture
        offset = int(round((first_time - _audio_start(video)) * MFCC_RATE))
        pcm = pcm[offset:] if offset >= 0 else np.concatenate([np.zeros(-offset, pcm.dtype), pcm])
    video_feat, audio_feat = syncnet_features(model, frames, mfcc(pcm))
    return sync_score(video_feat, audio_feat)


def _duration(path: Path) -> float:
    with open_media(path) as container:
        if container.duration:
            return container.duration / av.time_base
    return 0.0


def evaluate_lse(pairs: list[tuple[Path, Path]], out_dir: str | Path, *,
                 lse_model: str | Path = "syncnet_v2", generator: str | Path | None = None,
                 detector: str | Path | None = None, device: str = "auto",
                 skip_short: bool = True, progress: bool = False) -> dict:
    """LSE-D / LSE-C over (video, audio) pairs, generating each dubbed video first.

    Generated videos and ``lse_results.csv`` go to ``out_dir``; a pair whose output already
    exists is not generated again, so an interrupted evaluation resumes.

    Arguments:
        pairs: (video, audio) pairs, audio from another utterance.
        out_dir: where the generated videos and results go.
        lse_model: syncnet_python weights (file or registry name).
        generator: generator checkpoint (any width); None scores the videos as they are,
            against the paired audio.
        detector: face detector (registry name or file; None: the default one).
        skip_short: skip a pair when the video is shorter than the audio (the paper's rule).

    Returns:
        {"lse_d", "lse_c" (means over scored pairs), "scored", "skipped", "results" (CSV path)}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    scorer = load_lse_model(lse_model, dev)
    lipsync, face_detector = None, None
    if generator is not None:
        model, _ = read_weights_for(build_generator, generator, "generator")
        lipsync = LipSyncModel(None, device=str(dev), model=model)
    options = SyncOptions(pads=(0, 0, 0, 0), smooth=True, overwrite=True, progress=progress)
    results: list[PairResult] = []
    for index, (video, audio) in enumerate(pairs):
        output = out_dir / f"{index:05d}_{Path(video).stem}__{Path(audio).stem}.mp4"
        result = PairResult(str(video), str(audio), str(output) if lipsync else str(video))
        results.append(result)
        if skip_short and _duration(Path(video)) + 1e-3 < _duration(Path(audio)):
            result.skipped = "video shorter than audio"
            continue
        if lipsync is not None and not output.is_file():
            if face_detector is None:
                from lipdub.pipeline.faces.detector import load_face_detector

                face_detector = load_face_detector(detector, device=dev)
            try:
                sync_clip(video, audio, output, options, model=lipsync, detector=face_detector)
            except LipdubError as exc:
                result.skipped = " ".join(str(exc).split())
                continue
        try:
            score = score_video(scorer, result.output, None if lipsync else audio)
        except LipdubError as exc:
            result.skipped = " ".join(str(exc).split())
            continue
        result.lse_d, result.lse_c, result.offset = score.lse_d, score.lse_c, score.offset
    scored = [r for r in results if not r.skipped]
    csv_path = out_dir / "lse_results.csv"
    # Atomic, so an interrupted run never leaves a table that looks whole; not durable: the
    # figures are measured again from the generated videos, which a rerun keeps.
    with writing(csv_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(results[0])) if results else [])
        writer.writeheader()
        for r in results:
            writer.writerow(asdict(r))
    summary = {
        "lse_d": float(np.mean([r.lse_d for r in scored])) if scored else math.nan,
        "lse_c": float(np.mean([r.lse_c for r in scored])) if scored else math.nan,
        "scored": len(scored),
        "skipped": len(results) - len(scored),
        "results": str(csv_path),
    }
    write_text(out_dir / "lse_summary.json", json.dumps(summary, indent=2))
    return summary


def evaluate_expert(checkpoint: str | Path, root: str | Path, filelist: str = "val.txt", *,
                    batches: int = 50, batch_size: int = 64, seed: int = 1337,
                    fps: float | None = None, device: str = "auto",
                    num_workers: int = 0) -> dict:
    """The expert's eval loss and off-sync accuracy on a dataset's list (any expert width).

    The samples are the ones ``lipdub train expert`` evaluates on with the same seed.
    """
    dev = resolve_device(device)
    model, divisor = read_weights_for(build_expert, checkpoint, "expert")
    data = ExpertDataset(root, filelist, fps=fps, seed=seed + VAL_SEED_OFFSET)
    metrics = validate(model.to(dev), data, batches=batches, batch_size=batch_size, device=dev,
                       num_workers=num_workers)
    return {**metrics, "width_divisor": divisor}
