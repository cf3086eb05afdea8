"""A render farm on one machine, for the fan-out tests and benchmarks/film_scale.py.

A real PostgreSQL (Debian's package: ``.ci/install_packages.sh`` installs it) on a free
loopback port, a ``prefect server start`` on it, and ``lipdub serve`` processes in roles, each in
its own process group (stopped as a group). Everything lives in one folder; nothing is left
running after :meth:`Farm.stop`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lipdub.pipeline.farm.temporary_server import (  # noqa: F401 - the tests' too
    drain_prefect_senders,
    free_port,
    healthy,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def postgres_binaries() -> Path | None:
    """Debian's PostgreSQL server programs (initdb, pg_ctl), newest version, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Postgres:
    """A throwaway cluster in ``folder``: trust auth on loopback only."""

    folder: Path
    port: int
    bin: Path
    user: str | None  # run as this account (PostgreSQL refuses root)

    @classmethod
    def start(cls) -> Postgres:
        """A new cluster in a folder of its own under the system's temporary folder (as root,
        owned by the postgres account: test folders are private to root)."""
        bin_dir = postgres_binaries()
        if bin_dir is None:
            raise RuntimeError("Debian's postgresql package is not installed "
                               "(.ci/install_packages.sh installs it)")
        user = "postgres" if os.geteuid() == 0 else None
        folder = Path(tempfile.mkdtemp(prefix="lipdub-postgres-"))
        data = folder / "pgdata"
        if user:
            account = pwd.getpwnam(user)
            os.chown(folder, account.pw_uid, account.pw_gid)
        pg = cls(folder, free_port(), bin_dir, user)
        pg._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        pg._run("pg_ctl", "-D", str(data), "-l", str(folder / "postgres.log"), "-w", "-o",
                f"-p {pg.port} -h 127.0.0.1 -k {folder} -c fsync=off", "start")
        pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "prefect")
        return pg

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, cwd=self.folder, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr[-2000:]}")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "pgdata"), "-m", "immediate", "-w",
                      "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def prefect_env(home: Path, api_url: str | None = None, auth: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PREFECT_HOME=str(home), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1",
               PREFECT_LOGGING_LEVEL="INFO")
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth
    return env


@dataclass
class Farm:
    """A Prefect server (on PostgreSQL when ``database`` is given) and ``lipdub serve``s.

    ``auth``: the server's ``PREFECT_SERVER_API_AUTH_STRING`` ("user:password"), given to every
    ``lipdub serve`` as ``PREFECT_API_AUTH_STRING``."""

    folder: Path
    auth: str | None = None
    api_url: str = ""
    pool: str = "lipdub-farm"
    database: Postgres | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "w") as out:
            proc = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_server(self, postgres: bool = True, timeout: float = 120.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = prefect_env(self.folder / "server_home")
        if self.auth:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth
        if postgres:
            self.database = Postgres.start()
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database.url
        port = free_port()
        self._spawn("server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env)
        self.api_url = f"http://127.0.0.1:{port}/api"
        self._wait(lambda: healthy(self.api_url), "server", timeout)

    def serve(self, name: str, *args: str, ready: str | None = None,
              timeout: float = 180.0) -> subprocess.Popen:
        """``lipdub serve --pool <pool> ARGS`` as ``name``; waits until its log shows
        ``ready`` (e.g. a worker's name) when given."""
        env = prefect_env(self.folder / f"{name}_home", self.api_url, self.auth)
        proc = self._spawn(name, [sys.executable, "-m", "lipdub.cli", "serve", "--pool",
                                  self.pool, *args], env)
        if ready:
            self._wait(lambda: ready in self.log(name), name, timeout)
        return proc

    def wait_for_workers(self, names: list[str], timeout: float = 180.0) -> None:
        """Until every named worker is ONLINE on the pool."""
        from lipdub.plugin.core import PrefectClient

        client = PrefectClient(self.api_url, api_key=self.auth, timeout=5)

        def online() -> bool:
            try:
                workers = client.request("POST", f"/work_pools/{self.pool}/workers/filter", {})
            except Exception:  # noqa: BLE001 - the pool may not exist yet
                return False
            up = {w["name"] for w in workers if w.get("status") == "ONLINE"}
            return set(names) <= up
        self._wait(online, "workers " + ", ".join(names), timeout)

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = "\n".join(f"--- {n}.log\n{self.log(n)[-3000:]}" for n in self.procs)
                self.stop()
                why = "exited: " + ", ".join(dead) if dead else "timed out"
                raise RuntimeError(f"{what} not ready ({why})\n{logs}")
            time.sleep(0.5)

    def settings(self):
        """Prefect settings for this process to talk to the farm's server.

        A flow run in this process starts Prefect's log and event senders, which keep the
        server they first saw: :func:`drain_prefect_senders` before leaving, or later runs'
        logs go to this farm's server after it stopped (and the interpreter waits for them at
        exit)."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates = {PREFECT_API_URL: self.api_url}
        if self.auth:
            updates[PREFECT_API_AUTH_STRING] = self.auth
        return temporary_settings(updates=updates)

    def stop_one(self, name: str) -> None:
        _stop_group(self.procs.pop(name))

    def stop(self) -> None:
        for name in [n for n in self.procs if n != "server"]:
            self.stop_one(name)
        if "server" in self.procs:
            self.stop_one("server")
        if self.database:
            self.database.stop()
            self.database = None


def can_run_postgres() -> str | None:
    """Why a PostgreSQL-backed farm cannot run here, or None."""
    if postgres_binaries() is None:
        return "Debian's postgresql package is not installed (.ci/install_packages.sh)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None
