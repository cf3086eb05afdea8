"""Stopping a command on SIGTERM, SIGHUP or SIGINT: promptly, and leaving nothing behind.

A render farm stops a job with SIGTERM, a closed terminal sends SIGHUP, Ctrl-C SIGINT. Python's
default for the first two ends the process at once, so no ``finally`` runs: partial outputs stay
on disk and children are orphaned. :func:`install_handlers` (the CLI's first step) turns each of
them into :class:`Stopped` raised in the main thread, whose clean-up then runs as after any
error (partial files removed, children stopped, the Prefect run marked as crashed). Work running
in other threads (a film's task threads, the assembly) calls :func:`check` in its loops and ends
the same way, so the process exits within a second or two.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_requested = threading.Event()
_raised = threading.Event()  # Stopped was raised in the main thread
_signal_number: list[int] = []


class Stopped(KeyboardInterrupt):
    """The command was told to stop (a KeyboardInterrupt, so ``except Exception`` lets it
    through, as it does Ctrl-C).

    Attributes:
        signum: the signal that asked for it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def install_handlers() -> None:
    """Raise :class:`Stopped` in the main thread on SIGTERM, SIGHUP and SIGINT, and tell the
    other threads' loops at once (call from the main thread; a signal that arrives while
    stopping is ignored, the stop is under way)."""
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    _watch_signals()


def _watch_signals() -> None:
    """Tell every loop of a stop as soon as the signal arrives, not when the main thread next
    runs Python code.

    The kernel hands a process's signal to any of its threads, and Python runs the handler in
    the main thread only; a main thread blocked waiting for a worker thread (a film's lip-sync
    unit) then heard of the stop only when that worker had finished (measured: 15 s, in one
    of six SIGINT tests). Python's C-level handler also writes the signal's number to a wakeup
    pipe, from whichever thread got it; a watcher thread reads it and calls :func:`request`.
    """
    if any(t.name == "lipdub-signals" for t in threading.enumerate()):
        return  # one watcher per process
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            for signum in os.read(read_end, 64):
                if signum in SIGNALS:
                    request(signum)

    threading.Thread(target=watch, name="lipdub-signals", daemon=True).start()


def check() -> None:
    """Raise :class:`Stopped` if a stop was asked for (for loops outside the main thread)."""
    if _requested.is_set():
        raise Stopped(_signal_number[0])


def requested() -> bool:
    """Whether a stop was asked for."""
    return _requested.is_set()


def signal_number() -> int:
    """The signal that asked for the stop (SIGTERM when a stop was asked for otherwise)."""
    return _signal_number[0] if _signal_number else signal.SIGTERM


def request(signum: int = signal.SIGTERM) -> None:
    """Ask every loop that calls :func:`check` to stop (a flow stopped by Prefect's own
    SIGTERM handling, which raises in the main thread only, tells its task threads so)."""
    if not _requested.is_set():
        _signal_number.append(signum)
        _requested.set()


@contextmanager
def workers_stop_with_me() -> Iterator[None]:
    """Around a main thread that waits on worker threads: when it is interrupted (a signal,
    Prefect's own TerminationSignal, Ctrl-C), the workers' loops stop as well instead of
    finishing their work while the process waits for them."""
    try:
        yield
    except Exception:
        raise
    except BaseException:
        request()
        raise


def _handler(signum: int, frame) -> None:
    if _raised.is_set():
        return
    _raised.set()
    request(signum)
    raise Stopped(_signal_number[0])
