"""Finding and loading the RetinaFace face detector with the anchors its checkpoint needs."""

from __future__ import annotations

import logging
from pathlib import Path

from lipdub.models.face_detector import FaceDetector
from lipdub.models.weights import read_state_dict, sha256_file
from lipdub.pipeline.errors import RegistryError
from lipdub.pipeline.weights_registry import (
    WeightsEntry,
    get_entry,
    list_entries,
    resolve_weights_file,
)

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "retinaface_mobilenet0.25"
# The default checkpoint scores real faces >= 0.99 and no false positive above 0.6 on our test
# photos; 0.6 keeps small, soft faces while dropping hands and picture frames.
DEFAULT_SCORE_THRESHOLD = 0.6


def _entry_for_file(path: Path) -> WeightsEntry | None:
    """The registry entry of a detector file: by checksum first, then by file name."""
    detectors = [e for e in list_entries() if e.family == "retinaface"]
    digest = sha256_file(path)
    for entry in detectors:
        if entry.sha256 == digest:
            return entry
    for entry in detectors:
        if path.name == entry.file or path.name in entry.aliases:
            return entry
    return None


def resolve_detector(name_or_path: str | Path | None) -> tuple[Path, WeightsEntry]:
    """The detector file and its registry entry (which holds the anchors).

    Arguments:
        name_or_path: a registry name, a file, or None for the default detector.

    Raises:
        RegistryError: the named file is not in the cache, or a file is unknown to the registry.
    """
    name_or_path = name_or_path or DEFAULT_DETECTOR
    path = Path(name_or_path).expanduser()
    if path.is_file():
        entry = _entry_for_file(path)
        if entry is None:
            default = get_entry(DEFAULT_DETECTOR)
            log.warning("%s is not in the weights registry; assuming the anchors of %s (%s)",
                        path, default.name, default.anchors)
            entry = default
        return path, entry
    entry = get_entry(str(name_or_path))
    if entry.family != "retinaface":
        raise RegistryError(f"{entry.name} is a {entry.family} checkpoint, not a face detector")
    return resolve_weights_file(entry.name), entry


def load_face_detector(name_or_path: str | Path | None = None, *, device="cpu",
                       **kwargs) -> FaceDetector:
    """A ready :class:`FaceDetector` (keyword arguments go to its constructor)."""
    path, entry = resolve_detector(name_or_path)
    anchors = [list(a) for a in entry.anchors]
    kwargs.setdefault("score_threshold", DEFAULT_SCORE_THRESHOLD)
    return FaceDetector.from_state_dict(read_state_dict(path), anchors, device=device, **kwargs)
