"""The Prefect server of one ``lipdub dub`` run without a farm: started early, ends with the run.

Prefect starts its own temporary server at a run's first API call and stops it at interpreter
exit: its 5-6 s start then waits on the critical path after the job check and the imports, its
graceful stop adds 2-3 s at the end, and a ``lipdub dub`` killed by SIGKILL leaves it running.
Here the same server (Prefect's app under uvicorn, as Prefect runs it, UI off) is started as
soon as the job is read, so that it boots while the job is checked and torch is imported; it
runs in a session of its own (a Ctrl-C in the terminal reaches the run, which then reports to
the server before stopping it) and the kernel kills it when this process dies, however it dies.
Its database is Prefect's usual one (``PREFECT_HOME``), so runs stay visible afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

from lipdub.pipeline import stopping
from lipdub.pipeline.die_with_parent import die_with_parent
from lipdub.pipeline.errors import LipdubError

START_TIMEOUT = 90.0  # seconds; a cold start on a busy 2-core machine takes 6-15 s
STOP_WAIT = 2.0  # seconds of graceful stop before the server is killed (its SQLite commits
# are atomic: a kill loses nothing that was answered)


class TemporaryServer:
    """A Prefect API server on a free loopback port, owned by this process.

    Use :meth:`start` as early as possible, :meth:`wait_ready` before the first API call and
    :meth:`stop` when done (also safe after a failure, and more than once).
    """

    def __init__(self, process: subprocess.Popen, port: int, log) -> None:
        self.process, self.port, self._log = process, port, log

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @classmethod
    def start(cls) -> TemporaryServer:
        """Start the server (returns at once; it boots in the background)."""
        log = tempfile.TemporaryFile()  # unlinked already: nothing is left behind
        port = free_port()
        env = dict(os.environ, PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1",
                   PREFECT__SERVER_FINAL="1")
        env.pop("PREFECT_API_URL", None)
        spec = importlib.util.find_spec("prefect")
        if spec is None or not spec.submodule_search_locations:
            raise LipdubError("Prefect is not installed in this Python (pip install lipdub)")
        app_dir = str(Path(list(spec.submodule_search_locations)[0]).parent)
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=partial(die_with_parent, os.getpid()))
        return cls(process, port, log)

    def ready(self) -> bool:
        """Whether the server answers now."""
        return self.process.poll() is None and healthy(self.api_url)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the server answers its health check; a clear error if it exits or hangs."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise LipdubError(f"the temporary Prefect server exited ({self.process.returncode})"
                                  f": {self._log_tail()} (or set PREFECT_API_URL to a server)")
            if healthy(self.api_url):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LipdubError(f"the temporary Prefect server did not answer within "
                                  f"{timeout:.0f} s: {self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Send what Prefect's log and event workers still hold, then stop the server."""
        if self.process.poll() is None:
            # Stopped by a signal, lipdub must be gone within seconds: logs that the server is
            # slow to take (measured: a 10 s drain once in five SIGTERM tests) are not waited for.
            drain_prefect_senders(timeout=2.0 if stopping.requested() else 10.0)
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def _log_tail(self) -> str:
        try:
            self._log.seek(0)
            text = self._log.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return "(no log)"
        return " ".join(text[-600:].split()) or "(no output)"


def drain_prefect_senders(timeout: float = 30.0) -> None:
    """Send what Prefect's log and event workers hold, and stop them (if they ever started):
    a server stopped first would leave them retrying, and the interpreter waiting, at exit."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout, at_exit=False)


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(api_url: str) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(api_url + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
