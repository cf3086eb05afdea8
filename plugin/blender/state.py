"""What the add-on holds in memory only: the jobs being followed and the API key.

Neither is ever written to a .blend file or to the user preferences: jobs are Python objects,
and the API key preference reads and writes :data:`_secrets` through get/set callbacks, so
Blender has no stored value to save. The key comes from ``LIPDUB_API_KEY`` (or
``PREFECT_API_KEY``, ``PREFECT_API_AUTH_STRING``) at start-up, or is typed into the
preferences once per session.
"""

from __future__ import annotations

from dataclasses import dataclass

try:  # the installable zip vendors plugin/core as lipdub_blender/core
    from . import core
except ImportError:  # running from lipdub's own package (lipdub.plugin.blender)
    from .. import core


_secrets = {"api_key": core.api_key_from_env()}


def get_api_key() -> str:
    return _secrets["api_key"]


def set_api_key(value: str) -> None:
    _secrets["api_key"] = value or ""


@dataclass
class Job:
    """One strip sent to the render machines, and where its result goes back."""

    task: core.DubTask
    scene: str
    strip: str
    channel: int
    frame_start: int  # the timeline frame of the source's first frame
    final_start: int  # the strip's first and one-past-last shown frames
    final_end: int
    source: str
    placed: str | None = None  # name of the strip added for the result
    note: str = ""  # what happened when placing it
    handled: bool = False  # its end has been dealt with (result placed or error shown)
    last_status: core.DubStatus | None = None  # as last drawn

    @property
    def id(self) -> str:
        return self.task.id


jobs: dict[str, Job] = {}


def add(job: Job) -> None:
    jobs[job.id] = job


def unfinished() -> list[Job]:
    return [j for j in jobs.values() if not j.handled]


def last_finished(where=None) -> Job | None:
    """The job that ended last (of those ``where(job)`` accepts), if any."""
    done = [j for j in jobs.values() if j.handled and j.last_status is not None
            and (where is None or where(j))]
    return max(done, key=lambda j: j.last_status.finished_at or 0.0, default=None)


def clear_finished() -> int:
    done = [k for k, j in jobs.items() if j.handled]
    for k in done:
        del jobs[k]
    return len(done)


def forget_all() -> list[Job]:
    """Stop following every job (runs go on on the server); returns those still running."""
    running = unfinished()
    for job in jobs.values():
        job.task.stop_following()
    jobs.clear()
    return running
