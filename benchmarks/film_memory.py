"""Memory of a whole-film run: peak RSS of ``lipdub dub`` on a short and a long synthetic film.

Usage::

    python benchmarks/film_memory.py --media ../shared/media --checkpoint CKPT --detector FILE \\
        [--minutes 1,20] [--size 320x180]

The films are made here by cycling shots cut from the shared clips (low resolution, 25 fps);
one character speaks for three seconds once a minute, so the run exercises every stage without
spending the benchmark in the generator. Each run is a fresh process (ephemeral Prefect);
peak RSS comes from the OS. If memory is flat in film length, the ratio stays near 1.
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
import cv2
import numpy as np
import yaml

CLIPS = ["talkinghead_woman_flag__vretalk_face3.mp4", "two_people_splitscreen__ghost_2person.mp4",
         "crowd_many_faces_no_speech_1080p__facenet_video.mp4"]


def shots(media: Path, size: tuple[int, int], frames_per_shot: int) -> list[list[np.ndarray]]:
    out = []
    for clip in CLIPS:
        with av.open(str(media / "video" / clip)) as src:
            frames = []
            for i, f in enumerate(src.decode(video=0)):
                if i >= frames_per_shot:
                    break
                frames.append(cv2.resize(f.to_ndarray(format="bgr24"), size))
        out.append(frames)
    return out


def make_film(path: Path, minutes: float, size: tuple[int, int], media: Path) -> int:
    pieces = shots(media, size, 100)
    total = int(minutes * 60 * 25)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(total):
            shot = pieces[(i // 100) % len(pieces)]
            frame = av.VideoFrame.from_ndarray(shot[i % 100], format="bgr24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return total


def make_stem(path: Path, seconds: float, media: Path) -> None:
    from lipdub.pipeline.audio import read_audio

    rate = 16000
    voice = read_audio(media / "video" / CLIPS[0], rate).samples[: 3 * rate]
    samples = np.zeros(int(seconds * rate), np.float32)
    for minute in range(int(seconds // 60) + 1):
        # The flag shot opens every third 4-second block: speak over the first one each minute.
        start = minute * 60 * rate
        if start + len(voice) <= len(samples):
            samples[start : start + len(voice)] = voice
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        block = rate * 10
        for i in range(0, len(samples), block):
            pcm = (samples[i : i + block] * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def run(minutes: float, args, folder: Path) -> dict:
    film = folder / f"film_{minutes:g}min.mp4"
    frames = make_film(film, minutes, args.size, args.media)
    make_stem(folder / f"stem_{minutes:g}.wav", minutes * 60, args.media)
    job = {"film": str(film), "stems": {"anna": str(folder / f"stem_{minutes:g}.wav")},
           "output": {"path": str(folder / f"out_{minutes:g}.mp4")},
           "checkpoints": {"generator": str(args.checkpoint), "detector": str(args.detector)},
           "settings": {"detect_size": 320}}
    job_path = folder / f"job_{minutes:g}.yaml"
    job_path.write_text(yaml.safe_dump(job))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lipdub.cli", "dub", str(job_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own_peak = 0
    while proc.poll() is None:
        own_peak = max(own_peak, peak_kib(proc.pid))  # the lipdub process alone
        time.sleep(0.5)
    if proc.returncode:
        raise SystemExit(f"lipdub dub failed for the {minutes} min film")
    wall = time.perf_counter() - start
    summary = json.loads((folder / f"out_{minutes:g}.mp4.json").read_text())
    return {"minutes": minutes, "frames": frames, "frames_changed": summary["frames_changed"],
            "wall_s": round(wall, 1), "lipdub_peak_rss_mib": round(own_peak / 1024, 1),
            # includes Prefect's temporary server, a child process in ephemeral mode
            "any_process_peak_rss_mib": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def peak_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far (VmHWM), KiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--media", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--detector", type=Path, required=True)
    p.add_argument("--minutes", default="1,20")
    p.add_argument("--size", default="320x180")
    args = p.parse_args()
    args.size = tuple(int(v) for v in args.size.split("x"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in sorted(float(m) for m in args.minutes.split(",")):
            # ru_maxrss of children is a running maximum: films go short to long.
            results.append(run(minutes, args, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    ratio = results[-1]["lipdub_peak_rss_mib"] / results[0]["lipdub_peak_rss_mib"]
    print(json.dumps({"lipdub_rss_ratio_long_over_short": round(ratio, 3)}))


if __name__ == "__main__":
    main()
