"""Make small mastering-grade test sources from the shared clips: intra-only codecs, 10-bit,
start timecodes, 24-bit audio, and lip-sync unit results without running a model."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lipdub.pipeline.film_scan import FilmScan
from lipdub.pipeline.media.decode import probe_video
from lipdub.pipeline.shots import shots_from_cuts

TALKING_HEAD = "talkinghead_woman_flag__vretalk_face3.mp4"
BOX = (100, 110, 220, 250)  # x0, y0, x1, y1: the lower face of the talking head at 320x320


def encode_clip(path: Path, clip: Path, frames: int, encoder: str, pix_fmt: str, *,
                options: dict | None = None, size: int = 320, rate: Fraction = Fraction(25),
                timecode: str | None = None) -> Path:
    """The first ``frames`` pictures of ``clip``, scaled to ``size`` square, re-encoded."""
    with av.open(str(clip)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=rate, options=dict(options or {}))
        stream.width = stream.height = size
        stream.pix_fmt = pix_fmt
        stream.time_base = 1 / rate
        if timecode:
            stream.metadata["timecode"] = timecode
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            picture = frame.reformat(width=size, height=size, format=pix_fmt)
            picture.pts, picture.time_base = i, 1 / rate
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_pcm24(path: Path, seconds: float, rate: int = 48000, seed: int = 0) -> np.ndarray:
    """A 24-bit stereo WAV of random full-scale samples; returns them as (2, n) int32."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-(2**23), 2**23, (2, int(seconds * rate))).astype(np.int32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s24le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray((values.T.reshape(1, -1) << 8).copy(), format="s32",
                                           layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return values


def decoded_audio(path: Path) -> np.ndarray:
    """(channels, n) samples of the first audio stream, as decoded (s32 for 24-bit)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        parts = []
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            parts.append(array if frame.format.is_planar else array.reshape(-1, stream.channels).T)
    return np.concatenate(parts, axis=1)


def fake_unit(path: Path, frames: range, box=BOX, seed: int = 0, flicker: bool = False) -> Path:
    """A unit result file as lip sync writes it, with a made-up mouth (a ramp, mirrored from one
    picture to the next when ``flicker``)."""
    rng = np.random.default_rng(seed)
    n = len(frames)
    base = np.linspace(40, 220, 96, dtype=np.float32)[None, :, None] * np.ones((96, 1, 3))
    preds = np.stack([(base[:, ::-1] if flicker and k % 2 else base)
                      + rng.normal(0, 20, (96, 96, 3)) for k in range(n)])
    np.savez(path, frames=np.asarray(list(frames), np.int64),
             boxes=np.tile(np.asarray(box, np.int64), (n, 1)),
             preds=np.clip(preds, 0, 255).astype(np.float16))
    return path


def film_of(path: Path, cuts: list[int] | None = None):
    """(VideoInfo, FilmScan) of a file, with cuts at the given frames."""
    info = probe_video(path)
    with av.open(str(path)) as container:
        times = np.array([float(f.pts * f.time_base) for f in container.decode(video=0)])
    return info, FilmScan(times, shots_from_cuts(times, [times[c] for c in cuts or []]))


def video_planes(path: Path) -> list[list[np.ndarray]]:
    """Every decoded picture's planes (uint8 or uint16), exactly as stored."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
            out.append([np.frombuffer(p, dtype).reshape(p.height, -1)[:, : p.width].copy()
                        for p in frame.planes])
    return out


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]
