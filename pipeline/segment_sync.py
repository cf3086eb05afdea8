"""Lip-sync one unit of a film (a face track over a run of frames) into a cached result file.

A unit's result holds, per frame, the face box and the generator's 96x96 output (float16);
compositing happens when the film is assembled. Results are keyed by the content of their
inputs (see :func:`unit_key`), so a rerun after a crash or a kill skips finished units.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio import (
    HOP_SIZE,
    MEL_STEP_SIZE,
    constant_frame_rate,
    frame_mel_starts,
    mel_columns,
    melspectrogram,
    with_silence,
)
from .background import in_background
from .film_scan import FilmScan, TrackInfo
from .frames import to_bgr
from .lipsync import LipSyncModel, crop_face, padded_box
from .media import VideoInfo, iter_video_frames
from .routing import Decision
from .work_cache import writing

MEL_MARGIN_COLUMNS = 8  # mel columns computed beyond a unit's ends (STFT edges, pre-emphasis)
# Part of every unit's cache key: bumped when the same inputs give other pictures (2: mel
# windows picked as the reference picks them), so that no older result is served.
UNIT_VERSION = 2


@dataclass(frozen=True)
class SyncUnit:
    """Frames [start, end) of one face track, voiced by one character."""

    shot: int
    track_id: int
    character: str
    start: int
    end: int

    @property
    def name(self) -> str:
        return f"shot{self.shot:04d}_track{self.track_id}_{self.start:07d}-{self.end:07d}"


def units_from_decisions(decisions: list[Decision]) -> list[SyncUnit]:
    """One unit per run of routed pieces on the same face (touching pieces are merged)."""
    units: list[SyncUnit] = []
    for d in sorted((d for d in decisions if d.synced), key=lambda d: (d.shot, d.track_id,
                                                                         d.start_frame)):
        last = units[-1] if units else None
        if (last and last.shot == d.shot and last.track_id == d.track_id
                and d.start_frame <= last.end):
            units[-1] = SyncUnit(last.shot, last.track_id, last.character, last.start,
                                 max(last.end, d.end_frame))
        else:
            units.append(SyncUnit(d.shot, d.track_id, d.character, d.start_frame, d.end_frame))
    return units


def film_fingerprint(path: Path, chunk: int = 16 << 20) -> str:
    """Cheap content identity of a film: size plus sha256 of its first and last 16 MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(size - chunk)
            h.update(f.read(chunk))
    return h.hexdigest()


def unit_boxes(unit: SyncUnit, track: TrackInfo, info: VideoInfo, pads) -> list:
    return [None if (b := track.box_at(f)) is None else padded_box(b, pads, info.width,
                                                                      info.height)
            for f in range(unit.start, unit.end)]


def _mel_window(samples: np.ndarray, starts: np.ndarray):
    """The mel columns a unit's windows read, computed so they equal the whole-stem mel's.

    Arguments:
        samples: the character's whole stem, 16 kHz.
        starts: the unit's frames' window starts (global columns, :func:`unit_mel_starts`).

    Returns:
        (mel, first_column): local mel and the global column of its column 0.
    """
    first = max(0, int(starts.min()) - MEL_MARGIN_COLUMNS)
    last = int(starts.max()) + MEL_STEP_SIZE + MEL_MARGIN_COLUMNS
    # Column j of a mel is centred on sample 200*j: cut the samples on that grid. A window that
    # reaches the stem's end takes the samples up to it and no further, so that the STFT's
    # reflect padding there is the whole stem's; columns past the stem are silence.
    lo, hi = first * HOP_SIZE, last * HOP_SIZE
    piece = np.asarray(samples[lo : hi if last < mel_columns(len(samples)) else None],
                       dtype=np.float32)
    mel = (melspectrogram(piece) if len(piece) > 4 * HOP_SIZE
           else np.zeros((80, 0), np.float32))  # nothing of the stem left: all silence
    mel = with_silence(mel, last - first)
    # The window's own start (reflect padding, pre-emphasis from rest) only touches the margin.
    return mel, first


