"""``lipdub dub JOB.yaml``: dub a whole film with the Prefect flow, no server needed.

Without ``PREFECT_API_URL`` the flow runs against a temporary local Prefect server that lives
as long as the command (:mod:`lipdub.pipeline.farm.temporary_server`); with it, the run shows up in
that server's UI. A JSON summary is written beside the output, and the job is checked (every problem
at once) before any heavy work starts.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``dub`` command."""
    p = subparsers.add_parser("dub", help="dub a whole film from a job spec (YAML)",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("job", type=Path, help="job spec (see configs/pipeline/example_job.yaml)")
    p.add_argument("--check", action="store_true", help="only check the job, then stop")
    return p


def run(args: argparse.Namespace) -> int:
    from lipdub.pipeline.job import check_job_inputs, parse_job

    job = parse_job(args.job)
    server = None
    if not args.check and not os.environ.get("PREFECT_API_URL"):
        from lipdub.pipeline.farm.temporary_server import TemporaryServer

        # Started before the job check and the imports (torch, Prefect), so that it boots
        # beside them rather than after them; it dies with this process.
        server = TemporaryServer.start()
    try:
        check_job_inputs(job, source=str(args.job))
        if args.check:
            print(f"{args.job}: OK")
            return 0
        summary = _dub(job, server)
    finally:
        from lipdub.pipeline.farm.temporary_server import drain_prefect_senders

        server.stop() if server else drain_prefect_senders()
    print(json.dumps({
        "output": summary["output"],
        "frames": summary["frames"],
        "frames_changed": summary["frames_changed"],
        "units_computed": summary["units_computed"],
        "units_cached": summary["units_cached"],
        "summary": summary["output"] + ".json",
    }, indent=2))
    # Everything written is closed and renamed, and the server has the run's logs: the console
    # script may leave without tearing torch and Prefect down module by module (about 1 s).
    args._exit_when_done = True
    return 0


WARM_SCAN_SECONDS = 600.0  # films up to this long are scanned while the server boots


def _while_the_server_boots(job, server) -> None:
    """The run's first steps, taken while the temporary server boots (5-7 s on 2 cores, most of
    it after this process is ready to run): the generator and the detector loaded into this
    process's model cache, the generator's checksum, and for a film of up to ten minutes its
    shots, found and kept in the work folder. The flow then finds them done. (A longer film's
    scan would hold back the run's start in the Prefect UI; it is scanned by the flow.)"""
    from lipdub.pipeline import film_stages
    from lipdub.pipeline.film_units import film_fingerprint
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.roots import require_within_roots, roots_from_env

    require_within_roots(job, roots_from_env())  # as the flow does, before any file is opened
    film_stages.detector(job)  # the generator too: the detector goes on the generator's device
    film_stages.generator_sha(job)
    info = probe_video(job.film)
    seconds = info.frame_count / float(info.average_rate) if info.average_rate else 0.0
    if 0 < seconds <= WARM_SCAN_SECONDS and not server.ready():
        work = film_stages.film_work_dir(job, film_fingerprint(job.film))
        work.mkdir(parents=True, exist_ok=True)
        film_stages.film_shots(job, info, work)


def _dub(job, server) -> dict:
    from contextlib import nullcontext

    from prefect import tags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lipdub.pipeline.flows import dub_film

    if server:
        _while_the_server_boots(job, server)
        server.wait_ready()
    # Named and tagged as the editor plugins name theirs; the whole job (paths resolved) is the
    # run's parameter, so the Prefect UI shows what is being dubbed, not a YAML path.
    name = f"dub {job.film.stem} -> {job.output.path.name}"
    labels = ["lipdub-cli", f"film:{job.film.name}", *(f"character:{c}" for c in job.stems)]
    api = temporary_settings(updates={PREFECT_API_URL: server.api_url}) if server else nullcontext()
    with api, tags(*labels):
        return dub_film.with_options(flow_run_name=name)(job.model_dump(mode="json"))
