"""The film flow's work folder: every cached artefact is named by the hash of all it depends on.

A name says what made the file (the film is the folder; the cut list, the detector's checksum,
a shot's frames, a stem's content, every setting and the code's version of the format are in
the key), so an edited cut list or another detector can never bring back a stale result, and
two machines sharing the folder compute the same name for the same work. Files are written under
a name of their own (process id and random suffix) and renamed into place when complete: two
writers of one artefact never clobber each other, and a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# The atomic writer lives with the temporary names it makes; re-exported for the cache's users.

KEY_LENGTH = 20  # hex digits of sha256 in a name: collisions are out of reach


def cache_key(*parts) -> str:
    """A short hex key of ``parts`` (anything JSON can write; paths and numbers as text)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


_file_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's content (remembered per path, size and modification time)."""
    from lipdub.models.weights import sha256_file

    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        _file_hashes[key] = sha256_file(path)
    return _file_hashes[key]
