"""Shared by the plugin tests: the lipdub deployment + worker on the session's Prefect server,
and a tiny film to dub (one per test session, whichever plugin test module asks first).

``lipdub serve`` runs as a subprocess in its own process group (killed as a group at the end),
with its own PREFECT_HOME and a work pool of its own; it is ready when the REST API knows the
deployment. A session-scoped fixture defined in two modules is two fixtures to pytest, so the
objects are memoised here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from filmmaker import make_film, write_stem

from lipdub.plugin.core import DeploymentNotFound, PrefectClient

REPO_ROOT = Path(__file__).resolve().parents[1]
FLAG_CLIP = "talkinghead_woman_flag__vretalk_face3.mp4"
FRAMES, FPS = 50, 25
_service: dict[str, LipdubService] = {}
_films: dict[str, TinyFilm] = {}


@dataclass
class LipdubService:
    api_url: str
    pool: str
    deployment: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def lipdub_service(api_url: str, folder: Path, timeout: float = 120.0) -> LipdubService:
    """``lipdub serve --pool <unique> --name lipdub`` against ``api_url`` (started once)."""
    if api_url in _service and _service[api_url].proc.poll() is None:
        return _service[api_url]
    pool = f"lipdub-test-{uuid.uuid4().hex[:8]}"
    home = folder / "prefect_home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_HOME=str(home), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_WORKER_PREFETCH_SECONDS="1")
    log = folder / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lipdub.cli", "serve", "--pool", pool, "--name", "lipdub"],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    service = LipdubService(api_url, pool, "dub_film/lipdub", proc, log)
    client = PrefectClient(api_url, timeout=5)
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"lipdub serve exited ({proc.returncode}):\n{service.log_text()}")
        try:
            deployment = client.read_deployment(service.deployment)
            if deployment.work_pool_name == pool:
                break
        except DeploymentNotFound:
            pass
        if time.time() > deadline:
            service.stop()
            raise RuntimeError(f"no deployment after {timeout:.0f} s:\n{service.log_text()}")
        time.sleep(0.5)
    _service[api_url] = service
    return service


@dataclass
class TinyFilm:
    path: Path
    stem: Path  # "anna": the clip's own audio, so the lip-sync really runs
    frames: int
    fps: int
    cache: Path  # shared work_dir: a second dub of the same film reuses the computed units
    # Over 2 s the mouth/speech correlation is too weak for the router to give the only face
    # the voice: a routing override does, so the lip-sync really runs.
    overrides = ({"character": "anna", "face": {"index": 0}},)


def tiny_film(media_dir: Path, folder: Path) -> TinyFilm:
    """50 frames of the flag talking head (640x360, 25 fps) and a stem speaking over them."""
    key = str(media_dir)
    if key not in _films:
        folder.mkdir(parents=True, exist_ok=True)
        clip = media_dir / "video" / FLAG_CLIP
        made = make_film(folder / "reel.mp4", [(clip, FRAMES)], fps=FPS)
        stem = write_stem(folder / "anna.wav", [(0.0, clip, FRAMES / FPS)], FRAMES / FPS)
        _films[key] = TinyFilm(made.path, stem, made.frames, FPS, folder / "cache")
    return _films[key]
