"""A chunk worker's card, held by one chunk process at a time (a lock file of the worker's).

A chunk worker takes two chunks at once (``lipdub serve``): while one computes, the next one
starts its process, imports torch, loads the models and checks its inputs (4.8-7.7 s a chunk
on the fan-out benchmark), then waits here for the card. The lock is an ``flock`` on a file
named by the worker, so the kernel releases it when its holder dies, even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

WORKER_VARIABLE = "LIPDUB_WORKER_NAME"  # set by `lipdub serve` for each of its workers


def lock_path(worker: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", worker)
    return Path(tempfile.gettempdir()) / f"lipdub-{os.getuid()}-card-{name}.lock"


@contextlib.contextmanager
def card_turn() -> Iterator[Callable[[], None]]:
    """``with card_turn() as wait``: ``wait()`` returns when this process holds its worker's
    card; leaving the block lets it go. Outside a chunk worker (no worker name) ``wait`` returns
    at once: a single process shares its card by other means (pipeline.turns)."""
    worker = os.environ.get(WORKER_VARIABLE)
    held: list[int] = []

    def wait() -> None:
        if worker and not held:
            fd = os.open(lock_path(worker), os.O_RDWR | os.O_CREAT, 0o600)
            held.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)

    try:
        yield wait
    finally:
        for fd in held:
            os.close(fd)  # closing the file lets the lock go
