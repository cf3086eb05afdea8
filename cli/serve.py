"""``lipdub serve``: the film deployments and this machine's workers on a Prefect work pool.

Needs a Prefect server (``prefect server start``, on PostgreSQL for a farm: see the README),
with ``PREFECT_API_URL`` pointing at it. One machine runs ``--role control`` (or ``all``): it
registers the deployments dub_film/NAME (films, queue ``films``) and track_chunk/NAME and
sync_chunk/NAME (a film's chunks, queue ``gpu``), and a worker that takes films. Each render
machine runs ``--role gpu``: one worker per card (``--gpus 0,1``; each sees only its card and
takes one chunk at a time), or on a machine without one, ``--gpus none --workers N``. A film
fans out over every chunk worker online (the job's ``distribute``); ``all`` is one machine that
does both. Every code path must be the same install, at the same path, on every machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from lipdub.pipeline import contract

DEFAULT_POOL = "lipdub-local"
DEFAULT_DEPLOYMENT = contract.DEPLOYMENT
HEARTBEAT_SECONDS = 30  # flow runs say they are alive (Prefect's least); 3 missed: Crashed
ZOMBIE_AUTOMATION = "lipdub: crash flow runs whose heartbeats stop"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``serve`` command."""
    p = subparsers.add_parser("serve", help="deploy the film flows and run this machine's workers",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("--role", choices=("all", "control", "gpu"), default="all",
                   help="control: deployments + a worker taking films; gpu: chunk workers; "
                   "all: both (default)")
    p.add_argument("--pool", default=DEFAULT_POOL, help=f"work pool (default {DEFAULT_POOL})")
    p.add_argument("--name", default=DEFAULT_DEPLOYMENT,
                   help=f"deployment name (default {DEFAULT_DEPLOYMENT})")
    p.add_argument("--gpus", default="auto",
                   help="chunk workers: 'auto' (one per visible CUDA card; role gpu without a "
                   "card: CPU workers; role all without one: none), 'none' (CPU workers), or "
                   "card numbers '0,1'")
    p.add_argument("--workers", type=int, default=1,
                   help="CPU chunk workers with --gpus none (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per CPU chunk worker (default: the cores shared out)")
    p.add_argument("--limit", type=int, default=1,
                   help="films the control worker runs at once (default 1)")
    p.add_argument("--roots", default=os.environ.get("LIPDUB_ROOTS"),
                   help="folders (separated by ':') this machine's runs may read and write; a "
                   "job naming a path outside is refused (default: $LIPDUB_ROOTS; none: any)")
    p.add_argument("--worker-only", action="store_true",
                   help="only start workers (the deployments exist already)")
    p.add_argument("--no-worker", action="store_true", help="only register the deployments")
    p.add_argument("--gpu-slots", type=int, default=None, help=argparse.SUPPRESS)
    return p


# Each flow run is a fresh process started by the worker, so what `lipdub` sets for itself at
# start-up (lipdub.cli.main) travels as environment: two malloc arenas keep a long film's memory
# from creeping up across the task threads; OpenMP threads sleep instead of spinning. Heartbeats
# let the server tell a dead machine's run from a slow one.
RUN_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2", "OMP_WAIT_POLICY": "PASSIVE",
                   "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}


def deploy(pool: str, name: str) -> dict[str, str]:
    """Create the pool and queues (if missing), the three deployments and the automation that
    marks a run whose heartbeats stop as Crashed; returns the deployments' ids by flow."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType

    from lipdub.pipeline.farm.chunk_flows import sync_chunk, track_chunk
    from lipdub.pipeline.farm.fan_out import FILMS_QUEUE, GPU_QUEUE
    from lipdub.pipeline.flows import dub_film

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
        for queue in (FILMS_QUEUE, GPU_QUEUE):
            try:
                client.create_work_queue(queue, work_pool_name=pool)
            except ObjectAlreadyExists:
                pass
        _ensure_zombie_automation(client)
    ids = {}
    # Module-path entrypoints (lipdub.pipeline.flows.dub_film): a run's process imports the flow
    # from the installed lipdub, as every other module is imported. (A file-path entrypoint is
    # loaded as a package named after its folder, beside the installed one: a second copy of every
    # module it imports.) Each `serve` registers them again, replacing older ones.
    for flow, queue in ((dub_film, FILMS_QUEUE), (track_chunk, GPU_QUEUE),
                        (sync_chunk, GPU_QUEUE)):
        ids[flow.name] = str(flow.deploy(
            name=name, work_pool_name=pool, work_queue_name=queue, print_next_steps=False,
            build=False, push=False, entrypoint_type=EntrypointType.MODULE_PATH,
            job_variables={"env": dict(RUN_ENVIRONMENT)}))
    return ids


def _ensure_zombie_automation(client) -> None:
    """Prefect's own recipe for runs on a machine that died: no heartbeat for three periods
    (and no end) marks the run Crashed, so its film's coordinator starts the chunk again."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if client.read_automations_by_name(ZOMBIE_AUTOMATION):
        return
    client.create_automation(AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="lipdub serve: a flow run that stops sending heartbeats is Crashed",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_SECONDS)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {3 * HEARTBEAT_SECONDS} s: its "
                                    "machine or process is gone")]))


