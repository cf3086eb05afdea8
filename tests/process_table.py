"""The process table as the stop tests read it (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> set[int]:
    """The processes ``pid`` started that are still its children."""
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_when(proc, reached, signum: int, *, wait: float = 180) -> str:
    """Send ``signum`` to ``proc`` once ``reached()``; check that it stops within 5 s with
    status 128 + the signal, says "lipdub: stopped by <SIGNAL>" with no traceback, and leaves
    none of the children it had then; returns what it printed (stderr, else stdout)."""
    import signal
    import time

    deadline = time.time() + wait
    while not reached():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    before = children(proc.pid)
    sent = time.time()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    said = err if err is not None else out
    assert time.time() - sent < 5, f"took {time.time() - sent:.1f} s to stop: {said}"
    assert proc.returncode == 128 + signum, said
    assert f"lipdub: stopped by {signal.Signals(signum).name}" in said, said
    assert "Traceback" not in said, said
    stopped = time.time() + 5
    while any(running(c) for c in before) and time.time() < stopped:
        time.sleep(0.1)
    assert not [c for c in before if running(c)], said
    return said
