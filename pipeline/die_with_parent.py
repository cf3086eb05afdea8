"""Children that cannot outlive ``lipdub``: the kernel kills them when their parent dies."""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent: int) -> None:
    """Called in a child (after fork, or before exec): the kernel sends it SIGKILL when
    ``parent`` dies, even by SIGKILL (Linux; elsewhere the caller's own clean-up must do)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # not glibc: the caller's clean-up still ends us
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
