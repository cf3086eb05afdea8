"""The ``dub_film`` flow on a small film assembled from the shared clips.

Film (640x360, 25 fps, each clip's own audio as the original mix): shot 0 = the flag talking
head (125 frames), shot 1 = the two-person split screen (150), shot 2 = the crowd (100). Stems:
"anna" speaks her own clip's audio over shot 0, "ben" the split screen's own audio over shot 1,
nobody speaks over the crowd. Anna is the flag face and ben the split screen's right-hand face
by overrides (which face speaks is tested on its own in test_routing.py; here the flow must
honour the decisions, and a routing report must show them).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import process_table
import pytest
import yaml
from filmmaker import make_film, write_stem

from lipdub.pipeline.job import JobSpecError, check_job_inputs, parse_job

CLIPS = [
    ("talkinghead_woman_flag__vretalk_face3.mp4", 125),
    ("two_people_splitscreen__ghost_2person.mp4", 150),
    ("crowd_many_faces_no_speech_1080p__facenet_video.mp4", 100),
]


@pytest.fixture(scope="module")
def film(media_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("film")
    made = make_film(folder / "film.mp4", [(media_dir / "video" / c, n) for c, n in CLIPS],
                     audio=True)
    total = made.frames / made.fps
    write_stem(folder / "anna.wav", [(0.0, media_dir / "video" / CLIPS[0][0], 5.0)], total)
    write_stem(folder / "ben.wav", [(5.0, media_dir / "video" / CLIPS[1][0], 6.0)], total)
    return made


def job_dict(film, synthetic_generator, detector_weights, out: Path, **extra) -> dict:
    job = {
        "film": str(film.path),
        "stems": {"anna": str(film.path.parent / "anna.wav"),
                  "ben": str(film.path.parent / "ben.wav")},
        "output": {"path": str(out), "codec": "ffv1"},
        "checkpoints": {"generator": str(synthetic_generator), "detector": str(detector_weights)},
        "work_dir": str(out.parent / "cache"),
        "consent": "test footage, internal only",
        "overrides": [{"character": "ben", "shot": 1, "face": {"index": 1}},
                      {"character": "anna", "shot": 0, "face": {"index": 0}}],
    }
    job.update(extra)
    return job


def frames_of(path: Path) -> list[list[np.ndarray]]:
    with av.open(str(path)) as c:
        return [[np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy()
                 for p in f.planes] for f in c.decode(video=0)]


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for planes in frames_of(path):
        for p in planes:
            h.update(p.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def dubbed(film, synthetic_generator, detector_weights, prefect_server, tmp_path_factory):
    """One uninterrupted run through the real server (in-process flow)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lipdub.pipeline.flows import dub_film

    out = tmp_path_factory.mktemp("dubbed") / "film_dub.mkv"
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        summary = dub_film(job_dict(film, synthetic_generator, detector_weights, out))
    return out, summary


def test_cuts_are_found_within_one_frame(film, dubbed):
    _, summary = dubbed
    starts = [s["start"] for s in summary["shots"][1:]]
    assert len(starts) == len(film.cuts)
    assert all(abs(a - b) <= 1 for a, b in zip(starts, film.cuts))


