"""Prefect settings lipdub needs everywhere it starts Prefect; import before ``prefect``.

Our machines have no internet: telemetry is switched off. A user's own settings win.
"""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Ephemeral runs (no server configured) start a temporary server; give it time on slow disks.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