def unit_mel_starts(scan: FilmScan, unit: SyncUnit, n_samples: int, rate) -> np.ndarray:
    """Global mel start column of each of a unit's frames, as ``lipdub sync`` picks them for
    the whole film with the stem as its dub (:func:`pipeline.audio.frame_mel_starts`)."""
    seconds = scan.times - scan.times[0]
    fps = constant_frame_rate(seconds, float(rate) if rate else None)
    return frame_mel_starts(seconds, mel_columns(n_samples), fps)[unit.start : unit.end]


def unit_key(unit: SyncUnit, boxes: list, scan: FilmScan, samples: np.ndarray, film_id: str,
             weights_sha256: str, precision: str, device: str = "cpu") -> str:
    """The cache key: film content, frame times, boxes, the stem samples used, weights, settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"unit": asdict(unit), "film": film_id, "weights": weights_sha256,
                         "precision": precision, "device": device, "boxes": boxes,
                         "version": UNIT_VERSION}).encode())
    h.update(np.ascontiguousarray(scan.times[unit.start : unit.end]).tobytes())
    t0 = scan.times[0]
    lo = max(0, int((scan.times[unit.start] - t0 - 0.5) * 16000))
    hi = int((scan.times[unit.end - 1] - t0 + 0.7) * 16000)
    h.update(np.asarray(samples[lo:hi], dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def lipsync_unit(info: VideoInfo, scan: FilmScan, unit: SyncUnit, boxes: list,
                 samples: np.ndarray, model: LipSyncModel, out_path: Path, *,
                 batch_size: int | None = None,
                 model_slot: Callable[[], contextlib.AbstractContextManager] | None = None) -> Path:
    """Run the generator on a unit's frames and save the result (atomically) at ``out_path``.

    Arguments:
        info, scan: the film.
        unit: what to sync; ``boxes`` its per-frame integer crop boxes (None: skip that frame).
        samples: the character's 16 kHz stem samples (film-aligned).
        model: the generator.
        model_slot: gives a context manager held while this unit uses the model (the card's
            lock): units in threads take the card in turn, each for all its frames, so that
            they finish one after the other, in the order they got it (the assembly streams
            them as they come), instead of all together at the end.
    """
    batch_size = batch_size or model.batch_size
    starts = unit_mel_starts(scan, unit, len(samples), info.average_rate)
    mel, first_col = _mel_window(samples, starts)
    end_time = float(scan.times[unit.end]) if unit.end < len(scan.times) else None
    frames_out, boxes_out, preds_out = [], [], []
    batch_crops, batch_mels, batch_meta = [], [], []

    def run_batch():
        preds = model(np.stack(batch_mels), np.stack(batch_crops))
        for (index, box), pred in zip(batch_meta, preds):
            frames_out.append(index)
            boxes_out.append(box)
            preds_out.append(pred.astype(np.float16))
        batch_crops.clear()
        batch_mels.clear()
        batch_meta.clear()

    def crops():
        """(frame, box, face crop, mel window) of each frame with a face, made in a thread."""
        frames = iter_video_frames(info.path, start_time=float(scan.times[unit.start]),
                                   end_time=end_time)
        for offset, frame in enumerate(frames):
            index = unit.start + offset
            if index >= unit.end:
                break
            box = boxes[offset]
            if box is None:
                continue
            col = int(starts[offset]) - first_col
            yield index, box, crop_face(to_bgr(frame), box), mel[:, col : col + MEL_STEP_SIZE]

    items = in_background(crops(), maxsize=2 * batch_size)
    # The first crop is taken before the model is ours: the decoding thread then fills its
    # queue while an earlier unit still has the model, and the model never waits for a seek.
    first = next(items, None)
    with model_slot() if model_slot else contextlib.nullcontext():
        for index, box, crop, window in itertools.chain([first] if first else [], items):
            batch_crops.append(crop)
            batch_mels.append(window)
            batch_meta.append((index, box))
            if len(batch_crops) == batch_size:
                run_batch()
        if batch_crops:
            run_batch()
    with writing(out_path) as tmp:
        np.savez(tmp, frames=np.asarray(frames_out, np.int64),
                 boxes=np.asarray(boxes_out, np.int64).reshape(-1, 4),
                 preds=np.asarray(preds_out, np.float16).reshape(-1, 96, 96, 3))
    return out_path
