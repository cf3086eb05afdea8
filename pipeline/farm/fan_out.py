"""Fan-out: a film's face tracking and lip sync as chunk runs of their own deployments.

The ``dub_film`` flow stays the coordinator. Work that dominates a film (tracking shots,
lip-syncing units) is cut into contiguous chunks of about equal frames and started as sub-flow
runs of ``track_chunk/<name>`` and ``sync_chunk/<name>`` with Prefect's ``run_deployment``: the
work pool's ``gpu`` queue hands them to whichever render machine's worker is free, and the Prefect
UI shows each chunk under its film. Chunks read and write the shared work folder
(lipdub.pipeline.film_stages), so the coordinator only gathers what they leave there.

A chunk that fails or crashes (a killed process, a machine whose heartbeats stopped) is started
again, twice at most; then the film fails naming the chunks. Only missing work is ever chunked:
a re-run finds everything in the folder and starts no child at all.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lipdub.pipeline import contract
from lipdub.pipeline.errors import LipdubError

GPU_QUEUE = "gpu"  # chunk runs
FILMS_QUEUE = "films"  # coordinators
CHUNK_FLOWS = {"tracks": "track_chunk", "lipsync": "sync_chunk"}
# `lipdub serve` names a chunk worker <host>-gpu<N> (one per card) or <host>-cpu<N>.
_CHUNK_WORKER = re.compile(r"-(gpu|cpu)\d+$")


def is_chunk_worker(name: str) -> bool:
    return bool(_CHUNK_WORKER.search(name))


def plan_chunks(weights: Sequence[int], count: int) -> list[range]:
    """Cut items ``0..n-1`` into at most ``count`` contiguous runs of about equal weight.

    Each cut goes where the running total is nearest its share (k/count of the whole), so no
    run is heavier than its share plus one item; no run is empty.
    """
    n = len(weights)
    if n == 0:
        return []
    count = max(1, min(count, n))
    totals = [0]
    for w in weights:
        totals.append(totals[-1] + max(int(w), 0))
    bounds = [0]
    for k in range(1, count):
        target = totals[-1] * k / count
        lo, hi = bounds[-1] + 1, n - (count - k)  # leave one item at least for each later run
        best = min(range(lo, hi + 1), key=lambda j: (abs(totals[j] - target), j))
        bounds.append(best)
    bounds.append(n)
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def chunk_count(frames: int, fps: float, chunk_seconds: float, workers: int) -> int:
    """Chunks of about ``chunk_seconds`` of picture each, and at least one per worker."""
    return max(math.ceil(frames / max(chunk_seconds * fps, 1.0)), workers, 1)


@dataclass(frozen=True)
class Chunk:
    """Items (shot or unit indices) of one stage, run as one child flow run."""

    stage: str  # "tracks" or "lipsync"
    index: int
    items: tuple[int, ...]
    frames: int
    label: str  # what the run is called: "shots 3-5", "units 0-2"


def make_chunks(stage: str, items: Sequence[int], weights: Sequence[int], count: int,
                noun: str) -> list[Chunk]:
    """``items`` (shot or unit indices, in film order) cut by :func:`plan_chunks` of
    ``weights`` (their frames) into :class:`Chunk` s."""
    chunks = []
    for i, run in enumerate(plan_chunks(weights, count)):
        ids = tuple(items[j] for j in run)
        chunks.append(Chunk(stage, i, ids, sum(weights[j] for j in run), _label(noun, ids)))
    return chunks


def make_waves(stage: str, items: Sequence[int], weights: Sequence[int], count: int,
               workers: int, noun: str) -> list[Chunk]:
    """Chunks whose results are taken up in film order as they land (lip-sync units: the
    assembly writes the film beside them): ``items`` cut by :func:`plan_chunks` into contiguous
    waves of ``workers`` chunks (``count`` chunks in all, rounded up to whole waves), each
    wave's items dealt in film order to the chunk of that wave with the fewest frames so far.

    Contiguous chunks that run side by side would finish their film regions together, and the
    assembly, which waits for the first, would write the others after the lip sync; dealt, the
    chunks of a wave move through one region of the film together.
    """
    workers = max(workers, 1)
    chunks: list[Chunk] = []
    for wave in plan_chunks(weights, math.ceil(max(count, 1) / workers)):
        dealt: list[list[int]] = [[] for _ in range(min(workers, len(wave)))]
        frames = [0] * len(dealt)
        for j in wave:
            k = min(range(len(dealt)), key=lambda k: (frames[k], k))
            dealt[k].append(j)
            frames[k] += weights[j]
        for share, total in zip(dealt, frames):
            ids = tuple(items[j] for j in share)
            chunks.append(Chunk(stage, len(chunks), ids, total, _label(noun, ids)))
    return chunks


def _label(noun: str, ids: tuple[int, ...]) -> str:
    """What a chunk's run is called: "shots 3-5", "shots 2, 5", "units 4, 6 ... 12 (5)"."""
    if len(ids) == 1:
        return f"{noun} {ids[0]}"
    if list(ids) == list(range(ids[0], ids[-1] + 1)):
        return f"{noun} {ids[0]}-{ids[-1]}"
    if len(ids) <= 3:
        return f"{noun} " + ", ".join(map(str, ids))
    return f"{noun} {ids[0]}, {ids[1]} ... {ids[-1]} ({len(ids)})"


