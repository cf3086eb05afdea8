"""Temporary names for files being written, and the sweep of those a killed run left behind.

Every output and cached file is written under a hidden sibling name and renamed when complete,
so a reader never sees half a file. A process killed outright (SIGKILL, out of memory, the
machine's power) cannot remove its own: the name says which machine and process wrote it, so
the next run removes those whose writer is gone, and leaves alone a live writer's and those of
another machine sharing the folder (it cannot tell whether that one's writer lives).

:func:`writing` is the one way to write a file so (:func:`write_text`, :func:`write_bytes` and
:func:`write_image` for the common cases; :func:`commit` for a writer that opens and closes on
its own, such as the video encoder). ``durable=True`` also flushes the file and its folder to
the disk, so a power cut right after the rename cannot leave an empty file under the final name;
it is for what cannot be made again cheaply: final deliverables (the dubbed video, its timeline),
training checkpoints and downloaded weights. Caches in the work folder, reports and logs that a
rerun writes again are only atomic (fsync costs a disk flush each).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from lipdub.pipeline.errors import LipdubError

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


def _fsync_path(path: Path) -> None:
    """Flush ``path`` (a file, or a folder: its entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system can."""
    if os.name == "nt":  # Windows cannot open a folder; NTFS journals the rename itself
        return
    try:
        _fsync_path(folder)
    except OSError as exc:
        # Some network and FUSE filesystems refuse fsync on a folder; the file itself is on
        # the disk by then and the rename is done, so there is nothing better to do.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def commit(tmp: Path, path: Path, *, durable: bool = False) -> None:
    """Rename the complete file ``tmp`` (a :func:`partial_name`) to ``path``, atomically.

    With ``durable``, ``tmp``'s content reaches the disk before the rename (else a power cut
    may leave the new name pointing at an empty file) and the folder's entry after it (else the
    rename itself may be lost). The writer must have closed ``tmp``.
    """
    if durable:
        _fsync_path(Path(tmp))
    os.replace(tmp, path)
    if durable:
        _fsync_folder(Path(path).parent)


@contextlib.contextmanager
def writing(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` to write; on success it is renamed to ``path``.

    The parent folder is made. The temporary name (:func:`partial_name`) keeps ``path``'s
    suffix (``np.savez`` adds ``.npz`` otherwise; a muxer and OpenCV choose the format by it)
    and is hidden. On any error, the interruption by a signal included, it is removed and an
    existing ``path`` is left as it was; one left by a killed process goes with
    :func:`remove_stale_partials`. ``durable``: see :func:`commit` and the module docstring.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    try:
        yield tmp
        commit(tmp, path, durable=durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` through :func:`writing`; returns ``path``."""
    with writing(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str, *, durable: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`writing`; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"), durable=durable)


def write_image(path: Path, image, params: Sequence[int] = (), *,
                durable: bool = False) -> Path:
    """Write a picture with OpenCV (the format by ``path``'s suffix) through :func:`writing`.

    ``cv2.imwrite`` says False rather than raising when it cannot write; that is an error here,
    so that a missing picture is never renamed into place or passed over in silence.
    """
    import cv2  # here: most users of this module write no pictures

    with writing(path, durable=durable) as tmp:
        if not cv2.imwrite(str(tmp), image, list(params)):
            raise LipdubError(f"{path}: OpenCV could not write the picture; check that the "
                              "folder is writable and the disk has room")
    return Path(path)
