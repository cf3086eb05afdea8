"""Where a render machine may read and write: the folders ``lipdub serve --roots`` allows.

Job specs arrive over the network (Prefect's API, from editors and shells), so a deployed run
must not open or write whatever path a job names. ``lipdub serve`` hands its allowed roots to its
workers as ``LIPDUB_ROOTS`` (folders separated by ``:``, as PATH), and every film run and chunk
checks the job against them before touching a file: each path, symlinks and ``..`` resolved,
must lie inside one root. Without ``LIPDUB_ROOTS`` (a user's own ``lipdub dub``) nothing is
restricted.
"""

from __future__ import annotations

import os
from pathlib import Path

from lipdub.pipeline.job import JobSpec, JobSpecError

ROOTS_VARIABLE = "LIPDUB_ROOTS"


def parse_roots(text: str | None) -> list[Path]:
    """Folders separated by ``:`` (as PATH), resolved; empty for no restriction."""
    return [Path(part).resolve() for part in (text or "").split(os.pathsep) if part.strip()]


def roots_from_env() -> list[Path]:
    """The allowed roots given to this process (``LIPDUB_ROOTS``)."""
    return parse_roots(os.environ.get(ROOTS_VARIABLE))


def _job_paths(job: JobSpec) -> list[tuple[str, Path]]:
    """Every path the job makes a machine read or write, by key."""
    paths = [("film", job.film), ("output.path", job.output.path),
             ("work_dir", job.cache_dir)]
    paths += [(f"stems.{name}", p) for name, p in job.stems.items()]
    optional = [("original_dialogue", job.original_dialogue), ("output.audio", job.output.audio)]
    paths += [(key, p) for key, p in optional if p is not None]
    for key in ("generator", "expert", "detector", "lse"):
        value = getattr(job.checkpoints, key)
        # A registry name resolves into the machine's own weights folder; only paths are the
        # job's to choose.
        if value and (os.sep in value or value.endswith((".pth", ".pt", ".safetensors"))):
            paths.append((f"checkpoints.{key}", Path(value)))
    return paths


def require_within_roots(job: JobSpec, roots: list[Path], source: str = "job") -> None:
    """Refuse a job naming any path outside ``roots`` (no restriction when empty).

    Raises:
        JobSpecError: every key whose path lies outside, with where it really points.
    """
    if not roots:
        return
    problems = []
    for key, path in _job_paths(job):
        real = Path(path).resolve()  # symlinks and .. followed, also for a file yet to come
        if not any(real == root or root in real.parents for root in roots):
            shown = f"{path}" + (f" (really {real})" if real != Path(path) else "")
            problems.append(f"{key}: {shown} is outside the folders this render machine may "
                            f"use ({os.pathsep.join(str(r) for r in roots)}; lipdub serve "
                            "--roots)")
    if problems:
        raise JobSpecError(source, problems)
