"""A small client for the Prefect server's REST API (stdlib ``urllib`` only).

Just what the editor plugins need: find the lipdub deployment, create a flow run of it with a
job, read the run's state and artifacts, cancel it. Every call has a timeout; every failure is
one of the :mod:`.types` errors with a message an editor can act on.

Authentication: a key containing ``:`` is a self-hosted server's basic-auth string
(``PREFECT_SERVER_API_AUTH_STRING``, sent as ``Authorization: Basic``), anything else is an API
key (Prefect Cloud style, ``Authorization: Bearer``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from . import contract
from .types import (
    CANCELLING,
    ApiError,
    Artifact,
    AuthenticationFailed,
    Deployment,
    DeploymentNotFound,
    FlowRun,
    FlowRunCreate,
    NotFound,
    ServerUnreachable,
    SetStateResult,
    StateCreate,
    WorkPool,
)

DEFAULT_URL = "http://127.0.0.1:4200/api"
DEFAULT_DEPLOYMENT = contract.FLOW_DEPLOYMENT
USER_AGENT = "lipdub-plugin/0.1"
# Answers worth another try, as Prefect's own client does (a busy SQLite server answers 503).
RETRY_CODES = frozenset({408, 429, 502, 503, 504})


def normalise_api_url(url: str) -> str:
    """``http://host:4200`` and ``http://host:4200/api/`` both mean ``http://host:4200/api``."""
    url = (url or "").strip().rstrip("/")
    if not url:
        raise ServerUnreachable("no Prefect server URL is set (e.g. http://render1:4200/api)")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServerUnreachable(f"{url!r} is not an http(s) URL (e.g. http://render1:4200/api)")
    if "/api" not in parts.path:
        url += "/api"
    return url


def split_deployment_name(name: str) -> tuple[str, str]:
    """``"dub_film/lipdub"`` -> ``("dub_film", "lipdub")``; a bare name means flow dub_film."""
    name = (name or "").strip()
    flow, _, deployment = name.rpartition("/")
    if not deployment:
        raise DeploymentNotFound("no deployment name is set (e.g. dub_film/lipdub)")
    return flow or contract.FLOW, deployment


