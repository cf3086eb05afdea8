"""Fan-out over chunk workers: one synthetic film (a few minutes, many shots, two speakers)
dubbed three ways, one after the other, on this machine:

  (a) in-process ``lipdub dub`` (distribute off), torch on every core;
  (b) ``lipdub submit --wait`` to a farm with one CPU chunk worker, 1 torch thread;
  (c) the same with two CPU chunk workers, 1 torch thread each.

Usage::

    python benchmarks/film_scale.py --media ../shared/media --checkpoint CKPT --detector FILE \\
        [--minutes 2] [--chunk-seconds 60]

The farm is tests/farm.py's (a real PostgreSQL, a Prefect server, ``lipdub serve --role
control`` and ``--role gpu --gpus none``); (a) runs against the same server (no ephemeral start).
Each configuration starts from an empty work folder. Printed per configuration: the whole
film's wall time (the command's), the fan-out stages' time (tracking + lip sync, from the run
summary), each stage's time, how long the run took to start (created to flow start), chunk
count and each chunk's start cost; then the ratios the scale-out issue asks for: fan-out
stages (b)/(c) (2 workers on 2 cores: at most 2x) and whole film (c)/(a).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from farm import Farm  # noqa: E402
from filmmaker import make_film, write_stem  # noqa: E402

# A scene pattern, repeated: anna alone (flag), ben and a listener (split screen, right-hand
# face), nobody speaking (crowd).
SCENE = [("talkinghead_woman_flag__vretalk_face3.mp4", 125, "anna", 0),
         ("two_people_splitscreen__ghost_2person.mp4", 125, "ben", 1),
         ("crowd_many_faces_no_speech_1080p__facenet_video.mp4", 75, None, None)]
FPS = 25


def make_job(media: Path, folder: Path, minutes: float, checkpoint: Path,
             detector: Path) -> dict:
    video = media / "video"
    scene_frames = sum(n for _, n, _, _ in SCENE)
    repeat = max(1, round(minutes * 60 * FPS / scene_frames))
    made = make_film(folder / "film.mp4", [(video / c, n) for c, n, _, _ in SCENE], fps=FPS,
                     repeat=repeat, audio=True)
    pieces = {"anna": [], "ben": []}
    overrides, start, shot = [], 0, 0
    for _ in range(repeat):
        for clip, n, who, face in SCENE:
            if who:
                pieces[who].append((start / FPS, video / clip, n / FPS))
                overrides.append({"character": who, "shot": shot, "face": {"index": face}})
            start, shot = start + n, shot + 1
    total = made.frames / FPS
    stems = {who: str(write_stem(folder / f"{who}.wav", p, total)) for who, p in pieces.items()}
    return {"film": str(made.path), "stems": stems, "overrides": overrides,
            "output": {"path": "", "codec": "h264", "qc": False},
            "checkpoints": {"generator": str(checkpoint), "detector": str(detector)}}


def configured(job: dict, folder: Path, name: str, mode: str, chunk_seconds: float) -> Path:
    """The job for one configuration: its own output and empty work folder."""
    run = folder / name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    spec = {**job, "output": {**job["output"], "path": str(run / "dub.mp4")},
            "work_dir": str(run / "work"),
            "distribute": {"mode": mode, "chunk_seconds": chunk_seconds}}
    path = run / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - started


def run_start(flow_run_id: str, api_url: str) -> float:
    """Seconds from the film's run being created to its flow starting (for a submitted film:
    a control worker's pick-up, a new process, its imports and Prefect's engine)."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return round((run.start_time - run.created).total_seconds(), 1)


def figures(job_path: Path, wall: float, api_url: str) -> dict:
    spec = yaml.safe_load(job_path.read_text())
    summary = json.loads(Path(spec["output"]["path"] + ".json").read_text())
    t = summary["timings"]
    return {"wall_s": round(wall, 1), "fan_out_s": round(t["tracking_s"] + t["lipsync_s"], 1),
            "run_start_s": run_start(summary["flow_run"]["id"], api_url),
            **{k: v for k, v in t.items() if k != "qc_s"},
            "chunks": len(summary["chunks"]),
            # what a chunk costs beyond its own work: the worker's pick-up, process start,
            # imports, Prefect's engine, the checks and model loads
            "chunk_start_s": [round(c["span_s"] - c["wall_s"], 1) for c in summary["chunks"]],
            "workers": sorted({c["worker"] for c in summary["chunks"]}),
            "frames": summary["frames"],
            "synced_frames": sum(u["end"] - u["start"] for u in summary["units"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    ap.add_argument("--checkpoint", type=Path, required=True, help="generator checkpoint")
    ap.add_argument("--detector", type=Path, required=True, help="face detector weights")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--chunk-seconds", type=float, default=60.0,
                    help="distribute.chunk_seconds (default: the job's default, 60)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lipdub-film-scale-"))
    farm = Farm(folder / "farm")
    host = socket.gethostname()
    results = {}
    try:
        job = make_job(args.media, folder, args.minutes, args.checkpoint.resolve(),
                       args.detector.resolve())
        farm.start_server(postgres=True)
        farm.serve("control", "--role", "control")
        farm.wait_for_workers([f"{host}-films"])
        env = dict(os.environ, PREFECT_API_URL=farm.api_url)
        lipdub = [sys.executable, "-m", "lipdub.cli"]

        path = configured(job, folder, "a_in_process", "off", args.chunk_seconds)
        results["a"] = figures(path, timed([*lipdub, "dub", str(path)], env), farm.api_url)
        print("(a) in-process, all cores:", results["a"], flush=True)
        for key, workers in (("b", 1), ("c", 2)):
            farm.serve("gpu", "--role", "gpu", "--gpus", "none", "--workers", str(workers),
                       "--threads", "1")
            farm.wait_for_workers([f"{host}-cpu{i}" for i in range(workers)])
            path = configured(job, folder, f"{key}_{workers}_workers", "on", args.chunk_seconds)
            wall = timed([*lipdub, "submit", str(path), "--wait"], env)
            results[key] = figures(path, wall, farm.api_url)
            print(f"({key}) {workers} chunk worker(s), 1 thread each:", results[key], flush=True)
            farm.stop_one("gpu")
    finally:
        farm.stop()
        shutil.rmtree(folder, ignore_errors=True)
    a, b, c = results["a"], results["b"], results["c"]
    print(f"film: {a['frames']} frames, {a['synced_frames']} lip-synced")
    print(f"fan-out stages (b)/(c): {b['fan_out_s'] / c['fan_out_s']:.2f}x  (target >= 1.6)")
    print(f"whole film (c)/(a): {c['wall_s'] / a['wall_s']:.2f}x  (target <= 1.1)")


if __name__ == "__main__":
    main()
