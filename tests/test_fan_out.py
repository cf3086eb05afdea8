"""Fan-out (lipdub.pipeline.farm.fan_out, lipdub.pipeline.farm.chunk_flows, lipdub serve roles,
lipdub submit).

Chunk planning and worker plans as unit tests; then a render farm on this machine, on a real
PostgreSQL (tests/farm.py): a Prefect server, ``lipdub serve --role control`` (takes films) and
``lipdub serve --role gpu --gpus none --workers 2 --threads 1`` (two chunk workers), all separate
processes, a temporary folder as the shared disk. The film: two shots (the flag talking head,
the split screen), each with one routed character: 2 tracking chunks + 2 lip-sync chunks.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from farm import REPO_ROOT, Farm, can_run_postgres, drain_prefect_senders
from filmmaker import make_film, write_stem

from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.farm.fan_out import Farm as ChunkFarm
from lipdub.pipeline.farm.fan_out import (
    chunk_count,
    farm_precision,
    make_chunks,
    make_waves,
    plan_chunks,
)
from lipdub.pipeline.job import Settings

HOST = socket.gethostname()
FLAG = "talkinghead_woman_flag__vretalk_face3.mp4"
SPLIT = "two_people_splitscreen__ghost_2person.mp4"
SHOT_FRAMES, FPS = 75, 25


# ------------------------------------------------------------------------- chunk planning
def test_chunks_cut_where_the_running_total_meets_each_share():
    # Ten equal items in three: shares end at 3.33 and 6.67 -> cuts after items 3 and 7.
    assert plan_chunks([1] * 10, 3) == [range(0, 3), range(3, 7), range(7, 10)]
    # One heavy item alone, the light ones together.
    assert plan_chunks([10, 1, 1, 1, 1], 2) == [range(0, 1), range(1, 5)]
    assert plan_chunks([5, 5], 8) == [range(0, 1), range(1, 2)]  # never more runs than items
    assert plan_chunks([], 3) == []


def test_chunks_are_contiguous_never_empty_and_balanced():
    rng = random.Random(7)
    for _ in range(300):
        weights = [rng.randint(1, 400) for _ in range(rng.randint(1, 60))]
        count = rng.randint(1, 12)
        runs = plan_chunks(weights, count)
        assert [i for r in runs for i in r] == list(range(len(weights)))
        assert all(len(r) for r in runs) and len(runs) == min(count, len(weights))
        share = sum(weights) / len(runs)
        assert max(sum(weights[i] for i in r) for r in runs) <= share + max(weights)


def test_chunks_hold_whole_shots_named_by_their_indices():
    # Shots 2, 5, 6 and 9 are missing (the others are in the work folder).
    chunks = make_chunks("tracks", [2, 5, 6, 9], [100, 40, 60, 100], 2, "shots")
    assert [c.items for c in chunks] == [(2, 5), (6, 9)]
    assert [c.frames for c in chunks] == [140, 160] and chunks[1].label == "shots 6, 9"
    assert make_chunks("tracks", [3, 4, 5], [1, 1, 1], 1, "shots")[0].label == "shots 3-5"
    assert chunk_count(9000, 25.0, 60.0, 2) == 6 and chunk_count(100, 25.0, 60.0, 2) == 2


def test_units_are_dealt_in_waves_so_side_by_side_chunks_move_through_the_film_together():
    # Eight equal units, two workers, two chunks: one wave, dealt alternately.
    chunks = make_waves("lipsync", list(range(8)), [10] * 8, 2, 2, "units")
    assert [c.items for c in chunks] == [(0, 2, 4, 6), (1, 3, 5, 7)]
    assert [c.frames for c in chunks] == [40, 40] and chunks[0].label == "units 0, 2 ... 6 (4)"
    # Four chunks on two workers: two waves (the first half, then the second), each dealt.
    chunks = make_waves("lipsync", list(range(8)), [10] * 8, 4, 2, "units")
    assert [c.items for c in chunks] == [(0, 2), (1, 3), (4, 6), (5, 7)]
    assert [c.index for c in chunks] == [0, 1, 2, 3] and chunks[1].label == "units 1, 3"
    # A long unit first: the next ones go to the other chunk until it has caught up.
    chunks = make_waves("lipsync", [3, 4, 5, 6], [30, 10, 10, 10], 2, 2, "units")
    assert [c.items for c in chunks] == [(3,), (4, 5, 6)] and chunks[0].label == "units 3"


def test_waves_hold_every_unit_once_in_film_order_and_balanced():
    rng = random.Random(11)
    for _ in range(300):
        weights = [rng.randint(1, 400) for _ in range(rng.randint(1, 60))]
        count, workers = rng.randint(1, 12), rng.randint(1, 4)
        chunks = make_waves("lipsync", list(range(len(weights))), weights, count, workers, "u")
        assert sorted(i for c in chunks for i in c.items) == list(range(len(weights)))
        assert all(c.items and list(c.items) == sorted(c.items) for c in chunks)
        assert [c.frames for c in chunks] == [sum(weights[i] for i in c.items) for c in chunks]
        assert len(chunks) <= -(-count // workers) * workers  # whole waves
        if count <= workers:  # one wave: its chunks differ by at most one unit's frames
            frames = [c.frames for c in chunks]
            assert max(frames) - min(frames) <= max(weights)


def test_workers_per_role_and_card():
    from lipdub.cli.serve import plan_workers

    names = lambda plans: [(p.name, p.queue, p.limit) for p in plans]  # noqa: E731
    assert names(plan_workers("control", "auto", 1, None, 3, "h", 2, 8)) == [("h-films",
                                                                             "films", 3)]
    both = plan_workers("all", "auto", 1, None, 1, "h", 2, 8)
    assert names(both) == [("h-films", "films", 1), ("h-gpu0", "gpu", 1), ("h-gpu1", "gpu", 1)]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in both[1:]] == ["0", "1"]
    # No card: a gpu-role machine runs CPU chunk workers sharing its cores; `all` runs none.
    cpu = plan_workers("gpu", "auto", 2, None, 1, "h", 0, 8)
    assert names(cpu) == [("h-cpu0", "gpu", 1), ("h-cpu1", "gpu", 1)]
    assert cpu[0].env["LIPDUB_TORCH_THREADS"] == "4" and cpu[0].env["CUDA_VISIBLE_DEVICES"] == ""
    assert names(plan_workers("all", "auto", 1, None, 1, "h", 0, 8)) == [("h-films", "films", 1)]
    with pytest.raises(LipdubError, match="--gpus 'x'"):
        plan_workers("gpu", "x", 1, None, 1, "h", 0, 8)


def test_a_farm_of_gpus_and_cpus_needs_a_device_named():
    farm = ChunkFarm("lipdub", "pool", ["a-gpu0", "b-cpu0"])
    with pytest.raises(LipdubError, match="Set settings.device"):
        farm_precision(Settings(), farm)
    assert farm_precision(Settings(device="cpu"), farm) == ("cpu", "fp32")
    assert farm_precision(Settings(), ChunkFarm("lipdub", "p", ["a-gpu0"])) == ("cuda", "fp16")


# -------------------------------------------------------------------------- the farm
AUTH = "lipdub:farm-secret"


@pytest.fixture(scope="module")
def farm(tmp_path_factory, weights_dir):
    """The server wants credentials (PREFECT_SERVER_API_AUTH_STRING); runs may only use the
    test session's folders and the shared weights (lipdub serve --roots)."""
    why = can_run_postgres()
    if why:
        pytest.skip(why)
    farm = Farm(tmp_path_factory.mktemp("farm"), auth=AUTH)
    farm.start_server(postgres=True)
    roots = f"{tmp_path_factory.getbasetemp()}:{weights_dir}"
    try:
        farm.serve("control", "--role", "control", "--roots", roots)
        farm.serve("gpu", "--role", "gpu", "--gpus", "none", "--workers", "2", "--threads", "1",
                   "--roots", roots)
        farm.wait_for_workers([f"{HOST}-films", f"{HOST}-cpu0", f"{HOST}-cpu1"])
        yield farm
    finally:
        farm.stop()


