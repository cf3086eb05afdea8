"""Lip-sync one unit of a film (a face track over a run of frames) into a cached result file.

A unit's result holds, per frame, the face box and the generator's 96x96 output (float16);
compositing happens when the film is assembled. Results are keyed by the content of their
inputs (see :func:`unit_key`), so a rerun after a crash or a kill skips finished units.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lipdub.pipeline import stopping
from lipdub.pipeline.audio import (
    MEL_STEP_SIZE,
    constant_frame_rate,
    frame_mel_starts,
    with_silence,
)
from lipdub.pipeline.background import in_background
from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.generator import LipSyncModel, crop_face, padded_box
from lipdub.pipeline.media.decode import VideoInfo
from lipdub.pipeline.media.frames import to_bgr
from lipdub.pipeline.partial_files import writing
from lipdub.pipeline.routing import Decision

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


_fingerprints: dict[tuple[str, int, int], str] = {}


def film_fingerprint(path: Path, chunk: int = 16 << 20) -> str:
    """Cheap content identity of a film: size plus sha256 of its first and last 16 MiB
    (remembered per path, size and modification time: `lipdub dub` takes it while its server
    boots, the flow and the chunks' checks ask again)."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _fingerprints:
        _fingerprints[key] = _fingerprint(Path(path), stat.st_size, chunk)
    return _fingerprints[key]


def _fingerprint(path: Path, size: int, chunk: int) -> str:
    h = hashlib.sha256()
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


def unit_mel_starts(scan: FilmScan, unit: SyncUnit, columns: int, rate) -> np.ndarray:
    """Global mel start column of each of a unit's frames, as ``lipdub sync`` picks them for
    the whole film with the stem (a mel of ``columns`` columns) as its dub
    (:func:`lipdub.pipeline.audio.frame_mel_starts`)."""
    seconds = scan.times - scan.times[0]
    fps = constant_frame_rate(seconds, float(rate) if rate else None)
    return frame_mel_starts(seconds, columns, fps)[unit.start : unit.end]


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
                 mel: np.ndarray, model: LipSyncModel, out_path: Path, *,
                 batch_size: int | None = None,
                 wait_for_card: Callable[[], None] | None = None) -> Path:
    """Run the generator on a unit's frames and save the result (atomically) at ``out_path``.

    Arguments:
        info, scan: the film.
        unit: what to sync; ``boxes`` its per-frame integer crop boxes (None: skip that frame).
        mel: the mel of the character's whole stem (film-aligned; :mod:`lipdub.pipeline.stem_mel`).
        model: the generator.
        wait_for_card: returns when it is this unit's turn on the card (units in threads
            take the card one at a time, each for all its frames, in film order:
            :mod:`lipdub.pipeline.turns`), so that they finish one after the other and the assembly
            streams them as they come. Called once the first frame is ready.
    """
    batch_size = batch_size or model.batch_size
    starts = unit_mel_starts(scan, unit, mel.shape[1], info.average_rate)
    first_col = int(starts.min())
    # Only the columns the unit reads leave the memory map; past the stem's end, silence.
    mel = with_silence(np.array(mel[:, first_col : int(starts.max()) + MEL_STEP_SIZE]),
                       int(starts.max()) + MEL_STEP_SIZE - first_col)
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
        frames = info.frames(start_time=float(scan.times[unit.start]), end_time=end_time)
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
    # The first crop is taken before the card is ours: the decoding thread then fills its queue
    # while an earlier unit still has the card, which never waits for a seek.
    first = next(items, None)
    if wait_for_card:
        wait_for_card()
    for index, box, crop, window in itertools.chain([first] if first else [], items):
        stopping.check()  # the crops queued ahead are not worth finishing on a stop
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
