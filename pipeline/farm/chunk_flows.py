"""The fan-out chunk flows: ``track_chunk`` and ``sync_chunk`` (deployed by ``lipdub serve``).

A chunk runs on whichever render machine's worker takes it. It first checks that it sees what
its coordinator saw (the same film, weights and lipdub code: a machine with another install
would make other pictures), reads the coordinator's scan from the shared work folder (it never
decodes the whole film), computes its shots or units, which land in that folder under their
content keys, and leaves a record of what it did and where for the coordinator.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger

from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.film_scan import load_tracks
from lipdub.pipeline.film_stages import (
    code_version,
    detector_identity,
    generator_sha,
    shared_scan,
    shot_tracks,
    unit_result,
)
from lipdub.pipeline.film_units import SyncUnit, film_fingerprint
from lipdub.pipeline.job import JobSpec, parse_job
from lipdub.pipeline.media.decode import probe_video
from lipdub.pipeline.partial_files import write_text
from lipdub.pipeline.roots import require_within_roots, roots_from_env
from lipdub.pipeline.stems import stem_analysis


def _same_as_coordinator(job: JobSpec, expect: dict, *, weights: bool) -> None:
    seen = {"code": code_version(), "film": film_fingerprint(job.film)}
    if weights:
        seen["weights"] = generator_sha(job)
    else:
        seen["detector"] = detector_identity(job)
    what = {"code": "lipdub code (install the same version on every machine)",
            "film": f"film ({job.film}: another file at that path)",
            "weights": f"generator weights ({job.checkpoints.generator})",
            "detector": f"face detector ({job.checkpoints.detector or 'bundled'})"}
    wrong = [what[k] for k, v in seen.items() if expect.get(k) != v]
    if wrong:
        raise LipdubError(f"{socket.gethostname()} sees another " + ", another ".join(wrong)
                          + " than the film's coordinator: this chunk would not match the rest")


def _use_threads() -> None:
    """`lipdub serve --threads N` gives each CPU chunk worker its share of the cores."""
    threads = os.environ.get("LIPDUB_TORCH_THREADS")
    if threads:
        import cv2
        import torch

        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))  # OpenCV's pool would take every core of the machine


def _chunk_inputs(job: dict, expect: dict, *, weights: bool):
    """The job (checked against the allowed roots and the coordinator), the work folder, the
    film's header and its scan from that folder; this worker's threads set."""
    spec = parse_job(job)
    require_within_roots(spec, roots_from_env())
    _same_as_coordinator(spec, expect, weights=weights)
    _use_threads()
    work = Path(expect["work"])
    info = replace(probe_video(spec.film), accept_damaged=spec.settings.accept_damaged)
    return spec, work, info, shared_scan(spec, work)


def _leave_record(record: str, items: list[dict], started: float) -> dict:
    done = {"worker": os.environ.get("LIPDUB_WORKER_NAME", "in-process"),
            "host": socket.gethostname(), "pid": os.getpid(),
            "wall_s": round(time.perf_counter() - started, 2), "items": items}
    write_text(Path(record), json.dumps(done))  # in the work folder: atomic, not durable
    return done


@flow(name="track_chunk", log_prints=True)
def track_chunk(job: dict, shots: list[int], expect: dict, record: str) -> dict:
    """Track the faces of some shots of a film (a chunk of ``dub_film``)."""
    started = time.perf_counter()
    spec, work, info, scan = _chunk_inputs(job, expect, weights=False)
    items = []
    for index in shots:
        tracks, computed = shot_tracks(spec, info, scan, index, work, expect["detector"])
        items.append({"shot": index, "tracks": len(tracks), "computed": computed})
    get_run_logger().info("shots %s: %d computed", shots, sum(i["computed"] for i in items))
    return _leave_record(record, items, started)


@flow(name="sync_chunk", log_prints=True)
def sync_chunk(job: dict, units: list[dict], expect: dict, record: str) -> dict:
    """Lip-sync some units of a film (a chunk of ``dub_film``).

    ``units``: each ``{"unit": SyncUnit fields, "tracks": its shot's tracks file}``.
    """
    started = time.perf_counter()
    spec, work, info, scan = _chunk_inputs(job, expect, weights=True)
    stems, items = {}, []
    for entry in units:
        unit = SyncUnit(**entry["unit"])
        track = next(t for t in load_tracks(Path(entry["tracks"])) if t.track_id == unit.track_id)
        if unit.character not in stems:
            stems[unit.character] = stem_analysis(
                unit.character, spec.stems[unit.character], work / "stems",
                min_segment=spec.settings.min_segment, identity=expect["stems"][unit.character])
        result = unit_result(spec, info, scan, unit, track, stems[unit.character],
                             expect["film"], expect["weights"], work)
        items.append({"unit": unit.name, "frames": unit.end - unit.start,
                      "computed": not result.cached, "path": result.path})
    get_run_logger().info("%d units: %d computed", len(items), sum(i["computed"] for i in items))
    return _leave_record(record, items, started)
