"""plugin/core: the REST client and dub task, against a real Prefect server with the lipdub
deployment and a worker (a tiny film dubbed for real), plus the error messages a user sees."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from lipdub.plugin.core import (
    ApiError,
    AuthenticationFailed,
    DeploymentNotFound,
    DubRequest,
    DubTask,
    FlowRun,
    JobError,
    PathMap,
    PrefectClient,
    RunCancelled,
    RunFailed,
    ServerUnreachable,
    default_output_path,
    normalise_api_url,
)
from lipdub.plugin.core.types import Artifact, SetStateResult


def request_for(film, synthetic_generator, detector_weights, output: Path, **kw) -> DubRequest:
    return DubRequest(film=str(film.path), stems={"anna": str(film.stem)}, output=str(output),
                      generator=str(synthetic_generator), detector=str(detector_weights),
                      work_dir=str(film.cache), frame_range=(0, film.frames - 1),
                      overrides=list(film.overrides), **kw)


# ------------------------------------------------------------------- against the real server
def test_a_tiny_job_runs_to_completion_and_the_result_is_fetched(
        film, synthetic_generator, detector_weights, lipdub, tmp_path):
    client = PrefectClient(lipdub.api_url, timeout=10)
    assert client.health()
    deployment = client.read_deployment(lipdub.deployment)
    assert deployment.name == "lipdub" and deployment.work_pool_name == lipdub.pool

    out = tmp_path / "out" / "reel_dub.mp4"  # the task makes the folder
    task = DubTask(client, lipdub.deployment,
                   request_for(film, synthetic_generator, detector_weights, out),
                   poll_interval=0.5, origin="test")
    seen = []
    task.start()
    deadline = time.time() + 240
    while not task.done and time.time() < deadline:
        seen.append(task.snapshot().phase)
        time.sleep(0.2)
    status = task.wait(1)
    assert status.ok, f"{status}\n{lipdub.log_text()[-3000:]}"
    assert status.raise_for_status() is status
    assert "waiting" in seen or "running" in seen
    assert Path(status.output) == out and out.is_file()
    assert status.summary["frames"] == film.frames
    assert 0 < status.summary["frames_changed"] <= film.frames
    assert status.summary["output"] == str(out)
    assert out.name in status.result_text  # the lipdub-result artifact
    assert status.percent == 100.0 and "frames changed" in status.message
    # QC's verdict, as the run's state name says it, and where its report is.
    qc = status.summary["qc"]
    verdict = (f"QC: {qc['shots_flagged']} of {qc['shots']} shots flagged" if qc["shots_flagged"]
               else f"QC: no shot flagged of {qc['shots']}")
    assert f"{verdict} (report: {qc['html']})" in status.message
    assert status.state_name == (verdict if qc["shots_flagged"] else "Completed")

    run = client.read_flow_run(status.flow_run_id)
    assert run.state.is_completed and run.deployment_id == deployment.id
    assert {"lipdub-plugin", "test", f"frames:0-{film.frames - 1}"} <= set(run.tags)
    assert run.parameters["job"]["film"] == str(film.path)
    keys = {a.key for a in client.read_artifacts(run.id)}
    assert {"lipdub-progress", "lipdub-result", "lipdub-routing", "lipdub-qc"} <= keys
    (progress,) = client.read_artifacts(run.id, ["lipdub-progress"], limit=1)
    assert progress.data == 100.0 and progress.description.startswith("done in")
    progress = client.read_artifacts(run.id, ["lipdub-progress"])
    assert progress[0].type == "progress" and progress[0].data == 100.0


def test_a_failed_run_reports_the_servers_reason(film, synthetic_generator, detector_weights,
                                                 lipdub, tmp_path):
    fake_film = tmp_path / "not_a_film.mp4"
    fake_film.write_text("not a film\n" * 100)  # exists here, so only the server can tell
    req = request_for(film, synthetic_generator, detector_weights, tmp_path / "o.mp4")
    req.film = str(fake_film)
    status = DubTask(PrefectClient(lipdub.api_url), lipdub.deployment, req,
                     poll_interval=0.5).run()
    assert status.phase == "failed", status
    assert status.message.startswith("the dub failed on the server:")
    with pytest.raises(RunFailed, match="not a readable media file"):
        status.raise_for_status()
    assert "not_a_film.mp4" in status.message and "not a readable media file" in status.message


def test_cancel_a_run(film, synthetic_generator, detector_weights, lipdub, tmp_path):
    client = PrefectClient(lipdub.api_url)
    task = DubTask(client, lipdub.deployment,
                   request_for(film, synthetic_generator, detector_weights, tmp_path / "c.mp4"),
                   poll_interval=0.3).start()
    deadline = time.time() + 30
    while task.snapshot().flow_run_id is None and not task.done and time.time() < deadline:
        time.sleep(0.05)
    task.cancel()
    status = task.wait(90)
    assert status.phase == "cancelled", status
    assert client.read_flow_run(status.flow_run_id).state.is_cancelled
    with pytest.raises(RunCancelled):
        status.raise_for_status()
    assert not (tmp_path / "c.mp4").exists()


def test_missing_deployment_says_how_to_create_it(prefect_server, tmp_path):
    client = PrefectClient(prefect_server)
    with pytest.raises(DeploymentNotFound) as err:
        client.read_deployment("dub_film/nope")
    assert "dub_film/nope" in str(err.value) and "lipdub serve --name nope" in str(err.value)
    for name in ("f.mp4", "a.wav"):
        (tmp_path / name).write_bytes(b"x")
    request = DubRequest(str(tmp_path / "f.mp4"), {"anna": str(tmp_path / "a.wav")},
                         str(tmp_path / "o.mp4"), "wav2lip_gan")
    status = DubTask(client, "dub_film/nope", request).run()
    assert status.phase == "error" and "lipdub serve --name nope" in status.message


# ------------------------------------------------------------------------- without a server
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_gives_an_actionable_message(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/api"
    client = PrefectClient(url, timeout=2)
    with pytest.raises(ServerUnreachable) as err:
        client.read_deployment()
    text = str(err.value)
    assert url in text and "prefect server start" in text and "server URL" in text
    stem = tmp_path / "a.wav"
    film = tmp_path / "f.mp4"
    stem.write_bytes(b"x")
    film.write_bytes(b"x")
    status = DubTask(client, "dub_film/lipdub",
                     DubRequest(str(film), {"anna": str(stem)}, str(tmp_path / "o.mp4"),
                                "wav2lip_gan")).run()
    assert status.phase == "error" and url in status.message and status.finished


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def _answer(self):
        route = self.routes.get(self.path, (404, {"detail": "Not Found"}))
        status, body = route.pop(0) if isinstance(route, list) else route  # a list: in turn
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)
        type(self).last = (self.command, self.path, dict(self.headers))

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_errors_become_messages(fake_server):
    server, base = fake_server
    _Handler.routes = {
        "/api/health": (401, {"detail": "Unauthorized"}),
        "/api/flow_runs/x": (500, {"detail": "boom"}),
        "/api/deployments/name/dub_film/lipdub": (200, b"<html>the UI</html>"),
        "/api/work_pools/p": (200, {"name": "p", "status": "NOT_READY", "brand_new": 1}),
        "/api/flow_runs/busy": [(503, {"exception_message": "Service Unavailable"})] * 2
        + [(200, {"id": "busy", "state": {"type": "RUNNING", "name": "Running"}})],
        "/api/flow_runs/down": [(503, {"exception_message": "Service Unavailable"})] * 3,
    }
    client = PrefectClient(base, api_key="user:secret")  # no /api: it is added
    with pytest.raises(AuthenticationFailed, match="API key"):
        client.health()
    assert _Handler.last[2]["Authorization"].startswith("Basic ")
    with pytest.raises(ApiError, match="HTTP 500.*boom"):
        client.read_flow_run("x")
    with pytest.raises(ServerUnreachable, match="end in /api"):
        client.read_deployment()
    assert client.read_work_pool("p").status == "NOT_READY"
    assert client.read_work_pool("nope") is None
    PrefectClient(base, api_key="pnu_key").request("GET", "/work_pools/p")
    assert _Handler.last[2]["Authorization"] == "Bearer pnu_key"
    patient = PrefectClient(base, retries=2, backoff=0.01)  # a busy server answers 503
    assert patient.read_flow_run("busy").state.type == "RUNNING"
    with pytest.raises(ApiError, match="HTTP 503.*Service Unavailable"):
        patient.read_flow_run("down")


def test_responses_ignore_unknown_fields():
    run = FlowRun.from_api({"id": "1", "name": "n", "state": {"type": "RUNNING", "name": "Run",
                                                             "new_field": [1]},
                            "tags": None, "parameters": None, "future": {"x": 1}})
    assert run.state.type == "RUNNING" and run.tags == [] and run.parameters == {}
    assert not run.state.is_final
    art = Artifact.from_api({"id": "a", "key": "k", "type": "progress", "data": 42.0, "z": 0})
    assert art.data == 42.0
    res = SetStateResult.from_api({"status": "REJECT", "state": {"type": "CANCELLED"},
                                   "details": {"reason": "why", "type": "reject_details"}})
    assert res.state.is_cancelled and res.reason == "why"
    with pytest.raises(ServerUnreachable):
        FlowRun.from_api(["not", "a", "dict"])


def test_urls_and_path_mapping():
    assert normalise_api_url("render1:4200") == "http://render1:4200/api"
    assert normalise_api_url("https://x.org/api/") == "https://x.org/api"
    assert normalise_api_url("https://api.prefect.cloud/api/accounts/a/workspaces/w") \
        == "https://api.prefect.cloud/api/accounts/a/workspaces/w"
    with pytest.raises(ServerUnreachable):
        normalise_api_url("")
    pm = PathMap.parse("/Volumes/reels=/mnt/reels; Z:\\=/mnt/z")
    assert pm.to_server("/Volumes/reels/r1/a.mov") == "/mnt/reels/r1/a.mov"
    assert pm.to_server("/Volumes/reelsX/a.mov") == "/Volumes/reelsX/a.mov"
    assert pm.to_server("Z:\\stems\\a.wav") == "/mnt/z/stems/a.wav"
    assert pm.to_local("/mnt/reels/r1/a.mov") == "/Volumes/reels/r1/a.mov"
    assert pm.to_local("/mnt/z/o.mp4") == "Z:\\o.mp4"


def test_requests_list_every_problem_and_map_paths(tmp_path):
    req = DubRequest("film.mp4", {"bad name": "", "ok": "rel.wav"}, str(tmp_path / "o.avi"), "")
    with pytest.raises(JobError) as err:
        req.check()
    text = str(err.value)
    for bit in ("film.mp4", "bad name", "rel.wav", "o.avi", "generator"):
        assert bit in text
    assert len(err.value.problems) == 6
    film = tmp_path / "f.mov"
    film.write_bytes(b"x")
    out = default_output_path(str(film), ["bob", "anna"], when=0)
    assert out.startswith(str(tmp_path / "lipdub" / "f_dub_anna+bob_")) and out.endswith(".mp4")
    job = DubRequest(str(film), {"anna": str(film)}, out, "wav2lip_gan",
                     detector="/Volumes/w/det.pth", consent="ok").to_job(
        PathMap([(str(tmp_path), "/srv")]))
    assert job["film"] == "/srv/f.mov" and job["stems"] == {"anna": "/srv/f.mov"}
    assert job["output"]["path"].startswith("/srv/lipdub/")
    assert job["checkpoints"] == {"generator": "wav2lip_gan", "detector": "/Volumes/w/det.pth"}
    assert job["consent"] == "ok" and "work_dir" not in job