@dataclass
class Farm:
    """Where chunks go: the chunk deployments' base name, the pool and its chunk workers."""

    deployment: str  # "lipdub": the runs are track_chunk/lipdub and sync_chunk/lipdub
    pool: str
    workers: list[str] = field(default_factory=list)


def find_farm(mode: str, deployment: str | None) -> Farm | None:
    """The farm to fan out to, or None to run in this process.

    ``mode``: the job's ``distribute.mode``: ``off`` never fans out, ``auto`` does when the
    chunk deployments exist and a chunk worker is online, ``on`` must (or says what is missing).
    ``deployment``: this run's deployment name (None when not started from one: ``lipdub``).
    """
    if mode == "off":
        return None
    from prefect import get_client
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.exceptions import ObjectNotFound

    name = deployment or contract.DEPLOYMENT
    wanted = f"{CHUNK_FLOWS['tracks']}/{name}"
    try:
        with get_client(sync_client=True) as client:
            chunk_deployment = client.read_deployment_by_name(wanted)
            pool = chunk_deployment.work_pool_name
            workers = sorted(w.name for w in client.read_workers_for_work_pool(pool)
                             if w.status == WorkerStatus.ONLINE and is_chunk_worker(w.name))
    except ObjectNotFound:
        if mode == "on":
            raise LipdubError(f"distribute.mode is on, but the server has no deployment {wanted}"
                              ": run `lipdub serve --role control` (or all) once") from None
        return None
    if not workers:
        if mode == "on":
            raise LipdubError(f"distribute.mode is on, but no chunk worker is online in pool "
                              f"{pool}: start `lipdub serve --role gpu` on a render machine")
        return None
    return Farm(name, pool, workers)


def farm_precision(settings, farm: Farm) -> tuple[str, str]:
    """The kind of device and the precision the farm's chunks will compute with (what names
    their results): the job's, or with ``device: auto`` what the workers are."""
    if settings.device != "auto":
        kind = settings.device.split(":")[0]
    else:
        kinds = {"cuda" if "-gpu" in name else "cpu" for name in farm.workers}
        if len(kinds) > 1:
            raise LipdubError(
                f"pool {farm.pool} has GPU and CPU chunk workers ({', '.join(farm.workers)}) "
                "and the job's device is auto: one film would mix pictures made on both. Set "
                "settings.device (cuda or cpu), or keep such workers in separate pools")
        kind = kinds.pop()
    return kind, settings.precision or ("fp16" if kind == "cuda" else "fp32")


class ChunksFailed(LipdubError):
    """Chunks that failed every attempt."""


