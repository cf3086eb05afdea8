"""End-to-end speed and memory of ``lipdub sync``, and the generator's own speed per batch size.

Usage::

    python benchmarks/sync_speed.py --video CLIP --audio DUB --checkpoint CKPT [--detector FILE]
        [--precision fp32|bf16] [--batch-sizes 8,16,32,64] [--loop-seconds 60] [--repeat 5]
        [--reference-fps 9]

Each end-to-end run is a fresh ``lipdub sync`` process (so start-up counts, as for a user) and
its peak RSS is read from the OS. ``--loop-seconds N`` also builds an N-second clip and dub by
looping the inputs and reports whether peak RSS grows with clip length.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def run_sync(video: Path, audio: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "lipdub.cli", "sync", str(video), str(audio), "-o", str(out),
           "--checkpoint", str(args.checkpoint), "--no-progress", "--overwrite",
           ] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
    if args.detector:
        cmd += ["--detector", str(args.detector)]
    if args.precision:
        cmd += ["--precision", args.precision]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(Path(str(out) + ".json").read_text())
    return {
        "frames": summary["frames"],
        "wall_s": round(wall, 2),
        "frames_per_s": round(summary["frames"] / wall, 2),
        # ru_maxrss of children is the max over all children so far: runs go small to large.
        "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
        "stage_timings": summary["timings"],
    }


def generator_speed(checkpoint: Path, batch_sizes: list[int], precision: str) -> dict:
    import torch

    from lipdub.pipeline.generator import LipSyncModel

    model = LipSyncModel(checkpoint, precision=precision)
    rng = np.random.default_rng(0)
    out = {}
    for bs in batch_sizes:
        mels = rng.uniform(-4, 4, (bs, 80, 16)).astype(np.float32)
        faces = rng.integers(0, 256, (bs, 96, 96, 3), dtype=np.uint8)
        model(mels, faces)  # warm-up (allocations, kernel selection)
        reps = max(2, 128 // bs)
        start = time.perf_counter()
        for _ in range(reps):
            model(mels, faces)
        out[bs] = round(bs * reps / (time.perf_counter() - start), 1)
    result = {"device": str(model.device), "precision": precision,
              "threads": torch.get_num_threads(), "frames_per_s_by_batch": out}
    if precision and precision != "fp32":
        # How far the reduced precision moves the output (0-255 levels), on one batch of 64.
        mels = rng.uniform(-4, 4, (64, 80, 16)).astype(np.float32)
        faces = rng.integers(0, 256, (64, 96, 96, 3), dtype=np.uint8)
        reference = LipSyncModel(checkpoint, precision="fp32", device=str(model.device))
        diff = np.abs(model(mels, faces) - reference(mels, faces))
        result["deviation_from_fp32"] = {"max": round(float(diff.max()), 3),
                                         "mean": round(float(diff.mean()), 4),
                                         "p99": round(float(np.percentile(diff, 99)), 3)}
    return result


def loop_media(video: Path, audio: Path, seconds: float, folder: Path) -> tuple[Path, Path]:
    """An H.264 clip and a WAV dub of ``seconds``, made by looping the inputs."""
    long_video = folder / f"loop_{int(seconds)}s.mp4"
    with av.open(str(video)) as src:
        stream = src.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        frames = [f.to_ndarray(format="yuv420p") for f in src.decode(stream)]
        width, height = stream.codec_context.width, stream.codec_context.height
    with av.open(str(long_video), "w") as dst:
        out = dst.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        n = int(seconds * rate)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="yuv420p")
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in out.encode(frame):
                dst.mux(packet)
        for packet in out.encode(None):
            dst.mux(packet)
    from lipdub.pipeline.audio import read_audio

    dub = read_audio(audio, None)
    reps = int(np.ceil(seconds / dub.duration))
    samples = np.tile(dub.samples, reps)[: int(seconds * dub.sample_rate)]
    long_audio = folder / f"loop_{int(seconds)}s.wav"
    with av.open(str(long_audio), "w") as dst:
        out = dst.add_stream("pcm_s16le", rate=dub.sample_rate, layout="mono")
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = dub.sample_rate
        for packet in out.encode(frame):
            dst.mux(packet)
        for packet in out.encode(None):
            dst.mux(packet)
    return long_video, long_audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--audio", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--detector", type=Path)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, help="default: lipdub's (8 on a CPU)")
    p.add_argument("--batch-sizes", default="8,16,32,64")
    p.add_argument("--loop-seconds", type=float, default=0)
    p.add_argument("--skip-generator", action="store_true")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of the clip itself; the median is reported (a shared CPU's speed "
                        "drifts by 10-20 %% from run to run)")
    p.add_argument("--reference-fps", type=float,
                   help="frames/s of another tool on the same clip and machine: print ratios")
    args = p.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [run_sync(args.video, args.audio, tmp / "out.mp4", args)
                for _ in range(max(1, args.repeat))]
        runs.sort(key=lambda run: run["wall_s"])
        report["end_to_end"] = dict(runs[len(runs) // 2],
                                    wall_s_all=[run["wall_s"] for run in runs])
        if args.loop_seconds:
            video, audio = loop_media(args.video, args.audio, args.loop_seconds, tmp)
            report[f"end_to_end_{int(args.loop_seconds)}s"] = run_sync(
                video, audio, tmp / "long.mp4", args)
            short, long = report["end_to_end"], report[f"end_to_end_{int(args.loop_seconds)}s"]
            report["rss_growth_ratio"] = round(long["peak_rss_mib"] / short["peak_rss_mib"], 3)
    if not args.skip_generator:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        report["generator"] = generator_speed(args.checkpoint, sizes, args.precision or "fp32")
    if args.reference_fps:
        report["ratio_to_reference"] = {
            name: round(run["frames_per_s"] / args.reference_fps, 2)
            for name, run in report.items() if name.startswith("end_to_end")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