@pytest.fixture(scope="module")
def two_shots(media_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_shots")
    video = media_dir / "video"
    made = make_film(folder / "film.mp4", [(video / FLAG, SHOT_FRAMES), (video / SPLIT,
                                                                          SHOT_FRAMES)], audio=True)
    seconds = SHOT_FRAMES / FPS
    write_stem(folder / "anna.wav", [(0.0, video / FLAG, seconds)], 2 * seconds)
    write_stem(folder / "ben.wav", [(seconds, video / SPLIT, seconds)], 2 * seconds)
    return made


def job_for(film, generator: Path, detector: Path, out: Path, work: Path, **extra) -> dict:
    return {"film": str(film.path),
            "stems": {"anna": str(film.path.parent / "anna.wav"),
                      "ben": str(film.path.parent / "ben.wav")},
            "output": {"path": str(out), "codec": "ffv1", "qc": False},
            "checkpoints": {"generator": str(generator), "detector": str(detector)},
            "work_dir": str(work),
            "overrides": [{"character": "anna", "shot": 0, "face": {"index": 0}},
                          {"character": "ben", "shot": 1, "face": {"index": 1}}], **extra}


@pytest.fixture(scope="module")
def reference(farm, two_shots, synthetic_generator, detector_weights, tmp_path_factory):
    """The same film dubbed in this process (no fan-out): what every farm run must equal.

    With one torch thread, as the chunk workers have: a convolution's sums are ordered by the
    thread count, so 2 threads give predictions one fp16 step apart here and there."""
    import torch

    from lipdub.pipeline.flows import dub_film

    folder = tmp_path_factory.mktemp("reference")
    job = job_for(two_shots, synthetic_generator, detector_weights, folder / "dub.mkv",
                  folder / "work", distribute={"mode": "off"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with farm.settings():
            summary = dub_film(job)
            drain_prefect_senders()
    finally:
        torch.set_num_threads(threads)
    assert summary["units_computed"] == 2 and summary["chunks"] == []
    return folder / "dub.mkv"


def decoded(path: Path) -> tuple[str, str]:
    """sha256 of every decoded picture, and of every decoded audio sample."""
    import hashlib

    import av
    import numpy as np

    pictures, sound = hashlib.sha256(), hashlib.sha256()
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            pictures.update(frame.to_ndarray(format="rgb24").tobytes())
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            sound.update(np.ascontiguousarray(frame.to_ndarray()).tobytes())
    return pictures.hexdigest(), sound.hexdigest()


def children_of(farm: Farm, parent_id: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with farm.settings(), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))


def zombie_automation(farm: Farm):
    from prefect import get_client

    from lipdub.cli.serve import ZOMBIE_AUTOMATION

    with farm.settings(), get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        return automation


def read_run(farm: Farm, run_id: str):
    from prefect import get_client

    with farm.settings(), get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def submit(farm: Farm, job: dict, folder: Path, *, wait: bool) -> subprocess.CompletedProcess:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    env = dict(os.environ, PREFECT_API_URL=farm.api_url, PREFECT_API_AUTH_STRING=AUTH)
    return subprocess.run([sys.executable, "-m", "lipdub.cli", "submit", str(path),
                           "--deployment", "dub_film/lipdub", *(["--wait"] if wait else [])],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)


def wait_until(check, what: str, farm: Farm, timeout: float = 300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{farm.log('gpu')[-3000:]}")


@pytest.mark.slow
def test_a_film_from_the_plugin_fans_out_over_both_workers(
        farm, two_shots, reference, synthetic_generator, detector_weights, tmp_path):
    from lipdub.plugin.core import DubRequest, DubTask, PrefectClient

    out = tmp_path / "dub.mkv"
    request = DubRequest(film=str(two_shots.path), output=str(out),
                         stems={c: str(two_shots.path.parent / f"{c}.wav") for c in ("anna",
                                                                                     "ben")},
                         generator=str(synthetic_generator), detector=str(detector_weights),
                         codec="ffv1", work_dir=str(tmp_path / "work"),
                         overrides=job_for(two_shots, synthetic_generator, detector_weights, out,
                                           tmp_path)["overrides"])
    task = DubTask(PrefectClient(farm.api_url, api_key=AUTH, timeout=10), "dub_film/lipdub",
                   request, poll_interval=0.5, origin="test").start()
    status = task.wait(400)
    assert status.ok, f"{status}\n{farm.log('control')[-3000:]}"
    summary = json.loads(Path(str(out) + ".json").read_text())
    chunks = summary["chunks"]
    assert [(c["stage"], c["label"]) for c in chunks] == [
        ("tracks", "shots 0"), ("tracks", "shots 1"), ("lipsync", "units 0"),
        ("lipsync", "units 1")]
    assert {c["worker"] for c in chunks} == {f"{HOST}-cpu0", f"{HOST}-cpu1"}
    assert all(c["host"] == HOST and c["attempt"] == 1 and c["wall_s"] > 0 for c in chunks)
    assert sum(i["computed"] for c in chunks for i in c["items"]) == 4
    children = children_of(farm, summary["flow_run"]["id"])
    assert sorted(str(r.id) for r in children) == sorted(c["flow_run_id"] for c in chunks)
    assert decoded(out) == decoded(reference)
    assert zombie_automation(farm).enabled  # a dead machine's chunk gets Crashed

    # Again, from a shell: everything is in the work folder, so no child is started at all.
    again = submit(farm, {**job_for(two_shots, synthetic_generator, detector_weights, out,
                                    tmp_path / "work"),
                          "output": {"path": str(out), "codec": "ffv1", "qc": False,
                                     "overwrite": True}}, tmp_path, wait=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Completed" in again.stdout and "/runs/flow-run/" in again.stdout
    rerun = json.loads(Path(str(out) + ".json").read_text())
    assert rerun["chunks"] == [] and rerun["units_computed"] == 0
    assert rerun["flow_run"]["id"] != summary["flow_run"]["id"]
    assert children_of(farm, rerun["flow_run"]["id"]) == []
    assert decoded(out) == decoded(reference)


@pytest.mark.slow
def test_a_killed_chunk_is_run_again_and_the_film_is_the_same(
        farm, two_shots, reference, synthetic_generator, detector_weights, tmp_path):
    import signal

    out = tmp_path / "dub.mkv"
    sent = submit(farm, job_for(two_shots, synthetic_generator, detector_weights, out,
                                tmp_path / "work"), tmp_path, wait=False)
    assert sent.returncode == 0, sent.stderr
    parent = sent.stdout.strip().rsplit("/", 1)[-1]

    def running_sync_chunk():
        return next((r for r in children_of(farm, parent)
                     if r.name.startswith("lipsync units 0") and r.state.is_running()
                     and r.infrastructure_pid), None)

    victim = wait_until(running_sync_chunk, "a running lip-sync chunk", farm)
    os.kill(int(str(victim.infrastructure_pid).rsplit(":", 1)[-1]), signal.SIGKILL)
    final = wait_until(lambda: (r := read_run(farm, parent)).state.is_final() and r,
                       "the film's end", farm)
    assert final.state.is_completed(), f"{final.state}\n{farm.log('control')[-3000:]}"
    assert read_run(farm, str(victim.id)).state.name == "Crashed"
    summary = json.loads(Path(str(out) + ".json").read_text())
    attempts = {c["label"]: c["attempt"] for c in summary["chunks"] if c["stage"] == "lipsync"}
    assert attempts == {"units 0": 2, "units 1": 1}
    # Each unit computed once by a chunk that finished; the killed one left nothing behind.
    assert summary["units_computed"] == 2
    assert not list((tmp_path / "work").rglob("*.partial*"))
    assert decoded(out) == decoded(reference)


@pytest.mark.slow
def test_cancel_from_the_plugin_cancels_the_film_and_its_chunks(
        farm, two_shots, synthetic_generator, detector_weights, tmp_path):
    from lipdub.plugin.core import DubRequest, DubTask, PrefectClient

    out = tmp_path / "dub.mkv"
    job = job_for(two_shots, synthetic_generator, detector_weights, out, tmp_path / "work")
    request = DubRequest(film=job["film"], stems=job["stems"], output=str(out),
                         generator=str(synthetic_generator), detector=str(detector_weights),
                         codec="ffv1", work_dir=job["work_dir"], overrides=job["overrides"])
    task = DubTask(PrefectClient(farm.api_url, api_key=AUTH, timeout=10), "dub_film/lipdub",
                   request, poll_interval=0.5, origin="test").start()
    parent = wait_until(lambda: task.snapshot().flow_run_id, "the film's run", farm)
    wait_until(lambda: any(r.state.is_running() for r in children_of(farm, parent)),
               "a running chunk", farm)
    task.cancel()
    status = task.wait(300)
    assert status.state_name == "Cancelled", status
    children = wait_until(
        lambda: (rs := children_of(farm, parent)) and all(r.state.is_final()
                                                                   for r in rs) and rs,
        "every chunk ended", farm, timeout=180)
    states = {r.name: r.state.name for r in children}
    assert "Cancelled" in states.values(), states
    assert set(states.values()) <= {"Cancelled", "Completed"}, states
    for run in children:  # no chunk process is left running
        pid = int(str(run.infrastructure_pid or "0").rsplit(":", 1)[-1])
        if pid:
            wait_until(lambda p=pid: _gone(p), f"chunk process {pid} gone", farm, timeout=60)
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_on_submit_wait_asks_and_cancels_the_run_on_the_server(
        farm, two_shots, synthetic_generator, detector_weights, tmp_path):
    import pty
    import select
    import signal

    out = tmp_path / "dub.mkv"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_for(two_shots, synthetic_generator, detector_weights,
                                           out, tmp_path / "work")))
    env = dict(os.environ, PREFECT_API_URL=farm.api_url, PREFECT_API_AUTH_STRING=AUTH)
    terminal, its_end = pty.openpty()  # the question is asked only of a person at a terminal
    started = time.time()  # runs of the tests before are older
    proc = subprocess.Popen([sys.executable, "-m", "lipdub.cli", "submit", str(path),
                             "--deployment", "dub_film/lipdub", "--wait"], env=env,
                            cwd=REPO_ROOT, stdin=its_end, stdout=its_end, stderr=its_end)
    os.close(its_end)
    said = bytearray()

    def read_until(done, seconds: float) -> None:  # the terminal is read all along (no stall)
        deadline = time.time() + seconds
        while not done() and time.time() < deadline:
            if select.select([terminal], [], [], 0.5)[0]:
                try:
                    said.extend(os.read(terminal, 4096))
                except OSError:  # the process has ended and closed its side
                    return

    try:
        run_id = wait_until(lambda: (read_until(lambda: False, 0.1),
                                     _latest_run_id(farm, "dub_film", after=started - 1))[1],
                            "the submitted run", farm)
        wait_until(lambda: (read_until(lambda: False, 0.1),
                            any(r.state.is_running() for r in children_of(farm, run_id)))[1],
                   "a running chunk", farm)
        proc.send_signal(signal.SIGINT)
        read_until(lambda: b"[y/N]" in said, 30)
        assert b"cancel the run on the server? [y/N]" in said, bytes(said[-500:])
        os.write(terminal, b"y\n")
        read_until(lambda: proc.poll() is not None, 60)
        assert proc.wait(10) == 130
        assert b"cancelling; the server stops its chunks too" in said, bytes(said[-500:])
    finally:
        proc.kill()
        os.close(terminal)
    run = wait_until(lambda: (r := read_run(farm, run_id)).state.is_final() and r,
                     "the run ended", farm, timeout=180)
    assert run.state.name == "Cancelled", run.state
    assert not out.exists()


def _latest_run_id(farm: Farm, flow_name: str, after: float) -> str | None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with farm.settings(), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)
    return str(runs[0].id) if runs and runs[0].created.timestamp() > after else None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_chunk_refuses_other_code_weights_or_film_and_an_unshared_folder(
        two_shots, synthetic_generator, detector_weights, tmp_path):
    from lipdub.pipeline.farm.chunk_flows import _same_as_coordinator
    from lipdub.pipeline.film_stages import code_version, generator_sha, shared_scan
    from lipdub.pipeline.film_units import film_fingerprint
    from lipdub.pipeline.job import parse_job

    job = parse_job(job_for(two_shots, synthetic_generator, detector_weights,
                            tmp_path / "dub.mkv", tmp_path / "work"))
    same = {"code": code_version(), "film": film_fingerprint(job.film),
            "weights": generator_sha(job)}
    _same_as_coordinator(job, same, weights=True)  # the same: no complaint
    with pytest.raises(LipdubError, match="another lipdub code .* another generator weights"):
        _same_as_coordinator(job, {**same, "code": "0" * 16, "weights": "f" * 64},
                             weights=True)
    with pytest.raises(LipdubError, match="work folder .* is not shared"):
        shared_scan(job, tmp_path / "work" / "elsewhere")


def test_serve_refuses_the_old_gpu_slots_with_what_replaces_them(capsys, monkeypatch):
    from lipdub.cli.main import main

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert main(["serve", "--gpu-slots", "2"]) == 2
    assert "--gpus 0,1" in capsys.readouterr().err


def test_the_farm_wants_credentials_and_keeps_runs_inside_their_roots(
        farm, two_shots, synthetic_generator, detector_weights, tmp_path):
    from lipdub.plugin.core import AuthenticationFailed, PrefectClient

    with pytest.raises(AuthenticationFailed):
        PrefectClient(farm.api_url, timeout=10).read_deployment("dub_film/lipdub")
    with pytest.raises(AuthenticationFailed):
        PrefectClient(farm.api_url, api_key="lipdub:wrong", timeout=10).read_deployment(
            "dub_film/lipdub")
    # Outside the roots: an output folder elsewhere, and a work folder inside that is a link
    # to elsewhere.
    outside = Path(tempfile.mkdtemp(prefix="lipdub-outside-"))
    try:
        (tmp_path / "work").symlink_to(outside, target_is_directory=True)
        job = job_for(two_shots, synthetic_generator, detector_weights, outside / "dub.mkv",
                      tmp_path / "work")
        sent = submit(farm, job, tmp_path, wait=True)
        assert sent.returncode == 1, sent.stdout + sent.stderr
        assert "Failed" in sent.stdout
        assert "output.path" in sent.stdout and "work_dir" in sent.stdout
        assert "--roots" in sent.stdout and "film:" not in sent.stdout
        assert list(outside.iterdir()) == []  # nothing was written there
    finally:
        shutil.rmtree(outside)


def test_roots_follow_links_and_dots_and_leave_registry_names_alone(tmp_path):
    from lipdub.pipeline.job import JobSpecError, parse_job
    from lipdub.pipeline.roots import require_within_roots

    inside, outside = tmp_path / "projects", tmp_path / "elsewhere"
    (inside / "reel").mkdir(parents=True)
    outside.mkdir()
    (inside / "reel" / "cache").symlink_to(outside, target_is_directory=True)
    job = parse_job({"film": str(inside / "reel" / "film.mov"),
                     "stems": {"anna": str(inside / "reel" / ".." / ".." / "elsewhere" / "a.wav")},
                     "output": {"path": str(inside / "reel" / "out.mov")},
                     "checkpoints": {"generator": "wav2lip_gan",
                                     "detector": str(outside / "det.pth")},
                     "work_dir": str(inside / "reel" / "cache")})
    require_within_roots(job, [])  # no roots: no restriction
    with pytest.raises(JobSpecError) as refused:
        require_within_roots(job, [inside.resolve()])
    keys = [p.split(":")[0] for p in refused.value.problems]
    assert keys == ["work_dir", "stems.anna", "checkpoints.detector"]
    assert str(outside.resolve()) in refused.value.problems[0]  # where the link really goes
    require_within_roots(job, [inside.resolve(), outside.resolve()])