def run_chunks(farm: Farm, chunks: list[Chunk], parameters: Callable[[Chunk, Path], dict],
               records: Path, parent_id: str, *, retries: int = 2, in_flight: int | None = None,
               poll: float = 1.0, on_done: Callable[[Chunk, dict], None] | None = None,
               on_poll: Callable[[], None] | None = None, log=None) -> list[dict]:
    """Run ``chunks`` as child flow runs and wait for them all; returns their records in order.

    Arguments:
        parameters: the child run's parameters for a chunk, given where it must leave its
            record (a JSON file in ``records``: what it computed, on which worker).
        parent_id: this film's flow run id (in idempotency keys: a retried coordinator gets
            the same children back instead of starting them twice).
        in_flight: children scheduled at once (default two per chunk worker): enough that a
            worker never waits, few enough that a cancel or a failure wastes little.
        on_done: hears of each chunk as it completes, with its record.
        on_poll: called every ``poll`` seconds while chunks run (to look for results that
            chunks leave in the work folder before they end).
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    in_flight = in_flight or 2 * max(len(farm.workers), 1)
    records.mkdir(parents=True, exist_ok=True)
    runs = _ChunkRuns(farm, chunks, parameters, records, parent_id, retries, on_done, log)
    with get_client(sync_client=True) as client:
        try:
            while runs.pending or runs.running:
                runs.start(in_flight)
                time.sleep(poll)
                if on_poll:
                    on_poll()
                for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=list(runs.running)))):
                    if run.state is not None and run.state.is_final():
                        runs.settle(run)
        finally:
            runs.cancel_running(client)  # the film stops: so do its children
    if runs.failed:
        raise ChunksFailed(f"{len(runs.failed)} {chunks[0].stage} chunk(s) failed "
                           f"{retries + 1} times: "
                           + "; ".join(runs.failed[i] for i in sorted(runs.failed)))
    return [runs.done[c.index] for c in chunks]


class _ChunkRuns:
    """The chunk runs of one stage of :func:`run_chunks`: waiting, running, done, failed."""

    def __init__(self, farm: Farm, chunks: list[Chunk], parameters, records: Path,
                 parent_id: str, retries: int, on_done, log) -> None:
        self.farm, self.parameters, self.records = farm, parameters, records
        self.parent_id, self.retries, self.on_done, self.log = parent_id, retries, on_done, log
        self.pending = deque(chunks)
        self.attempts = {c.index: 0 for c in chunks}
        self.running: dict = {}  # flow run id -> (chunk, started)
        self.done: dict[int, dict] = {}
        self.failed: dict[int, str] = {}

    def record_path(self, chunk: Chunk) -> Path:
        return self.records / f"{chunk.stage}_{self.parent_id}_{chunk.index:04d}.json"

    def start(self, in_flight: int) -> None:
        from prefect.deployments import run_deployment

        while self.pending and len(self.running) < in_flight:
            chunk = self.pending.popleft()
            attempt = self.attempts[chunk.index]
            run = run_deployment(
                f"{CHUNK_FLOWS[chunk.stage]}/{self.farm.deployment}",
                parameters=self.parameters(chunk, self.record_path(chunk)), timeout=0,
                as_subflow=True, flow_run_name=f"{chunk.stage} {chunk.label}"
                + (f" (try {attempt + 1})" if attempt else ""),
                idempotency_key=f"{self.parent_id}:{chunk.stage}:{chunk.index}:{attempt}")
            self.running[run.id] = (chunk, time.perf_counter())

    def settle(self, run) -> None:
        """A chunk run that ended: its record kept, or the chunk tried again, or failed."""
        chunk, started = self.running.pop(run.id)
        if run.state.is_completed():
            path = self.record_path(chunk)
            record = json.loads(path.read_text())
            path.unlink()
            record.update(chunk=chunk.index, label=chunk.label, flow_run_id=str(run.id),
                          flow_run=run.name, attempt=self.attempts[chunk.index] + 1,
                          span_s=round(time.perf_counter() - started, 2))
            self.done[chunk.index] = record
            if self.on_done:
                self.on_done(chunk, record)
        elif run.state.is_cancelled():
            raise LipdubError(f"{chunk.stage} chunk {chunk.label} was cancelled "
                              f"({run.name}): the film stops")
        else:
            why = f"{run.state.name}: {run.state.message or 'no message'}"
            if self.log:
                self.log.warning("%s chunk %s (%s) ended %s", chunk.stage, chunk.label,
                                 run.name, why)
            if self.attempts[chunk.index] < self.retries:
                self.attempts[chunk.index] += 1
                self.pending.appendleft(chunk)
            else:
                self.failed[chunk.index] = f"{chunk.label} ({run.name}, {why})"

    def cancel_running(self, client) -> None:
        from prefect.states import Cancelling

        for run_id in self.running:
            try:
                client.set_flow_run_state(run_id, Cancelling(), force=True)
            except Exception as exc:  # noqa: BLE001 - best effort; the server cleans up too
                logging.getLogger(__name__).warning(
                    "could not cancel chunk run %s (%s); the server's own clean-up will", run_id,
                    exc)
