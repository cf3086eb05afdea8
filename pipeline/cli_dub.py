"""``lipdub dub JOB.yaml``: dub a whole film with the Prefect flow, no server needed.

Without ``PREFECT_API_URL`` the flow runs in Prefect's ephemeral mode (a temporary local
server); with it, the run shows up in that server's UI. A JSON summary is written beside the
output, and the job is checked (every problem at once) before any heavy work starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``dub`` command."""
    p = subparsers.add_parser("dub", help="dub a whole film from a job spec (YAML)",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("job", type=Path, help="job spec (see configs/pipeline/example_job.yaml)")
    p.add_argument("--check", action="store_true", help="only check the job, then stop")
    return p


def run(args: argparse.Namespace) -> int:
    from pipeline.job import check_job_inputs, parse_job

    job = parse_job(args.job)
    check_job_inputs(job, source=str(args.job))
    if args.check:
        print(f"{args.job}: OK")
        return 0
    from prefect import tags

    from pipeline.flows import dub_film

    # Named and tagged as the editor plugins name theirs; the whole job (paths resolved) is the
    # run's parameter, so the Prefect UI shows what is being dubbed, not a YAML path.
    name = f"dub {job.film.stem} -> {job.output.path.name}"
    labels = ["lipdub-cli", f"film:{job.film.name}", *(f"character:{c}" for c in job.stems)]
    with tags(*labels):
        summary = dub_film.with_options(flow_run_name=name)(job.model_dump(mode="json"))
    print(json.dumps({
        "output": summary["output"],
        "frames": summary["frames"],
        "frames_changed": summary["frames_changed"],
        "units_computed": summary["units_computed"],
        "units_cached": summary["units_cached"],
        "summary": summary["output"] + ".json",
    }, indent=2))
    return 0