def api_key_from_env() -> str:
    """The credentials an editor finds in its environment: ``LIPDUB_API_KEY``, else Prefect's
    own ``PREFECT_API_KEY`` (a key) or ``PREFECT_API_AUTH_STRING`` (``user:password`` of a
    server started with ``PREFECT_SERVER_API_AUTH_STRING``), else none."""
    for name in ("LIPDUB_API_KEY", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
        if os.environ.get(name):
            return os.environ[name]
    return ""


class PrefectClient:
    """Synchronous REST client; cheap to create, holds no connection."""

    def __init__(self, api_url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout: float = 10.0, retries: int = 4, backoff: float = 0.5):
        self.api_url = normalise_api_url(api_url)
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)

    # ----------------------------------------------------------------------------- plumbing
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.api_key:
            if ":" in self.api_key:
                token = base64.b64encode(self.api_key.encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Any:
        """One API call; returns the decoded JSON (None for an empty answer).

        Answers in :data:`RETRY_CODES` are retried ``retries`` times with a growing pause
        (``Retry-After`` honoured up to 10 s); every request the plugins send may be repeated
        safely (reads, filters, a cancel, a flow run creation with its idempotency key).
        """
        url = self.api_url + path
        data = None
        headers = self._headers()
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                return self._send(req, timeout or self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_CODES or attempt == self.retries:
                    raise self._http_error(exc, method, path) from None
                pause = self.backoff * 2 ** attempt
                try:
                    pause = min(max(pause, float(exc.headers.get("Retry-After") or 0)), 10.0)
                except ValueError:
                    pass
                exc.close()
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, req: urllib.request.Request, timeout: float) -> Any:
        url = req.full_url
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError:
            raise
        # socket.timeout is not TimeoutError before Python 3.10 (Resolve may bundle older ones)
        except (urllib.error.URLError, socket.timeout, TimeoutError,  # noqa: UP041
                ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)):  # noqa: UP041
                reason = f"no answer within {timeout:g} s"
            raise ServerUnreachable(
                f"cannot reach the Prefect server at {self.api_url} ({reason}). Check the server "
                "URL in the settings and that `prefect server start` is running there."
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServerUnreachable(
                f"{url} did not answer like a Prefect API (not JSON); the server URL should "
                "end in /api, e.g. http://render1:4200/api") from None

    def _http_error(self, exc: urllib.error.HTTPError, method: str, path: str) -> Exception:
        try:
            detail = json.loads(exc.read() or b"null")
        except ValueError:
            detail = None
        text = (detail.get("detail") or detail.get("exception_message")
                if isinstance(detail, dict) else detail)
        if exc.code in (401, 403):
            return AuthenticationFailed(
                f"the Prefect server at {self.api_url} refused the request (HTTP {exc.code}): "
                "check the API key in the settings")
        if exc.code == 404:
            return NotFound(f"not found on the server: {method} {path}" +
                            (f" ({text})" if text else ""))
        return ApiError(f"the Prefect server refused {method} {path} (HTTP {exc.code})"
                        + (f": {text}" if text else ""), status=exc.code, detail=detail)

    # --------------------------------------------------------------------------------- calls
    def health(self) -> bool:
        """True when the server answers its health check (raises ServerUnreachable if not)."""
        return bool(self.request("GET", "/health"))

    def read_deployment(self, name: str = DEFAULT_DEPLOYMENT) -> Deployment:
        """The deployment ``flow/deployment``; DeploymentNotFound tells how to create it."""
        flow, deployment = split_deployment_name(name)
        path = "/deployments/name/{}/{}".format(urllib.parse.quote(flow, safe=""),
                                                urllib.parse.quote(deployment, safe=""))
        try:
            return Deployment.from_api(self.request("GET", path))
        except NotFound:
            raise DeploymentNotFound(
                f"deployment {flow}/{deployment} not found on {self.api_url}: start it on a "
                f"render machine with `lipdub serve --name {deployment}` (or fix the deployment "
                "name in the settings)") from None

    def read_work_pool(self, name: str) -> WorkPool | None:
        try:
            return WorkPool.from_api(
                self.request("GET", "/work_pools/" + urllib.parse.quote(name, safe="")))
        except NotFound:
            return None

    def create_flow_run(self, deployment_id: str, parameters: dict, *, name: str | None = None,
                        tags: tuple[str, ...] = (), idempotency_key: str | None = None
                        ) -> FlowRun:
        """Schedule a run of the deployment now. The idempotency key (one is made if not given)
        makes a retried request return the same run instead of a second one."""
        body = FlowRunCreate(parameters, name=name, tags=tuple(tags),
                             idempotency_key=idempotency_key or uuid.uuid4().hex).to_api()
        path = f"/deployments/{deployment_id}/create_flow_run"
        try:
            answer = self.request("POST", path, body)
        except ServerUnreachable:
            answer = self.request("POST", path, body)  # once more: same key, same run
        except NotFound:
            raise DeploymentNotFound(f"deployment {deployment_id} was deleted from the server "
                                     "(run `lipdub serve` again)") from None
        return FlowRun.from_api(answer)

    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        try:
            return FlowRun.from_api(self.request("GET", f"/flow_runs/{flow_run_id}"))
        except NotFound:
            raise NotFound(f"flow run {flow_run_id} is not on the server any more "
                           "(deleted, or a different server URL)") from None

    def read_artifacts(self, flow_run_id: str, keys: list[str] | None = None,
                       limit: int = 50) -> list[Artifact]:
        """The run's artifacts (newest first), optionally only those with these keys."""
        flt: dict[str, Any] = {"flow_run_id": {"any_": [flow_run_id]}}
        if keys:
            flt["key"] = {"any_": list(keys)}
        answer = self.request("POST", "/artifacts/filter",
                              {"artifacts": flt, "sort": "CREATED_DESC", "limit": limit})
        return [Artifact.from_api(a) for a in answer or []]

    def set_flow_run_state(self, flow_run_id: str, state: StateCreate) -> SetStateResult:
        return SetStateResult.from_api(
            self.request("POST", f"/flow_runs/{flow_run_id}/set_state", state.to_api()))

    def cancel_flow_run(self, flow_run_id: str) -> SetStateResult:
        """Ask for cancellation: a running run goes CANCELLING (its worker stops it and marks
        it CANCELLED), one not started yet goes CANCELLED at once."""
        return self.set_flow_run_state(
            flow_run_id, StateCreate(CANCELLING, name="Cancelling",
                                     message="cancelled from the editor"))
