"""The film path against the single-clip engine: ``lipdub dub`` and ``lipdub sync``, same footage.

Usage::

    python benchmarks/film_speed.py --checkpoint CKPT --detector FILE \\
        [--seconds 20,60] [--precisions fp32,bf16] [--multi-shot-seconds 60] [--media DIR]

One-shot footage: ``talkinghead_woman_flag`` looped (590x590, 25 fps, no audio stream) and one
stem of English speech after two seconds of silence (the shared recordings in turn, a second
apart). ``lipdub sync`` gets the stem as its dub; ``lipdub dub`` gets a job with that stem as
its one character, an override naming the face (the footage has no original audio to route by),
H.264 out, QC off, run in-process with its temporary Prefect server, as a user runs it. Each run
is a fresh process; wall time, user+system CPU of the process tree and the lipdub process's own
peak RSS (VmHWM) are measured from outside.

The multi-shot film (``benchmarks/film_scale.py``'s scene from ``tests/filmmaker.py``: a lone
speaker, a split screen with a listener and a crowd nobody speaks in, in turn, two characters)
is dubbed at fp32; its lip-sync stage's frames per second (synced frames / the summary's
``lipsync_s``) is compared with the sync engine's (frames / ``render_s`` of the longest
one-shot ``lipdub sync`` at fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from filmmaker import make_film, write_stem  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from film_memory import peak_kib  # noqa: E402

FLAG = "talkinghead_woman_flag__vretalk_face3.mp4"
VOICES = ["en_ljspeech_LJ001-0001__coqui.wav", "en_librispeech_spk1320__rtvc.mp3",
          "en_vctk_p240__rtvc.mp3", "en_librispeech_spk6829__rtvc.mp3",
          "en_vctk_p260__rtvc.mp3", "en_librispeech_spk3575__rtvc.mp3"]
FPS = 25


def speech_pieces(media: Path, seconds: float) -> list[tuple[float, Path, float]]:
    """(at, recording, length) filling ``seconds`` after 2 s of silence, 1 s between lines."""
    from lipdub.pipeline.audio import read_audio

    pieces, at, k = [], 2.0, 0
    while at < seconds - 1.0:
        voice = media / "audio" / VOICES[k % len(VOICES)]
        length = min(read_audio(voice, 16000).duration, seconds - at)
        pieces.append((at, voice, length))
        at, k = at + length + 1.0, k + 1
    return pieces


def measured(command: list[str], env: dict) -> dict:
    """Run ``command``; its wall time, CPU time (process tree) and own peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, peak_kib(proc.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    err = proc.stderr.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mib": round(peak / 1024)}


def dub_job(folder: Path, name: str, film: Path, stems: dict[str, Path], overrides: list,
            args, precision: str) -> Path:
    run = folder / name
    run.mkdir(parents=True, exist_ok=True)
    job = {"film": str(film), "stems": {c: str(p) for c, p in stems.items()},
           "overrides": overrides, "work_dir": str(run / "work"),
           "output": {"path": str(run / "dub.mp4"), "codec": "h264", "qc": False,
                      "overwrite": True},
           "checkpoints": {"generator": str(args.checkpoint), "detector": str(args.detector)},
           "settings": {"precision": precision},
           "distribute": {"mode": "off"}}
    path = run / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def one_shot(seconds: float, args, folder: Path, env: dict) -> list[dict]:
    video = args.media / "video" / FLAG
    film = make_film(folder / f"flag_{seconds:g}s.mp4", [(video, 125)], size=(590, 590),
                     repeat=int(round(seconds * FPS / 125))).path
    stem = write_stem(folder / f"stem_{seconds:g}s.wav", speech_pieces(args.media, seconds),
                      seconds)
    lipdub = [sys.executable, "-m", "lipdub.cli"]
    rows = []
    for precision in args.precisions:
        out = folder / f"sync_{seconds:g}_{precision}.mp4"
        sync = measured([*lipdub, "sync", str(film), str(stem), "-o", str(out), "--overwrite",
                         "--checkpoint", str(args.checkpoint), "--detector", str(args.detector),
                         "--codec", "h264", "--precision", precision, "--no-progress"], env)
        summary = json.loads(Path(f"{out}.json").read_text())
        sync["engine_fps"] = round(summary["frames"] / summary["timings"]["render_s"], 1)
        job = dub_job(folder, f"dub_{seconds:g}_{precision}", film, {"anna": stem},
                      [{"character": "anna", "face": {"index": 0}}], args, precision)
        dub = measured([*lipdub, "dub", str(job)], env)
        dub.update(_dub_figures(job))
        row = {"seconds": seconds, "precision": precision, "sync": sync, "dub": dub,
               "dub_over_sync": round(dub["wall_s"] / sync["wall_s"], 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _dub_figures(job: Path) -> dict:
    spec = yaml.safe_load(job.read_text())
    summary = json.loads(Path(spec["output"]["path"] + ".json").read_text())
    synced = sum(u["end"] - u["start"] for u in summary["units"])
    t = summary["timings"]
    return {"timings": t, "synced_frames": synced, "frames": summary["frames"],
            "shots": len(summary["shots"]),
            "lipsync_fps": round(synced / t["lipsync_s"], 1) if t["lipsync_s"] else None}


def multi_shot(seconds: float, args, folder: Path, env: dict) -> dict:
    from film_scale import make_job  # the fan-out benchmark's scene, with its overrides

    made = make_job(args.media, folder, seconds / 60, args.checkpoint, args.detector)
    job = dub_job(folder, "multi_shot", Path(made["film"]), made["stems"], made["overrides"],
                  args, "fp32")
    dub = measured([sys.executable, "-m", "lipdub.cli", "dub", str(job)], env)
    dub.update(_dub_figures(job))
    return {"frames": dub.pop("frames"), "shots": dub.pop("shots"), "dub": dub}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    ap.add_argument("--checkpoint", type=Path, required=True, help="generator checkpoint")
    ap.add_argument("--detector", type=Path, required=True, help="face detector weights")
    ap.add_argument("--seconds", default="20,60", help="one-shot footage lengths")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--multi-shot-seconds", type=float, default=60.0, help="0: skip it")
    args = ap.parse_args()
    args.checkpoint, args.detector = args.checkpoint.resolve(), args.detector.resolve()
    args.media = args.media.resolve()
    args.precisions = args.precisions.split(",")
    # In-process, as a user runs it: no farm, a temporary Prefect server of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="lipdub-film-speed-") as tmp:
        folder = Path(tmp)
        for seconds in sorted(float(s) for s in args.seconds.split(",")):
            rows += one_shot(seconds, args, folder, env)
        multi = None
        if args.multi_shot_seconds:
            multi = multi_shot(args.multi_shot_seconds, args, folder, env)
            print(json.dumps(multi), flush=True)
    print("\n| footage | precision | sync wall / CPU / RSS | dub wall / CPU / RSS | dub/sync |")
    print("|---|---|---|---|---|")
    for r in rows:
        s, d = r["sync"], r["dub"]
        print(f"| {r['seconds']:g} s one shot | {r['precision']} | {s['wall_s']} s / "
              f"{s['cpu_s']} s / {s['peak_rss_mib']} MiB | {d['wall_s']} s / {d['cpu_s']} s / "
              f"{d['peak_rss_mib']} MiB | {r['dub_over_sync']}x (target <= 1.2) |")
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    if multi and fp32:
        engine = fp32[-1]["sync"]["engine_fps"]
        share = multi["dub"]["lipsync_fps"] / engine
        print(f"multi-shot film ({multi['frames']} frames, {multi['shots']} shots): lip sync "
              f"{multi['dub']['lipsync_fps']} frames/s, sync engine {engine} frames/s: "
              f"{100 * share:.0f} % (target >= 85 %), peak RSS {multi['dub']['peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
