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


@pytest.fixture(scope="session")
def make_weights(parity_dir: Path):
    """The fixture set's make_weights.py module (deterministic synthetic weights)."""
    import importlib.util

    source = parity_dir.parent / "make_weights.py"
    spec = importlib.util.spec_from_file_location("make_weights", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_generator(make_weights, parity_dir: Path, tmp_path_factory) -> Path:
    """A Wav2Lip generator checkpoint in the official training layout, synthetic weights."""
    import torch

    state = make_weights.build_state_dict(str(parity_dir.parent / "wav2lip.keys"), 1234)
    path = tmp_path_factory.mktemp("weights") / "wav2lip_synthetic.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "global_step": 0,
                "global_epoch": 0}, path)
    return path


@pytest.fixture(scope="session")
def detector_weights(weights_dir: Path) -> Path:
    return weights_dir / "retinaface_mobilenet0.25_pytorch_retinaface.pth"


@pytest.fixture(scope="session")
def lipdub(prefect_server, tmp_path_factory, request):
    """`lipdub serve` (deployment dub_film/lipdub + a worker) on the session's server; stopped,
    worker included, when the session ends."""
    from plugin_service import lipdub_service

    service = lipdub_service(prefect_server, tmp_path_factory.mktemp("lipdub_serve"))
    request.addfinalizer(service.stop)
    return service


@pytest.fixture(scope="session")
def film(media_dir, tmp_path_factory):
    """The plugin tests' 50-frame film (tests/plugin_service.py)."""
    from plugin_service import tiny_film

    return tiny_film(media_dir, tmp_path_factory.mktemp("plugin_film"))


@pytest.fixture(scope="session")
def expert_weights(make_weights, parity_dir: Path, tmp_path_factory) -> Path:
    """A full-size expert SyncNet checkpoint with synthetic weights (loads, judges nothing)."""
    import torch

    path = tmp_path_factory.mktemp("expert") / "expert_synthetic.pth"
    torch.save(make_weights.build_state_dict(str(parity_dir.parent / "syncnet_expert.keys"), 7),
               path)
    return path


@pytest.fixture
def one_torch_thread():
    """Small networks on a shared 2-core machine: one thread avoids OpenMP barrier stalls."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_expert(media_dir: Path, tmp_path_factory) -> Path:
    """A SyncNet expert that really judges sync, on drawn talking mouths (the training issue's
    synthetic dataset): trained here in about two minutes (24 identities, 300 steps at a
    quarter width: ~70 % off-sync accuracy, enough for offsets and speakers averaged over
    seconds), or the better one ``benchmarks/train_synthetic.py`` leaves, when
    ``LIPDUB_SYNTHETIC_EXPERT`` names it."""
    given = os.environ.get("LIPDUB_SYNTHETIC_EXPERT")
    if given:
        return Path(given)
    import torch

    from lipdub.training.args import ExpertArgs, load_args
    from lipdub.training.synthetic import SyntheticOptions, build_synthetic_dataset
    from lipdub.training.train_expert import main

    root = tmp_path_factory.mktemp("synthetic_expert")
    build_synthetic_dataset(root / "data", SyntheticOptions(
        train_identities=24, val_identities=4, videos_per_identity=2,
        audio_dir=str(media_dir / "audio")))
    threads = torch.get_num_threads()
    try:
        args = load_args(ExpertArgs, "synthetic_expert", [
            f"data.root={root / 'data'}", f"out_dir={root / 'run'}", "max_steps=300",
            "eval_interval=100000", "checkpoint_interval=300", "data.num_workers=0",
            "threads=2", "log_interval=100"])
        return Path(main(args)["checkpoint"])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real ``prefect server start`` on loopback, shared by the whole test session.

    Yields the API URL; the server is stopped afterwards. Telemetry is off.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("prefect_home")
    from farm import free_port

    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
         str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                log_text = (home / "server.log").read_text()
                raise RuntimeError(f"prefect server exited: {log_text}") from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("prefect server did not start within 90 s")
    yield url
    from farm import drain_prefect_senders

    drain_prefect_senders()  # while the server still listens (else the exit waits on them)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture()
def prefect_api(prefect_server, monkeypatch):
    """Point Prefect (in this process and in subprocesses) at the session's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server
