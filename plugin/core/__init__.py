"""Editor-side client of the lipdub Prefect deployment: stdlib only (runs in Blender's and
Resolve's own Pythons), never imports torch or the pipeline."""

from .client import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_URL,
    PrefectClient,
    api_key_from_env,
    normalise_api_url,
)
from .jobs import DubRequest, DubStatus, DubTask, PathMap, default_output_path
from .types import (
    ApiError,
    Artifact,
    AuthenticationFailed,
    Deployment,
    DeploymentNotFound,
    FlowRun,
    JobError,
    NotFound,
    PluginError,
    RunCancelled,
    RunFailed,
    ServerUnreachable,
    State,
    WorkPool,
)

__all__ = [
    "DEFAULT_DEPLOYMENT", "DEFAULT_URL", "ApiError", "Artifact", "AuthenticationFailed",
    "Deployment", "DeploymentNotFound", "DubRequest", "DubStatus", "DubTask", "FlowRun",
    "JobError", "NotFound", "PathMap", "PluginError", "PrefectClient", "RunCancelled",
    "RunFailed", "ServerUnreachable", "State", "WorkPool", "api_key_from_env",
    "default_output_path", "normalise_api_url",
]
