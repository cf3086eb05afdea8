"""Typed views of the Prefect REST API objects the plugins use, and the errors they raise.

Plain dataclasses (no pydantic: this runs in Blender's and Resolve's own Pythons). Responses are
read with :meth:`ApiObject.from_api`, which keeps the fields named here and ignores every other
key, so a newer Prefect server that adds fields does not break an older plugin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Prefect state types (prefect.client.schemas.objects.StateType).
SCHEDULED, PENDING, RUNNING = "SCHEDULED", "PENDING", "RUNNING"
COMPLETED, FAILED, CRASHED = "COMPLETED", "FAILED", "CRASHED"
CANCELLING, CANCELLED, PAUSED = "CANCELLING", "CANCELLED", "PAUSED"
FINAL_STATES = frozenset({COMPLETED, FAILED, CRASHED, CANCELLED})


# ------------------------------------------------------------------------------------ errors
class PluginError(Exception):
    """Base of every error the plugins show to a user: the message says what to do."""


class ServerUnreachable(PluginError):
    """No answer from the server (refused, DNS, timeout, not a Prefect API)."""


class AuthenticationFailed(PluginError):
    """The server refused the request's credentials (HTTP 401/403)."""


class NotFound(PluginError):
    """An object the request names does not exist on the server (HTTP 404)."""


class DeploymentNotFound(NotFound):
    """The lipdub deployment is not registered on the server."""


class ApiError(PluginError):
    """Any other refusal from the server; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class JobError(PluginError):
    """The job the plugin was asked to send is incomplete; ``problems`` lists every issue."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class RunFailed(PluginError):
    """The flow run ended FAILED or CRASHED; the message carries the server's reason."""

    def __init__(self, message: str, state: State | None = None):
        super().__init__(message)
        self.state = state


class RunCancelled(PluginError):
    """The flow run was cancelled (by this plugin, another user or the server)."""


# ------------------------------------------------------------------------------- responses
class ApiObject:
    """Mixin: build a dataclass from an API dict, ignoring unknown keys."""

    @classmethod
    def from_api(cls, data: dict[str, Any] | None):
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ServerUnreachable(
                f"unexpected answer from the server for a {cls.__name__}: {str(data)[:200]!r} "
                "(is the server URL the Prefect API, ending in /api?)")
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kwargs[f.name] = cls._convert(f.name, data[f.name])
        return cls(**kwargs)

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class State(ApiObject):
    """A flow run state: ``type`` is one of the constants above, ``name`` is its display name
    (``Late`` and ``AwaitingRetry`` are SCHEDULED types, for instance)."""

    type: str = ""
    name: str = ""
    message: str | None = None
    timestamp: str | None = None

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_STATES

    @property
    def is_completed(self) -> bool:
        return self.type == COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.type in (FAILED, CRASHED)

    @property
    def is_cancelled(self) -> bool:
        return self.type == CANCELLED


@dataclass(frozen=True)
class Deployment(ApiObject):
    id: str = ""
    name: str = ""
    flow_id: str = ""
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    paused: bool = False
    status: str | None = None  # READY / NOT_READY (no worker polled lately)


@dataclass(frozen=True)
class WorkPool(ApiObject):
    name: str = ""
    type: str = ""
    status: str | None = None  # READY / NOT_READY / PAUSED
    is_paused: bool = False


@dataclass(frozen=True)
class FlowRun(ApiObject):
    id: str = ""
    name: str = ""
    deployment_id: str | None = None
    flow_id: str | None = None
    state: State | None = None
    parameters: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    created: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    total_run_time: float = 0.0

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        if name == "state":
            return State.from_api(value)
        if name in ("parameters",) and value is None:
            return {}
        if name == "tags":
            return list(value or [])
        return value

    @property
    def state_type(self) -> str:
        return self.state.type if self.state else ""

    @property
    def state_name(self) -> str:
        return self.state.name if self.state else ""


@dataclass(frozen=True)
class Artifact(ApiObject):
    """``data`` is a number (0-100) for progress artifacts, text for markdown, a JSON string for
    tables (as Prefect stores them)."""

    id: str = ""
    key: str | None = None
    type: str | None = None
    data: Any = None
    description: str | None = None
    flow_run_id: str | None = None
    created: str | None = None
    updated: str | None = None


# -------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class FlowRunCreate:
    """Body of ``POST /deployments/{id}/create_flow_run``."""

    parameters: dict
    name: str | None = None
    tags: tuple[str, ...] = ()
    idempotency_key: str | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"parameters": self.parameters, "tags": list(self.tags)}
        if self.name:
            body["name"] = self.name
        if self.idempotency_key:
            body["idempotency_key"] = self.idempotency_key
        return body


@dataclass(frozen=True)
class StateCreate:
    """Body of ``POST /flow_runs/{id}/set_state``."""

    type: str
    name: str | None = None
    message: str | None = None
    force: bool = False

    def to_api(self) -> dict[str, Any]:
        state: dict[str, Any] = {"type": self.type}
        if self.name:
            state["name"] = self.name
        if self.message:
            state["message"] = self.message
        return {"state": state, "force": self.force}


@dataclass(frozen=True)
class SetStateResult(ApiObject):
    """Answer of ``set_state``: ``status`` ACCEPT / REJECT / ABORT / WAIT; ``state`` the run's
    state afterwards (a cancel of a scheduled run is answered with CANCELLED directly)."""

    status: str = ""
    state: State | None = None
    details: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        if name == "state":
            return State.from_api(value)
        if name == "details":
            return dict(value or {})
        return value

    @property
    def reason(self) -> str:
        return str(self.details.get("reason") or "")
