"""Shared test fixtures: where ../shared lives, and skips when it does not.

A user's fresh clone has no ``../shared`` folder (media, real weights, parity fixtures are never
committed), so every fixture that needs it skips cleanly instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("LIPDUB_SHARED_DIR", REPO_ROOT.parent / "shared"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (../shared is absent in a user's clone)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED_DIR, "shared test data")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return _require(SHARED_DIR / "media", "shared media")


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return _require(SHARED_DIR / "weights", "shared face-detector weights")


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """Parity fixtures; ``LIPDUB_PARITY_DIR`` points the tests at another set of this layout."""
    override = os.environ.get("LIPDUB_PARITY_DIR")
    path = Path(override) if override else SHARED_DIR / "fixtures" / "parity"
    return _require(path, "parity fixtures")
