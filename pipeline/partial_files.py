"""Temporary names for files being written, and the sweep of those a killed run left behind.

Every output and cached file is written under a hidden sibling name and renamed when complete,
so a reader never sees half a file. A process killed outright (SIGKILL, out of memory, the
machine's power) cannot remove its own: the name says which machine and process wrote it, so
the next run removes those whose writer is gone, and leaves alone a live writer's and those of
another machine sharing the folder (it cannot tell whether that one's writer lives).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
from pathlib import Path

log = logging.getLogger(__name__)

_MARK = ".partial-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())


def partial_name(path: Path) -> Path:
    """A hidden sibling of ``path`` with the same suffix (a muxer or ``np.savez`` chooses by
    it), unique to this machine, process and call."""
    path = Path(path)
    return path.with_name(f".{path.stem}{_MARK}{_host()}-{os.getpid()}-{secrets.token_hex(3)}"
                          f"{path.suffix}")


def _writer(name: str) -> tuple[str, int] | None:
    """(host, pid) of a partial file's name, or None when it is not one of ours."""
    match = re.fullmatch(rf"\..*{re.escape(_MARK)}([A-Za-z0-9_.]+)-(\d+)-[0-9a-f]{{6}}\.?[^.]*",
                         name)
    return (match.group(1), int(match.group(2))) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Remove the partial files in ``folder`` (and below, when ``recursive``) that a process
    of this machine left when it was killed; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host, removed = _host(), []
    for path in folder.rglob(f".*{_MARK}*") if recursive else folder.glob(f".*{_MARK}*"):
        writer = _writer(path.name)
        if writer and writer[0] == host and writer[1] != os.getpid() and not _alive(writer[1]):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning("removed %d partial file(s) left by a killed run in %s: %s", len(removed),
                    folder, ", ".join(p.name for p in removed[:3]))
    return removed