@dataclass
class WorkerPlan:
    """One ``prefect worker start``: its name, queue, run limit and environment."""

    name: str
    queue: str
    limit: int
    env: dict[str, str] = field(default_factory=dict)


def plan_workers(role: str, gpus: str, workers: int, threads: int | None, limit: int,
                 host: str, cards: int, cores: int) -> list[WorkerPlan]:
    """The workers this machine runs (``cards``: CUDA cards visible; ``cores``: CPU cores)."""
    from lipdub.pipeline.errors import LipdubError
    from lipdub.pipeline.farm.fan_out import FILMS_QUEUE, GPU_QUEUE

    plans = []
    if role in ("control", "all"):
        plans.append(WorkerPlan(f"{host}-films", FILMS_QUEUE, limit))
    if role == "control":
        return plans
    if gpus == "auto":
        gpus = (",".join(str(i) for i in range(cards)) if cards
                else "none" if role == "gpu" else "")
    if gpus == "none":
        each = threads or max(cores // max(workers, 1), 1)
        plans += [WorkerPlan(f"{host}-cpu{i}", GPU_QUEUE, 1, {
            "CUDA_VISIBLE_DEVICES": "", "LIPDUB_TORCH_THREADS": str(each),
            "OMP_NUM_THREADS": str(each)}) for i in range(workers)]
    elif gpus:
        try:
            ids = [int(g) for g in gpus.split(",")]
        except ValueError:
            raise LipdubError(f"--gpus {gpus!r}: give auto, none or card numbers like 0,1"
                              ) from None
        plans += [WorkerPlan(f"{host}-gpu{i}", GPU_QUEUE, 1, {"CUDA_VISIBLE_DEVICES": str(i)})
                  for i in ids]
    return plans


def _cuda_cards() -> int:
    import torch

    return torch.cuda.device_count()


def run(args: argparse.Namespace) -> int:
    from lipdub.pipeline.errors import LipdubError

    if args.gpu_slots is not None:
        raise LipdubError("--gpu-slots is gone: each chunk worker owns one card and takes one "
                          "chunk at a time; start one per card with --role gpu --gpus 0,1")
    if not os.environ.get("PREFECT_API_URL"):
        raise LipdubError("lipdub serve needs a Prefect server: run `prefect server start` and "
                          "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    from lipdub.pipeline.roots import ROOTS_VARIABLE, parse_roots

    roots = os.pathsep.join(str(r) for r in parse_roots(args.roots))
    missing = [r for r in roots.split(os.pathsep) if r and not Path(r).is_dir()]
    if missing:
        raise LipdubError(f"--roots: no such folder: {', '.join(missing)}")
    if roots:
        print(f"runs here may only use {roots}", flush=True)
    if args.role in ("control", "all") and not args.worker_only:
        ids = deploy(args.pool, args.name)
        for flow, deployment_id in ids.items():
            print(f"deployment {flow}/{args.name} ({deployment_id}) on pool {args.pool}",
                  flush=True)
    if args.no_worker:
        return 0
    cards = _cuda_cards() if args.role != "control" and args.gpus == "auto" else 0
    plans = plan_workers(args.role, args.gpus, args.workers, args.threads, args.limit,
                         socket.gethostname(), cards, os.cpu_count() or 1)
    return supervise(args.pool, plans, {ROOTS_VARIABLE: roots} if roots else {})


def supervise(pool: str, plans: list[WorkerPlan], env: dict[str, str] | None = None) -> int:
    """Run the workers until one ends or ``serve`` is stopped; then stop them all."""
    procs = []
    for plan in plans:
        print(f"worker {plan.name}: queue {plan.queue}, {plan.limit} run(s) at a time"
              + (f", {plan.env}" if plan.env else ""), flush=True)
        worker_env = dict(os.environ, LIPDUB_WORKER_NAME=plan.name, **(env or {}), **plan.env)
        # Prefect's default is to look for work every 10 s: a chunk would wait that long for
        # a free worker. Every 2 s costs the server nothing at a farm's scale.
        worker_env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type",
             "process", "--work-queue", plan.queue, "--limit", str(plan.limit), "--name",
             plan.name], env=worker_env))
    # A service manager (or a test) stops `lipdub serve` with SIGTERM: the workers go too,
    # instead of polling on as orphans.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return next(p.returncode for p in procs if p.poll() is not None)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
