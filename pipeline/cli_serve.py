"""``lipdub serve``: register the ``dub_film`` deployment on a process work pool, run a worker.

Needs a Prefect server (``prefect server start``, then ``PREFECT_API_URL`` pointing at it).
More machines (GPU render nodes) join by running ``lipdub serve --worker-only`` with the same
``PREFECT_API_URL``: every worker on the pool takes flow runs, and the ``gpu`` global
concurrency limit (one slot per GPU by default) keeps model calls from oversubscribing a card.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

DEFAULT_POOL = "lipdub-local"
DEFAULT_DEPLOYMENT = "lipdub"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``serve`` command."""
    p = subparsers.add_parser("serve", help="deploy the film flow and run a worker",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("--pool", default=DEFAULT_POOL, help=f"work pool (default {DEFAULT_POOL})")
    p.add_argument("--name", default=DEFAULT_DEPLOYMENT,
                   help=f"deployment name (default {DEFAULT_DEPLOYMENT})")
    p.add_argument("--gpu-slots", type=int, default=1,
                   help="size of the `gpu` concurrency limit (default 1)")
    p.add_argument("--worker-only", action="store_true",
                   help="only start a worker (the deployment exists already)")
    p.add_argument("--no-worker", action="store_true", help="only register the deployment")
    return p


# Each flow run is a fresh process started by the worker, so what `lipdub` sets for itself at
# start-up (pipeline.cli) travels as environment: two malloc arenas keep a long film's memory
# from creeping up across the task threads; OpenMP threads sleep instead of spinning.
RUN_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2", "OMP_WAIT_POLICY": "PASSIVE"}


def deploy(pool: str, name: str, gpu_slots: int) -> str:
    """Create the pool (if missing), the ``gpu`` limit and the deployment; returns its id."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    import pipeline
    from pipeline.flows import dub_film

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
        client.upsert_global_concurrency_limit_by_name("gpu", gpu_slots)
    source = Path(pipeline.__file__).resolve().parent.parent
    deployment_id = dub_film.from_source(
        source=str(source), entrypoint="pipeline/flows.py:dub_film"
    ).deploy(name=name, work_pool_name=pool, print_next_steps=False, build=False, push=False,
             job_variables={"env": dict(RUN_ENVIRONMENT)})
    return str(deployment_id)


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import LipdubError

    if not os.environ.get("PREFECT_API_URL"):
        raise LipdubError("lipdub serve needs a Prefect server: run `prefect server start` and "
                          "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    if not args.worker_only:
        deployment_id = deploy(args.pool, args.name, args.gpu_slots)
        print(f"deployment dub_film/{args.name} ({deployment_id}) on pool {args.pool}",
              flush=True)
    if args.no_worker:
        return 0
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start",
                               "--pool", args.pool, "--type", "process"])
    # A service manager (or a test) stops `lipdub serve` with SIGTERM: the worker goes too,
    # instead of polling on as an orphan.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        return worker.wait()
    finally:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