def test_routing_and_untouched_pictures(film, dubbed):
    out, summary = dubbed
    src, dst = frames_of(film.path), frames_of(out)
    assert len(src) == len(dst) == film.frames
    by_char = {}
    for d in summary["decisions"]:
        by_char.setdefault(d["character"], []).append(d)
    # ben speaks over the split screen: the right-hand face (second from the left) is his.
    ben = [d for d in by_char["ben"] if d["shot"] == 1]
    assert ben and all(d["track_id"] is not None for d in ben)
    tracks = {(t["shot"], t["track"]): t for t in summary["tracks"]}
    assert all(tracks[(1, d["track_id"])]["order"] == 1 for d in ben)
    assert all(tracks[(1, d["track_id"])]["face"] == "face 2 of 2 from the left" for d in ben)
    assert all(t["end"] > t["first"] for t in summary["tracks"])  # half-open
    changed = [any((a != b).any() for a, b in zip(s, d)) for s, d in zip(src, dst)]
    cut1, cut2 = film.cuts
    # The left person of the split screen is never touched: compare the left half exactly.
    for s, d in zip(src[cut1:cut2], dst[cut1:cut2]):
        assert np.array_equal(s[0][:, :320], d[0][:, :320])
    assert any(changed[cut1:cut2])
    # Nobody speaks over the crowd: those frames are the source's, sample for sample.
    assert not any(changed[cut2:])
    assert summary["frames_changed"] == sum(changed)
    assert summary["consent"] == "test footage, internal only"


def test_qc_shows_who_speaks(dubbed):
    """QC's routing section: a strip per shot (faces x time) and every decision's reason."""
    import cv2

    from lipdub.pipeline.routing_report import COLOURS, ROW

    out, summary = dubbed
    report = json.loads(Path(summary["qc"]["json"]).read_text())
    shots = {r["shot"]: r for r in report["routing"]}
    split = shots[1]
    assert [(d["character"], d["track"], d["rule"]) for d in split["decisions"]] == [
        ("ben", 1, "override")]
    assert split["original_heard"], "the film's own audio is heard over the split screen"
    strip = cv2.imread(str(Path(summary["qc"]["html"]).parent / split["strip"]))
    characters = sorted({*split["stems"], "ben"})
    ben = np.array(COLOURS[characters.index("ben")], np.uint8)
    faces = {f["track"]: i for i, f in enumerate(split["faces"])}

    def row_has_ben(track: int) -> bool:
        top = (1 + len(characters) + faces[track]) * ROW
        return bool((strip[top : top + ROW] == ben).all(axis=2).any())

    assert row_has_ben(1) and not row_has_ben(0)  # ben's lines on the right-hand face only
    html = Path(summary["qc"]["html"]).read_text()
    assert "Who speaks" in html and split["strip"] in html
    assert summary["stem_mix"]["clipped_samples"] == 0 and "Stems summed: no clipping" in html


