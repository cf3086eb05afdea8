"""lipdub's stages: plain typed functions, with Prefect only at the edge (flows.py)."""

from lipdub.pipeline import prefect_env  # noqa: F401  (Prefect telemetry off before anything imports Prefect)
