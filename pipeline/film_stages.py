"""The film flow's stages as plain functions, shared by the in-process tasks (lipdub.pipeline.flows)
and the fan-out chunk flows that run them on other machines (lipdub.pipeline.farm.chunk_flows).

Each stage reads and writes the film's work folder under names that hold everything the result
depends on (lipdub.pipeline.work_cache), so whichever process computes a piece, every other one
finds it there and nothing is computed twice.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lipdub.pipeline.errors import LipdubError, MediaError
from lipdub.pipeline.film_scan import (
    TRACKS_VERSION,
    FilmScan,
    TrackInfo,
    load_tracks,
    save_tracks,
    scan_film,
)
from lipdub.pipeline.film_units import SyncUnit, lipsync_unit, unit_boxes, unit_key
from lipdub.pipeline.job import JobSpec
from lipdub.pipeline.media.decode import Damage, VideoInfo
from lipdub.pipeline.partial_files import writing
from lipdub.pipeline.shots import shots_from_cuts
from lipdub.pipeline.stem_mel import stem_mel
from lipdub.pipeline.stems import StemAnalysis
from lipdub.pipeline.work_cache import cache_key, file_sha256

SCAN_VERSION = 1  # of what a cached scan holds

_models: dict[tuple, object] = {}
_models_lock = threading.RLock()  # re-entrant: the detector asks for the generator's device


def _cached_model(kind: str, key: tuple, build):
    """One model per process and settings: tasks in threads share it."""
    with _models_lock:
        if (kind, key) not in _models:
            _models[(kind, key)] = build()
        return _models[(kind, key)]


def detector(job: JobSpec):
    from lipdub.pipeline.faces.detector import load_face_detector

    return _cached_model("detector", (job.checkpoints.detector, job.settings.device),
                         lambda: load_face_detector(job.checkpoints.detector,
                                                    device=generator(job).device))


def generator(job: JobSpec):
    from lipdub.pipeline.generator import LipSyncModel

    s = job.settings
    return _cached_model("generator", (job.checkpoints.generator, s.device, s.precision),
                         lambda: LipSyncModel(job.checkpoints.generator, device=s.device,
                                              precision=s.precision))


@functools.cache
def code_version() -> str:
    """sha256 of lipdub's own source (pipeline/ and models/): two machines agree on pictures
    only when they run the same code."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in ("models", "pipeline"):
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def film_work_dir(job: JobSpec, film_id: str) -> Path:
    """The film's own folder in the job's work folder (named by its fingerprint)."""
    return job.cache_dir / film_id[:16]


def scan_path(job: JobSpec, work: Path) -> Path:
    """Where the film's shots are kept (the folder is the film's; the name holds what else
    decides the cuts: the cut list, or the detection threshold)."""
    key = cache_key("scan", SCAN_VERSION, job.shots,
                    None if job.shots is not None else job.settings.shot_threshold)
    return work / f"scan_{key}.npz"


def load_scan(path: Path) -> FilmScan:
    with np.load(path) as d:
        times = d["times"]
        damage = json.loads(str(d["damage"])) if "damage" in d else []
        return FilmScan(times, shots_from_cuts(times, list(d["cuts"])),
                        [Damage(**x) for x in damage])


def film_shots(job: JobSpec, info: VideoInfo, work: Path) -> FilmScan:
    """The film's frame times and shots: from the work folder, or scanned once and kept."""
    cached = scan_path(job, work)
    if cached.exists():
        scan = load_scan(cached)
        if scan.damage and not info.accept_damaged:  # kept by a run that accepted it
            raise MediaError(f"{info.path}: damaged: {len(scan.damage)} place(s), the first "
                             f"at frame {scan.damage[0].frame}: {scan.damage[0].what}. Accept "
                             "the damage (the job's settings.accept_damaged) or repair the film")
        return scan
    scan = scan_film(info, cut_times=job.shots, threshold=job.settings.shot_threshold)
    with writing(cached) as tmp:
        np.savez(tmp, times=scan.times, cuts=np.array([s.start_time for s in scan.shots[1:]]),
                 damage=np.array(json.dumps([asdict(d) for d in scan.damage])))
    return scan