@pytest.fixture(scope="module")
def judged(film, dubbed, synthetic_generator, detector_weights, expert_weights, prefect_server,
           tmp_path_factory):
    """The film again with an expert for QC (units from the first run's cache): synthetic
    weights judge nothing real, so QC flags every dubbed shot (an offset, low confidence)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lipdub.pipeline.flows import dub_film

    out = tmp_path_factory.mktemp("judged") / "film_dub.mkv"
    job = job_dict(film, synthetic_generator, detector_weights, out,
                   work_dir=str(dubbed[0].parent / "cache"))
    job["checkpoints"]["expert"] = str(expert_weights)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        summary = dub_film(job)
    return job, summary


def test_a_flagged_film_says_so_in_its_state_and_a_qc_table(judged, prefect_server):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _, summary = judged
    qc = summary["qc"]
    assert summary["units_computed"] == 0  # QC ran again, nothing else
    assert qc["shots_flagged"] == 2 and qc["shots"] == 3  # the two dubbed shots of three
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}), \
            get_client(sync_client=True) as client:
        run = client.read_flow_run(summary["flow_run"]["id"])
        tables = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["lipdub-qc"]))) if a.flow_run_id == run.id]
    assert run.state.is_completed() and run.state.name == "QC: 2 of 3 shots flagged"
    (table,) = tables
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    report = json.loads(Path(qc["json"]).read_text())
    assert len(rows) == report["segments_flagged"] >= 2
    assert {r["character"] for r in rows} == {"anna", "ben"}
    flagged = sorted((sh["shot"], seg["name"], "; ".join(seg["flags"]))
                      for sh in report["shots"] for seg in sh["segments"] if seg["flags"])
    assert [(r["shot"], r["segment"], r["reason"]) for r in rows] == flagged
    assert "qc.html" in table.description


def test_qc_fail_on_flagged_fails_the_run_after_writing_everything(
        film, judged, prefect_server, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lipdub.pipeline.flows import dub_film
    from lipdub.pipeline.qc.verdict import QCFlagged

    job, _ = judged
    out = tmp_path / "film_dub.mkv"
    job = {**job, "output": {**job["output"], "path": str(out), "qc_fail_on": "flagged"}}
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}), \
            pytest.raises(QCFlagged, match=r"QC: 2 of 3 shots flagged .*qc_fail_on"):
        dub_film(job)
    assert out.exists() and (tmp_path / "film_dub_qc" / "qc.html").exists()


def test_silent_stem_leaves_its_shots_alone(film, dubbed):
    _, summary = dubbed
    anna_shots = {d["shot"] for d in summary["decisions"] if d["character"] == "anna"}
    ben_shots = {d["shot"] for d in summary["decisions"] if d["character"] == "ben"}
    assert 2 not in anna_shots | ben_shots
    assert 1 not in anna_shots and 0 not in ben_shots


def run_cli(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lipdub.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_resume_after_kill_reuses_finished_units(film, dubbed, synthetic_generator,
                                                 detector_weights, prefect_api, tmp_path):
    out = tmp_path / "resumed.mkv"
    job = job_dict(film, synthetic_generator, detector_weights, out)
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job))
    env = dict(os.environ, PREFECT_API_URL=prefect_api)
    units = tmp_path / "cache"
    proc = run_cli(["dub", str(job_path)], env, start_new_session=True)
    deadline = time.time() + 300

    def finished_units() -> set[str]:
        return {p.name for p in units.rglob("units/*.npz") if ".partial" not in p.name}

    while time.time() < deadline and not finished_units():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, mid-film
    proc.wait()
    finished = finished_units()
    assert finished and not out.exists()

    rerun = run_cli(["dub", str(job_path)], env)
    log, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, log
    summary = json.loads(Path(str(out) + ".json").read_text())
    # The CLI's run is named and tagged like the plugins' (seen in the Prefect UI).
    assert summary["flow_run"]["name"] == "dub film -> resumed.mkv"
    assert {"lipdub-cli", "film:film.mp4", "character:anna", "character:ben"} <= set(
        summary["flow_run"]["tags"])
    total = len(summary["units"])
    assert summary["units_cached"] == len(finished) and total > len(finished)
    assert summary["units_computed"] == total - len(finished)
    assert digest(out) == digest(dubbed[0])  # identical to the uninterrupted run


def test_ephemeral_mode_without_a_server(film, synthetic_generator, detector_weights,
                                         media_dir, tmp_path):
    """`lipdub dub` with no PREFECT_API_URL runs on Prefect's temporary local server."""
    short = make_film(tmp_path / "crowd.mp4", [(media_dir / "video" / CLIPS[2][0], 40)])
    silent = write_stem(tmp_path / "silent.wav", [], 40 / 25)
    out = tmp_path / "crowd_dub.mp4"
    job = {"film": str(short.path), "stems": {"anna": str(silent)}, "output": {"path": str(out)},
           "checkpoints": {"generator": str(synthetic_generator),
                           "detector": str(detector_weights)}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect_home")
    proc = run_cli(["dub", str(tmp_path / "job.yaml")], env)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert summary["frames"] == 40 and summary["frames_changed"] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_dub_leaves_no_server_behind(film, synthetic_generator, detector_weights,
                                            tmp_path):
    """`lipdub dub` without a server starts its own; killed by SIGKILL (no clean-up of its own
    can run), its temporary server goes with it, and no output is left."""
    out = tmp_path / "killed.mkv"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(
        job_dict(film, synthetic_generator, detector_weights, out)))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect_home")
    proc = run_cli(["dub", str(tmp_path / "job.yaml")], env)
    deadline = time.time() + 300
    while not list((tmp_path / "cache").rglob("scan_*.npz")):  # the flow runs on its server
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.1)
    children = process_table.children(proc.pid)
    assert any("uvicorn" in Path(f"/proc/{c}/cmdline").read_text() for c in children)
    os.kill(proc.pid, signal.SIGKILL)  # lipdub alone, not its process group
    proc.wait()
    deadline = time.time() + 10
    while any(process_table.running(c) for c in children) and time.time() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if process_table.running(c)]
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum, moment", [(signal.SIGHUP, "tracking"),
                                            (signal.SIGTERM, "lip sync"),
                                            (signal.SIGINT, "lip sync")])
