"""``lipdub submit JOB.yaml``: send a film to the farm (a run of dub_film/lipdub) from a shell.

Needs ``PREFECT_API_URL`` (the server ``lipdub serve`` registered the deployment on). Prints the
run's name and its page in the Prefect UI; with ``--wait`` follows it with a progress bar and
exits 0 when it completes, 1 when it fails, crashes or is cancelled (Ctrl-C asks whether to
cancel the run on the server). The paths in the job are the render machines' paths.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lipdub.pipeline import contract

EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``submit`` command."""
    p = subparsers.add_parser("submit", help="send a film job to the farm (Prefect server)",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("job", type=Path, help="job spec (see configs/pipeline/example_job.yaml)")
    p.add_argument("--deployment", default=contract.FLOW_DEPLOYMENT,
                   help="deployment to run (default dub_film/lipdub)")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends")
    p.add_argument("--no-check", action="store_true",
                   help="do not look for the job's files here (they are only on the farm)")
    return p


def run(args: argparse.Namespace) -> int:
    from lipdub.pipeline.errors import LipdubError
    from lipdub.pipeline.job import check_job_inputs, parse_job

    if not os.environ.get("PREFECT_API_URL"):
        raise LipdubError("lipdub submit needs the farm's Prefect server: set PREFECT_API_URL "
                          "(e.g. http://render-control:4200/api)")
    job = parse_job(args.job)
    if not args.no_check:
        check_job_inputs(job, source=str(args.job))
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(args.deployment)
        except ObjectNotFound:
            raise LipdubError(f"the server has no deployment {args.deployment}: run "
                              "`lipdub serve --role control` (or all) once") from None
        labels = ["lipdub-submit", f"film:{job.film.name}", *(f"character:{c}" for c in job.stems)]
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"job": job.model_dump(mode="json")},
            name=f"dub {job.film.stem} -> {job.output.path.name}", tags=labels)
        print(f"{run.name}: {_ui_url(run.id)}", flush=True)
        if not args.wait:
            return 0
        return follow(client, run.id)


def _ui_url(run_id) -> str:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{ui}/runs/flow-run/{run_id}"


def follow(client, run_id, poll: float = 1.0) -> int:
    """Show the run's progress until it ends; its exit code."""
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}] {desc}")
    try:
        while True:
            try:
                run = client.read_flow_run(run_id)
                percent, text = _progress(client, run_id)
                bar.set_description_str(f"{run.state.name if run.state else 'Pending'}: {text}")
                bar.update(max(percent - bar.n, 0))
                if run.state and run.state.is_final():
                    break
                time.sleep(poll)
            except KeyboardInterrupt:
                bar.close()
                if _ask("cancel the run on the server? [y/N] "):
                    from prefect.states import Cancelling

                    client.set_flow_run_state(run_id, Cancelling(), force=True)
                    print("cancelling; the server stops its chunks too", file=sys.stderr)
                else:
                    print(f"the run goes on: {_ui_url(run_id)}", file=sys.stderr)
                return 130
    finally:
        bar.close()
    state = run.state
    print(f"{run.name}: {state.name}" + (f": {state.message}" if state.message else ""))
    return 0 if state.is_completed() else EXIT_FAILED


def _progress(client, run_id) -> tuple[float, str]:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    found = client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        key=ArtifactFilterKey(any_=[contract.PROGRESS_KEY])), limit=1)
    if not found:
        return 0.0, "waiting for a worker"
    return float(found[0].data or 0.0), found[0].description or ""


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False