def shared_scan(job: JobSpec, work: Path) -> FilmScan:
    """The scan a coordinator left in the work folder (a chunk never re-decodes the film)."""
    cached = scan_path(job, work)
    if not cached.exists():
        raise LipdubError(
            f"{cached} is missing on this machine: the film's work folder ({work}) is not "
            "shared with the machine that scanned it. Set the job's work_dir to a folder every "
            "render machine sees at the same path")
    return load_scan(cached)


def detector_identity(job: JobSpec) -> str:
    """The sha256 of the job's face detector (what names its tracks)."""
    from lipdub.pipeline.faces.detector import resolve_detector

    return file_sha256(resolve_detector(job.checkpoints.detector)[0])


def tracks_path(job: JobSpec, scan: FilmScan, shot_index: int, work: Path,
                detector_sha: str | None = None) -> Path:
    """Where a shot's tracks are kept: named by its frames, the detector and every setting.

    ``detector_sha``: :func:`detector_identity`, when the caller has it (once per run).
    """
    s, shot = job.settings, scan.shots[shot_index]
    key = cache_key("tracks", TRACKS_VERSION, shot.start, shot.end,
                    float(scan.times[shot.start]), detector_sha or detector_identity(job),
                    s.detect_every, s.detect_size, s.smooth_window)
    return work / "tracks" / f"shot{shot_index:04d}_{key}.npz"


def shot_tracks(job: JobSpec, info: VideoInfo, scan: FilmScan, shot_index: int, work: Path,
                detector_sha: str) -> tuple[list[TrackInfo], bool]:
    """A shot's face tracks, and whether they were computed now (False: found in the folder)."""
    from lipdub.pipeline.film_scan import track_shot

    s = job.settings
    cached = tracks_path(job, scan, shot_index, work, detector_sha)
    if cached.exists():
        return load_tracks(cached), False
    tracks = track_shot(info, scan, scan.shots[shot_index], detector(job).detect,
                        every=s.detect_every, max_side=s.detect_size,
                        smooth_window=s.smooth_window)
    save_tracks(tracks, cached)
    return tracks, True


def unit_path(job: JobSpec, info: VideoInfo, scan: FilmScan, unit: SyncUnit, track: TrackInfo,
              stem: StemAnalysis, film_id: str, weights_sha: str, work: Path, *,
              device_type: str, precision: str) -> tuple[Path, list]:
    """Where a unit's pictures are kept (named by all they depend on, the kind of device and
    the precision included: a GPU's pictures differ from a CPU's), and its crop boxes."""
    boxes = unit_boxes(unit, track, info, job.settings.pads)
    key = unit_key(unit, boxes, scan, stem.samples(), film_id, weights_sha, precision,
                   device_type)
    return work / "units" / f"{unit.name}_{key}.npz", boxes


@dataclass
class UnitResult:
    """A lip-synced unit: its result file (frames, boxes, mouths; film_units) and whether it
    was found in the work folder instead of computed."""

    unit: str
    path: str
    cached: bool


def unit_result(job: JobSpec, info: VideoInfo, scan: FilmScan, unit: SyncUnit,
                track: TrackInfo, stem: StemAnalysis, film_id: str, weights_sha: str,
                work: Path, card_turn=None) -> dict:
    """Lip-sync one unit, or find it done.

    ``card_turn``: gives the unit's turn on the card when units run in threads
    (:meth:`lipdub.pipeline.turns.Turns.turn`); the turn is over when this returns or fails, and is
    given up when the unit is found done.
    """
    with card_turn() if card_turn else contextlib.nullcontext(None) as wait_for_card:
        model = generator(job)
        path, boxes = unit_path(job, info, scan, unit, track, stem, film_id, weights_sha, work,
                                device_type=model.device.type, precision=model.precision)
        if path.exists():
            return UnitResult(unit.name, str(path), cached=True)
        lipsync_unit(info, scan, unit, boxes, stem_mel(stem.samples_path), model, path,
                     batch_size=job.settings.batch_size, wait_for_card=wait_for_card)
    return UnitResult(unit.name, str(path), cached=False)


def generator_sha(job: JobSpec) -> str:
    from lipdub.pipeline.weights_registry import resolve_weights_file

    return file_sha256(resolve_weights_file(job.checkpoints.generator))
