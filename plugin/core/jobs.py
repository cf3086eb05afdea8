"""Dub jobs as the editor plugins send them, and a background task that follows one run.

:class:`DubRequest` is what an editor knows (a clip's file, the stems the user picked, where the
result goes, which checkpoints) and turns into the ``job`` parameter of the ``dub_film``
deployment (the pipeline's JobSpec layout, absolute paths as the render machines see them).

:class:`DubTask` sends it and follows the flow run in a daemon thread: the editor's UI thread
only ever reads :meth:`DubTask.snapshot`, so no network call can freeze it. How the result comes
back: Prefect 3 does not persist flow results by default, so the plugin does not read the flow's
return value. It chose the output path itself; when the run is COMPLETED it reads the
``lipdub-result`` artifact (shown to the user), the run summary the flow writes beside the
output (``<output>.json``, when that folder is visible from the editor) and checks that the
output file is there.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from . import contract
from .client import PrefectClient
from .types import (
    CANCELLING,
    COMPLETED,
    PENDING,
    RUNNING,
    SCHEDULED,
    ApiError,
    JobError,
    NotFound,
    PluginError,
    RunCancelled,
    RunFailed,
    ServerUnreachable,
)

OUTPUT_EXTENSIONS = (".mp4", ".mov", ".mkv", ".m4v")
PROGRESS_KEY = contract.PROGRESS_KEY
RESULT_KEY = contract.RESULT_KEY
POOL_CHECK_SECONDS = 10.0  # how often a queued run's work pool is asked about its machines
_NAME_RE = re.compile(contract.CHARACTER_NAME)


def _is_abs(path: str) -> bool:
    return os.path.isabs(path) or ntpath.isabs(path)


class PathMap:
    """Editor paths -> render-machine paths, by prefix (``/Volumes/reels=/mnt/reels``).

    The first matching prefix wins; a Windows editor path mapped onto a POSIX prefix gets
    forward slashes. With no entries, paths are sent unchanged (same mounts everywhere).
    """

    def __init__(self, pairs: list[tuple[str, str]] | None = None):
        self.pairs = [(a, b) for a, b in (pairs or []) if a and b]

    @classmethod
    def parse(cls, text: str) -> PathMap:
        """``"local=server; local2=server2"`` (``;`` or newlines between pairs)."""
        pairs = []
        for chunk in re.split(r"[;\n]", text or ""):
            if "=" in chunk:
                local, _, server = chunk.partition("=")
                pairs.append((local.strip(), server.strip()))
        return cls(pairs)

    @staticmethod
    def _under(path: str, prefix: str) -> bool:
        p, q = path.replace("\\", "/"), prefix.replace("\\", "/").rstrip("/")
        return p == q or p.startswith(q + "/")

    def to_server(self, path: str) -> str:
        for local, server in self.pairs:
            if self._under(path, local):
                rest = path.replace("\\", "/")[len(local.replace("\\", "/").rstrip("/")):]
                out = server.rstrip("/\\") + rest
                return out if not server.startswith("/") else out.replace("\\", "/")
        return path

    def to_local(self, path: str) -> str:
        for local, server in self.pairs:
            if self._under(path, server):
                rest = path[len(server.rstrip("/\\")):]
                sep = "\\" if "\\" in local else "/"
                return local.rstrip("/\\") + rest.replace("/", sep)
        return path


def default_output_path(film: str, characters: list[str], folder: str | None = None,
                        extension: str = ".mp4", when: float | None = None) -> str:
    """``<folder or film's folder/lipdub>/<film>_dub_<characters>_<YYYYmmdd-HHMMSS>.mp4``,
    never an existing file."""
    folder = folder or os.path.join(os.path.dirname(film), "lipdub")
    stem = os.path.splitext(os.path.basename(film))[0]
    chars = "+".join(sorted(characters))[:60] or "dub"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when or time.time()))
    base = os.path.join(folder, f"{stem}_dub_{chars}_{stamp}")
    path, n = base + extension, 2
    while os.path.exists(path):
        path, n = f"{base}-{n}{extension}", n + 1
    return path


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".pth", ".pt", ".safetensors"))


@dataclass
class DubRequest:
    """One clip to dub, with paths as the editor sees them.

    ``frame_range`` (first, last source frame the edit uses) is sent along as a tag of the flow
    run for the studio's records: the pipeline's job spec dubs the whole source file, and the
    plugins place the result with the original clip's trims, so the same frames are shown.
    """

    film: str
    stems: dict[str, str]
    output: str
    generator: str
    detector: str | None = None
    codec: str | None = None
    work_dir: str | None = None
    consent: str | None = None
    frame_range: tuple[int, int] | None = None
    overwrite: bool = False
    settings: dict[str, Any] = field(default_factory=dict)  # the job's ``settings`` section
    overrides: list[dict[str, Any]] = field(default_factory=list)  # routing overrides

    def problems(self, check_files: bool = True) -> list[str]:
        """Everything wrong with the request, all at once (empty when it can be sent)."""
        out: list[str] = []
        if not self.film:
            out.append("no source file")
        elif not _is_abs(self.film):
            out.append(f"source file {self.film!r} is not an absolute path")
        elif check_files and not os.path.isfile(self.film):
            out.append(f"source file {self.film} does not exist")
        if not self.stems:
            out.append("no stem chosen: add at least one character with its dialogue stem")
        for name, path in self.stems.items():
            if not name or not _NAME_RE.fullmatch(name):
                out.append(f"character name {name!r}: {contract.CHARACTER_NAME_RULE}")
            if not path:
                out.append(f"stem of {name!r}: no file chosen")
            elif not _is_abs(path):
                out.append(f"stem of {name!r}: {path!r} is not an absolute path")
            elif check_files and not os.path.isfile(path):
                out.append(f"stem of {name!r}: {path} does not exist")
        if not self.output or not _is_abs(self.output):
            out.append(f"output {self.output!r} is not an absolute path")
        elif os.path.splitext(self.output)[1].lower() not in OUTPUT_EXTENSIONS:
            out.append(f"output {self.output}: use .mp4, .mov or .mkv")
        elif check_files and os.path.exists(self.output) and not self.overwrite:
            out.append(f"output {self.output} already exists")
        if not (self.generator or "").strip():
            out.append("no generator checkpoint set (a registry name such as wav2lip_gan, "
                       "or a path on the render machines)")
        if self.work_dir and not _is_abs(self.work_dir):
            out.append(f"cache folder {self.work_dir!r} is not an absolute path")
        return out

    def check(self, check_files: bool = True) -> None:
        problems = self.problems(check_files)
        if problems:
            raise JobError(problems)

    def to_job(self, path_map: PathMap | None = None) -> dict[str, Any]:
        """The ``job`` parameter of ``dub_film`` (paths mapped for the render machines)."""
        pm = path_map or PathMap()
        ckpt = {"generator": pm.to_server(self.generator) if _looks_like_path(self.generator)
                else self.generator}
        if self.detector:
            ckpt["detector"] = (pm.to_server(self.detector) if _looks_like_path(self.detector)
                                else self.detector)
        output: dict[str, Any] = {"path": pm.to_server(self.output)}
        if self.codec:
            output["codec"] = self.codec
        if self.overwrite:
            output["overwrite"] = True
        job: dict[str, Any] = {
            "film": pm.to_server(self.film),
            "stems": {name: pm.to_server(path) for name, path in self.stems.items()},
            "output": output,
            "checkpoints": ckpt,
        }
        if self.work_dir:
            job["work_dir"] = pm.to_server(self.work_dir)
        if self.consent:
            job["consent"] = self.consent
        if self.settings:
            job["settings"] = dict(self.settings)
        if self.overrides:
            job["overrides"] = [dict(o) for o in self.overrides]
        return job


@dataclass(frozen=True)
class DubStatus:
    """What the editor shows. ``phase``: submitting, waiting, running, cancelling, completed,
    failed, cancelled or error (the last four are final)."""

    phase: str = "submitting"
    message: str = ""
    state_name: str = ""
    percent: float | None = None
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    output: str | None = None
    summary: dict | None = None
    result_text: str | None = None
    started: float = 0.0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("completed", "failed", "cancelled", "error")

    @property
    def ok(self) -> bool:
        return self.phase == "completed"

    def raise_for_status(self) -> DubStatus:
        """Self when completed; else RunFailed, RunCancelled or PluginError with the message
        (for scripts that want exceptions rather than a phase to look at)."""
        if self.phase == "failed":
            raise RunFailed(self.message)
        if self.phase == "cancelled":
            raise RunCancelled(self.message)
        if self.phase != "completed":
            raise PluginError(self.message or f"the dub is not finished ({self.phase})")
        return self

    def line(self) -> str:
        """One line for a panel or a console."""
        pct = f" {self.percent:.0f}%" if self.percent is not None and not self.finished else ""
        label = self.state_name or self.phase
        return f"{label}{pct}: {self.message}" if self.message else f"{label}{pct}"


class DubTask:
    """Send one :class:`DubRequest` and follow its flow run in a daemon thread.

    Thread-safe: :meth:`snapshot`, :meth:`cancel` and :meth:`stop_following` may be called
    from any thread (an editor's UI thread reads snapshots; the network is only in the task's).
    """

    def __init__(self, client: PrefectClient, deployment: str, request: DubRequest, *,
                 path_map: PathMap | None = None, poll_interval: float = 1.0,
                 origin: str = "plugin", lost_contact_after: float = 120.0):
        self.client = client
        self.deployment = deployment
        self.request = request
        self.path_map = path_map or PathMap()
        self.poll_interval = poll_interval
        self.origin = origin
        self.lost_contact_after = lost_contact_after
        self.id = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._cancel = threading.Event()
        self._stop = threading.Event()
        self._status = DubStatus(message="sending the job", output=request.output,
                                 started=time.time())
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------- public side
    def start(self) -> DubTask:
        self._thread = threading.Thread(target=self.run, name=f"lipdub-{self.id}", daemon=True)
        self._thread.start()
        return self

    def snapshot(self) -> DubStatus:
        with self._lock:
            return self._status

    def cancel(self) -> None:
        """Ask for cancellation (sent to the server from the task's thread)."""
        self._cancel.set()
        self._wake.set()

    def stop_following(self) -> None:
        """Stop polling without cancelling (the run goes on on the server); for shutdown."""
        self._stop.set()
        self._wake.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> DubStatus:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.snapshot()

    @property
    def done(self) -> bool:
        return self.snapshot().finished

    # --------------------------------------------------------------------------- the thread
    def _set(self, **changes) -> None:
        with self._lock:
            if changes.get("phase") in ("completed", "failed", "cancelled", "error"):
                changes.setdefault("finished_at", time.time())
            self._status = replace(self._status, **changes)

    def run(self) -> DubStatus:
        """Send and follow the run to its end (blocking; :meth:`start` runs it in a thread)."""
        try:
            self._run()
        except PluginError as exc:
            self._set(phase="error", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user rather than lost in a thread
            self._set(phase="error", message=f"unexpected error: {exc!r}")
        return self.snapshot()

    def _run(self) -> None:
        client = self.client
        req = self.request
        req.check()
        folder = os.path.dirname(req.output)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise JobError([f"cannot create the output folder {folder}: "
                            f"{exc.strerror or exc}"]) from None
        deployment = client.read_deployment(self.deployment)
        if self._cancel.is_set():
            self._set(phase="cancelled", message="cancelled before it was sent")
            return
        tags = ["lipdub-plugin", self.origin]
        if req.frame_range:
            tags.append("frames:{}-{}".format(*req.frame_range))
        film = os.path.splitext(os.path.basename(req.film))[0]
        run = client.create_flow_run(deployment.id, {"job": req.to_job(self.path_map)},
                                     name=f"{self.origin}-{film}-{self.id[:6]}",
                                     tags=tuple(tags))
        self._set(flow_run_id=run.id, flow_run_name=run.name, phase="waiting",
                  state_name=run.state_name, message=f"flow run {run.name} created")
        self._follow(client, run.id, deployment.work_pool_name)

    def _follow(self, client: PrefectClient, run_id: str, pool: str | None) -> None:
        cancel_sent = False
        last_contact = time.monotonic()
        last_pool_check = float("-inf")
        pool_note: str | None = None  # the last check's word on the render machines
        while not self._stop.is_set():
            try:
                if self._cancel.is_set() and not cancel_sent:
                    answer = client.cancel_flow_run(run_id)
                    cancel_sent = True
                    if answer.status not in ("ACCEPT", "") and not (
                            answer.state and answer.state.is_final):
                        self._set(message=f"the server did not cancel: {answer.reason}")
                run = client.read_flow_run(run_id)
                last_contact = time.monotonic()
            except (ServerUnreachable, ApiError) as exc:
                if isinstance(exc, ApiError) and (exc.status or 0) < 500:
                    raise
                if time.monotonic() - last_contact > self.lost_contact_after:
                    raise ServerUnreachable(
                        f"lost contact with the server; flow run {run_id} may still finish "
                        f"there ({exc})") from None
                self._set(message=f"server not answering, retrying ({exc})")
                self._wake.wait(self.poll_interval)
                self._wake.clear()
                continue
            state = run.state
            if state is None:
                raise PluginError(f"flow run {run_id} has no state on the server")
            if state.is_final:
                self._finish(client, run)
                return
            changes: dict[str, Any] = {"state_name": state.name}
            if state.type == RUNNING:
                percent, stage = self._progress(client, run_id)
                changes.update(phase="running", percent=percent,
                               message=f"dubbing: {stage}" if stage
                               else "dubbing on the render machines")
            elif state.type == CANCELLING:
                changes.update(phase="cancelling", message="stopping the run")
            elif state.type in (SCHEDULED, PENDING):
                if (pool and state.type == SCHEDULED
                        and time.monotonic() - last_pool_check > POOL_CHECK_SECONDS):
                    last_pool_check = time.monotonic()
                    pool_note = self._pool_note(client, pool)
                # The pool is asked every POOL_CHECK_SECONDS only: its answer holds until the
                # next check (said between checks, "waiting" made the hint blink on and off).
                note = pool_note if state.type == SCHEDULED else None
                changes.update(phase="waiting", message=note or "waiting for a render machine")
            else:
                changes.update(message=state.message or "")
            self._set(**changes)
            self._wake.wait(self.poll_interval)
            self._wake.clear()
        self._set(message=f"no longer followed here; flow run {run_id} goes on on the server")

    @staticmethod
    def _pool_note(client: PrefectClient, pool: str) -> str | None:
        """What the work pool says about the render machines (None: nothing to say, or the
        server did not answer this time)."""
        try:
            work_pool = client.read_work_pool(pool)
        except (ServerUnreachable, ApiError):
            return None
        if work_pool is not None and work_pool.status == "NOT_READY":
            return (f"no render machine is online on work pool {pool}: start one with "
                    f"`lipdub serve --worker-only --pool {pool}`")
        if work_pool is not None and work_pool.is_paused:
            return f"work pool {pool} is paused on the server"
        return None

    def _progress(self, client: PrefectClient, run_id: str) -> tuple[float | None, str]:
        """The run's whole-run percentage and what it is doing (stage, ETA), from its
        progress artifact."""
        try:
            arts = client.read_artifacts(run_id, [PROGRESS_KEY], limit=1)
        except (ServerUnreachable, NotFound):
            return self.snapshot().percent, ""
        if arts and isinstance(arts[0].data, (int, float)):
            return float(arts[0].data), str(getattr(arts[0], "description", "") or "")
        return self.snapshot().percent, ""

    def _finish(self, client: PrefectClient, run) -> None:
        state = run.state
        if state.type == COMPLETED:
            result_text = None
            try:
                arts = client.read_artifacts(run.id, [RESULT_KEY], limit=1)
                result_text = arts[0].data if arts else None
            except PluginError:
                pass
            output = self.request.output
            summary = None
            summary_path = output + contract.SUMMARY_SUFFIX
            if os.path.isfile(summary_path):
                try:
                    with open(summary_path, encoding="utf-8") as fh:
                        summary = json.load(fh)
                except (OSError, ValueError):
                    summary = None
            if not os.path.isfile(output):
                server_path = self.path_map.to_server(output)
                self._set(phase="error", state_name=state.name, percent=100.0,
                          result_text=result_text,
                          message=(f"the run finished but its output {output} is not visible "
                                   f"from this machine (the render machines wrote "
                                   f"{server_path}): check the path mapping in the settings"))
                return
            self._set(phase="completed", state_name=state.name, percent=100.0,
                      summary=summary, result_text=result_text,
                      message=_done_message(summary, self.path_map))
        elif state.is_failed:
            what = "crashed" if state.type == "CRASHED" else "failed"
            self._set(phase="failed", state_name=state.name,
                      message=f"the dub {what} on the server: "
                              f"{state.message or 'no message (see the Prefect UI)'}")
        else:
            self._set(phase="cancelled", state_name=state.name,
                      message=state.message or "the run was cancelled")


def _done_message(summary: dict | None, path_map: PathMap | None = None) -> str:
    """"done: N of M frames changed", and QC's verdict with where its report is, here."""
    if not summary:
        return "done"
    text = (f"done: {summary.get('frames_changed', '?')} of {summary.get('frames', '?')} "
            f"frames changed")
    qc = summary.get("qc")
    if isinstance(qc, dict) and qc.get("verdict"):  # written by the pipeline (qc_verdict)
        html = qc.get("html")
        where = (path_map or PathMap()).to_local(html) if html else None
        text += f"; {qc['verdict']}" + (f" (report: {where})" if where else "")
    return text