def test_a_signal_stops_dub_promptly_and_leaves_nothing(film, synthetic_generator,
                                                        detector_weights, tmp_path, signum,
                                                        moment):
    """SIGHUP (a closed terminal), SIGTERM (a farm's stop) and SIGINT on `lipdub dub`: out
    within 5 s with status 128 + the signal, no output or partial file (hidden ones included)
    anywhere, its temporary server gone; finished work stays in the work folder."""
    out = tmp_path / "out" / "stopped.mkv"
    out.parent.mkdir()
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(
        job_dict(film, synthetic_generator, detector_weights, out)))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect_home")
    proc = run_cli(["dub", str(tmp_path / "job.yaml")], env)
    work = out.parent / "cache"
    reached = {"tracking": lambda: list(work.rglob("scan_*.npz")),
               # the first of two units done, the second being synced, the film assembled
               # beside them into a hidden file, waiting for the second
               "lip sync": lambda: [p for p in work.rglob("units/*.npz")
                                    if not p.name.startswith(".")]}[moment]
    log = process_table.stop_when(proc, reached, signum, wait=300)
    left = [p.name for p in tmp_path.rglob("*") if "partial" in p.name]
    assert not out.exists() and not left, (left, log)


def test_bad_job_specs_fail_before_any_work(film, synthetic_generator, detector_weights,
                                            media_dir, tmp_path, capsys):
    short = write_stem(tmp_path / "short.wav", [], 2.0)
    text = tmp_path / "film.mp4"
    text.write_text("not a film\n" * 100)
    job = job_dict(film, synthetic_generator, detector_weights, tmp_path / "o.mkv")
    job["stems"] = {"anna": str(tmp_path / "missing.wav"), "ben": str(short)}
    job["overrides"] = [{"character": "carol", "face": {"index": 0}}]
    with pytest.raises(JobSpecError) as err:
        check_job_inputs(parse_job(job))
    problems = " | ".join(err.value.problems)
    assert "stems.anna" in problems and "missing.wav" in problems and "not found" in problems
    assert "stems.ben" in problems and "short.wav" in problems and "lasts 2.00 s" in problems
    assert "overrides[0].character" in problems and "carol" in problems
    assert len(err.value.problems) == 3

    job = job_dict(film, synthetic_generator, detector_weights, tmp_path / "o.mkv")
    job["film"] = str(text)
    job["output"]["codec"] = "divx"
    job["settings"] = {"detect_every": 3}  # mouth motion is measured every 2nd frame
    job_path = tmp_path / "bad.yaml"
    job_path.write_text(yaml.safe_dump(job))
    from lipdub.cli.main import main

    assert main(["dub", str(job_path)]) == 2
    message = capsys.readouterr().err
    assert "output.codec" in message  # schema problems are reported first, all at once
    assert "settings.detect_every" in message and "multiple of 2" in message, message
    del job["settings"]
    job["output"]["codec"] = "ffv1"
    job_path.write_text(yaml.safe_dump(job))
    assert main(["dub", str(job_path)]) == 2
    message = capsys.readouterr().err
    assert "film:" in message and "film.mp4" in message and "not a readable media file" in message
    assert not (tmp_path / "cache").exists()  # nothing started
