"""What routing adds to a film's analysis time, on a long synthetic film.

Usage::

    python benchmarks/routing_cost.py --media ../shared/media \\
        --detector ../shared/weights/retinaface_mobilenet0.25_pytorch_retinaface.pth \\
        [--minutes 10] [--work /tmp/lipdub_routing_cost]

The film repeats two cases of the routing benchmark (three talking faces side by side; hard
cuts between lone speakers) with their original mix and dub stems, for ``--minutes``. Analysis
is what the film flow does before lip sync: the shot scan, face tracks per shot, the stems.
Routing is what it adds for routing: the mouth-motion measurement inside tracking (timed by
wrapping its three functions), decoding the film's original audio, and the decisions. Every
part grows linearly with the film, so the ratio holds for a two-hour film; the per-minute
figures extrapolate it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from routing_cases import CASES, FPS, RATE, build_case, write_audio  # noqa: E402


def long_film(media: Path, work: Path, minutes: float,
              size: tuple[int, int]) -> tuple[Path, dict[str, Path]]:
    """Repeat two benchmark films (picture scaled to ``size``, original mix, stems) for
    ``minutes``."""
    parts = [build_case(c, media, work / c.name) for c in CASES
             if c.name in ("three_faces", "cuts_between_speakers")]
    pictures, mixes, stems = [], [], {}
    for film, stem_paths, _ in parts:
        with av.open(str(film)) as src:
            pictures.append([f.reformat(width=size[0], height=size[1], format="yuv420p")
                             .to_ndarray() for f in src.decode(video=0)])
        n = len(pictures[-1])
        seconds = n / FPS
        from lipdub.pipeline.audio import read_audio

        mixes.append(_fit(read_audio(film, RATE).samples, seconds))
        for c in {c for _, sp, _ in parts for c in sp}:
            stems.setdefault(c, []).append(_fit(read_audio(stem_paths[c], RATE).samples, seconds)
                                           if c in stem_paths else np.zeros(int(seconds * RATE),
                                                                            np.float32))
    total = int(minutes * 60 * FPS)
    out = work / f"long_{minutes:g}min_{size[0]}x{size[1]}.mp4"
    with av.open(str(out), "w") as dst:
        video = dst.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "23"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = dst.add_stream("aac", rate=RATE, layout="mono")
        written, mix, order = 0, [], []
        while written < total:
            for k, frames in enumerate(pictures):
                for picture in frames[: total - written]:
                    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
                    frame.pts, frame.time_base = written, Fraction(1, FPS)
                    dst.mux(video.encode(frame))
                    written += 1
                mix.append(mixes[k][: int(len(frames) * RATE / FPS)])
                order.append(k)
                if written >= total:
                    break
        dst.mux(video.encode(None))
        samples = np.concatenate(mix).astype(np.float32)
        write_audio(dst, audio, samples)
    stem_files = {}
    for c, pieces in stems.items():
        stem_files[c] = work / f"long_{c}.wav"
        data = np.concatenate([pieces[k] for k in order])[: len(samples)]
        with av.open(str(stem_files[c]), "w", format="wav") as wav:
            stream = wav.add_stream("pcm_s16le", rate=RATE, layout="mono")
            pcm = (np.clip(data, -1, 1) * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = RATE
            wav.mux(stream.encode(frame))
            wav.mux(stream.encode(None))
    return out, stem_files


def _fit(samples: np.ndarray, seconds: float) -> np.ndarray:
    n = int(round(seconds * RATE))
    return np.pad(samples[:n], (0, max(0, n - len(samples))))


class Timer:
    """Wraps functions and adds up the seconds spent in them."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, module, name: str) -> None:
        inner = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(module, name, timed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path("../shared/media"))
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", default="1920x1080", help="picture size (the cases are "
                        "made at 640x360 and scaled: a film's decode cost is its size's)")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)

    import torch

    import lipdub.pipeline.film_scan as film_scan
    from lipdub.pipeline.faces.detector import load_face_detector
    from lipdub.pipeline.job import Settings
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.routing import route_film
    from lipdub.pipeline.stems import analyse_stem

    torch.set_num_threads(2)
    work = args.work or Path(tempfile.mkdtemp(prefix="lipdub_routing_cost_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    film, stems = long_film(args.media, work, args.minutes, size)
    print(f"film: {film} ({args.minutes:g} min, made in {time.perf_counter() - started:.0f} s)")

    mouth = Timer()
    for name in ("face_square", "mouth_from_square", "mouth_deformation"):
        mouth.wrap(film_scan, name)
    detector = load_face_detector(args.detector)
    settings = Settings()
    clock = time.perf_counter()
    info = probe_video(film)
    scan = film_scan.scan_film(info, threshold=settings.shot_threshold)
    scanned = time.perf_counter()
    tracks = {s.index: film_scan.track_shot(info, scan, s, detector.detect,
                                            every=settings.detect_every,
                                            max_side=settings.detect_size,
                                            smooth_window=settings.smooth_window)
              for s in scan.shots}
    tracked = time.perf_counter()
    analysed = {c: analyse_stem(c, p, work / "stems") for c, p in stems.items()}
    stems_done = time.perf_counter()
    routing = route_film(info, scan, tracks, analysed, [], settings, work / "route")
    routed = time.perf_counter()

    analysis = stems_done - clock
    added = mouth.seconds + (routed - stems_done)
    minutes = args.minutes
    print(f"shots {len(scan.shots)}, pieces routed {len(routing.decisions)}, synced "
          f"{sum(d.synced for d in routing.decisions)}")
    print(f"analysis (scan {scanned - clock:.1f} s + tracks {tracked - scanned:.1f} s + stems "
          f"{stems_done - tracked:.1f} s): {analysis:.1f} s = {analysis / minutes:.1f} s a minute")
    print(f"routing's share: mouth motion inside tracking {mouth.seconds:.2f} s, original audio "
          f"and decisions {routed - stems_done:.2f} s: {added:.2f} s = "
          f"{added / minutes:.2f} s per minute")
    print(f"routing adds {100 * added / (analysis - mouth.seconds):.1f} % to the analysis without "
          f"it; for a two-hour film: {120 * added / minutes / 60:.1f} min of "
          f"{120 * analysis / minutes / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
