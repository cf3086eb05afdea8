"""Build small test "films" from the shared clips: known cuts, and stems placed on the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from lipdub.pipeline.audio import read_audio

AUDIO_RATE = 48000


@dataclass
class Film:
    path: Path
    cuts: list[int]  # first frame of every shot after the first
    frames: int
    fps: int
    size: tuple[int, int]


def letterbox(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / bgr.shape[1], height / bgr.shape[0])
    w, h = int(bgr.shape[1] * scale) & ~1, int(bgr.shape[0] * scale) & ~1
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - h) // 2, (width - w) // 2
    out[y : y + h, x : x + w] = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    return out


def make_film(path: Path, parts: list[tuple[Path, int]], *, size=(640, 360), fps: int = 25,
              codec: str = "libx264", repeat: int = 1, audio: bool = False) -> Film:
    """Concatenate the first N frames of each clip (letterboxed), at a constant ``fps``.

    ``repeat`` plays the whole sequence that many times (a longer film, same cuts pattern).
    ``audio``: the film gets an original mix (AAC): each clip's own audio under its pictures.
    """
    width, height = size
    cuts, count = [], 0
    mix = []
    with av.open(str(path), "w") as out:
        options = {"crf": "18", "preset": "veryfast", "g": "25"} if codec == "libx264" else {}
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        for _ in range(repeat):
            for clip, n in parts:
                if count:
                    cuts.append(count)
                if audio:
                    own = read_audio(clip, AUDIO_RATE).samples[: n * AUDIO_RATE // fps]
                    mix.append(np.pad(own, (0, n * AUDIO_RATE // fps - len(own))))
                with av.open(str(clip)) as src:
                    for i, frame in enumerate(src.decode(video=0)):
                        if i >= n:
                            break
                        img = letterbox(frame.to_ndarray(format="bgr24"), width, height)
                        vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(
                            format="yuv420p")
                        vf.pts, vf.time_base = count, Fraction(1, fps)
                        for packet in stream.encode(vf):
                            out.mux(packet)
                        count += 1
        for packet in stream.encode(None):
            out.mux(packet)
        if sound is not None:
            encode_mono(out, sound, np.concatenate(mix))
    return Film(path, cuts, count, fps, size)


def encode_mono(container, stream, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """Encode float mono samples into an (AAC) ``stream`` from time 0, and flush it."""
    samples = np.asarray(samples, np.float32)[None]
    for k in range(0, samples.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k : k + 1024]),
                                           format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, k
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_stem(path: Path, pieces: list[tuple[float, Path | None, float]], total: float,
               rate: int = 48000) -> Path:
    """A mono WAV stem of ``total`` seconds: silence, with each (at, source, seconds) placed.

    ``source`` None places digital silence (useful to state it explicitly).
    """
    samples = np.zeros(int(total * rate), np.float32)
    for at, source, seconds in pieces:
        if source is None:
            continue
        audio = read_audio(source, rate).samples[: int(seconds * rate)]
        start = int(at * rate)
        samples[start : start + len(audio)] = audio[: len(samples) - start]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
