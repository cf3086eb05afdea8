"""Dialogue stems, streamed: loudness envelopes, speech segments, ranges for the mel, the mix.

A feature-length stem is never held whole: every function here decodes in blocks of a few
seconds, so memory stays flat with film length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr

from lipdub.pipeline.errors import AudioError, MediaError
from lipdub.pipeline.media.decode import open_media
from lipdub.pipeline.partial_files import writing
from lipdub.pipeline.work_cache import cache_key, file_sha256

ENVELOPE_RATE = 100  # envelope values per second (10 ms hop)


def iter_audio_blocks(
    path: Path, rate: int | None, *, mono: bool = True, block_seconds: float = 4.0
) -> Iterator[np.ndarray]:
    """Decode ``path`` into float32 blocks of (channels, n) at ``rate`` (None: the stream's).

    libswresample converts the rate on the fly (streaming). ``mono`` averages the channels as
    ``librosa.load`` does (libswresample's own down-mix weighs them differently); otherwise the
    result is stereo (mono duplicated, more channels down-mixed). Blocks hold ``block_seconds``
    of samples (the last one less).
    """
    path = Path(path)
    pending: list[np.ndarray] = []
    have = 0
    with open_media(path) as container:
        if not container.streams.audio:
            raise AudioError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        size = int(block_seconds * (rate or stream.rate))
        channels = stream.channels or 1
        layout = None if mono or channels == 2 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    pending.append(_channels(out.to_ndarray(), mono))
                    have += pending[-1].shape[1]
                    while have >= size:
                        block = np.concatenate(pending, axis=1)
                        yield block[:, :size]
                        pending, have = [block[:, size:]], block.shape[1] - size
            for out in resampler.resample(None):
                pending.append(_channels(out.to_ndarray(), mono))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: audio decoding failed ({exc})") from exc
    if pending and sum(p.shape[1] for p in pending):
        yield np.concatenate(pending, axis=1)


def _channels(planar: np.ndarray, mono: bool) -> np.ndarray:
    if mono:
        return planar.mean(axis=0, keepdims=True) if planar.shape[0] > 1 else planar
    return np.repeat(planar, 2, axis=0) if planar.shape[0] == 1 else planar


def audio_duration(path: Path) -> float:
    """Length of the first audio stream in seconds (header first, else by decoding)."""
    with open_media(path) as container:
        if not container.streams.audio:
            raise AudioError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return container.duration / av.time_base
    return sum(b.shape[1] for b in iter_audio_blocks(path, 16000)) / 16000


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch where a character speaks: seconds from the film's first frame."""

    character: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def speech_segments(env: np.ndarray, character: str, *, min_segment: float = 0.3,
                    bridge: float = 0.35, pad: float = 0.1,
                    floor_db: float = -50.0, range_db: float = 30.0) -> list[SpeechSegment]:
    """Voice activity of a clean dialogue stem from its envelope.

    A 10 ms step counts as speech when louder than both ``floor_db`` (dBFS) and the stem's
    loud level (95th percentile) minus ``range_db``; pauses shorter than ``bridge`` are
    bridged, segments shorter than ``min_segment`` dropped, and the rest padded by ``pad``.
    """
    db = 20 * np.log10(np.maximum(env, 1e-10))
    if not np.isfinite(db).any() or db.max() < floor_db:
        return []
    threshold = max(floor_db, float(np.percentile(db, 95)) - range_db)
    active = db > threshold
    edges = np.flatnonzero(np.diff(np.r_[0, active.astype(int), 0]))
    runs = [[a / ENVELOPE_RATE, b / ENVELOPE_RATE] for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[float]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < bridge:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    end = len(env) / ENVELOPE_RATE
    return [SpeechSegment(character, max(0.0, a - pad), min(end, b + pad))
            for a, b in merged if b - a >= min_segment]


@dataclass(frozen=True)
class StemAnalysis:
    """A stem decoded once: its 16 kHz mono samples on disk, loudness envelope and speech.

    Attributes:
        character: who speaks in it.
        source: the stem file.
        samples_path: raw float32 16 kHz mono samples (read ranges with :meth:`samples`).
        duration: seconds.
        envelope: RMS per 10 ms.
        segments: speech segments found in it.
    """

    character: str
    source: Path
    samples_path: Path
    duration: float
    envelope: np.ndarray
    segments: list[SpeechSegment]

    def samples(self) -> np.ndarray:
        """All 16 kHz samples, memory-mapped (only the ranges read are loaded)."""
        return np.memmap(self.samples_path, dtype=np.float32, mode="r")


def analyse_stem(character: str, path: Path, work_dir: Path, *, min_segment: float = 0.3,
                 name: str | None = None) -> StemAnalysis:
    """Decode a stem once (streamed): 16 kHz samples to disk, envelope, speech segments.

    The resampling is soxr 'HQ' in streaming mode, which gives the same samples as
    ``librosa.load`` (and so as ``lipdub sync``) on the whole file, to the last one (the
    end-to-end parity test reads mel windows that reach the stem's end).
    """
    path = Path(path)
    target = Path(work_dir) / f"{name or character}_16k.f32"
    with open_media(path) as container:
        if not container.streams.audio:
            raise AudioError(f"{path}: has no audio stream")
        source_rate = container.streams.audio[0].rate
    resampler = soxr.ResampleStream(source_rate, 16000, 1, dtype="float32", quality="HQ")
    hop = 16000 // ENVELOPE_RATE
    values, carry, count, decoded = [], np.zeros(0, np.float32), 0, 0
    with writing(target) as tmp, open(tmp, "wb") as out:
        blocks = iter_audio_blocks(path, source_rate)
        block = next(blocks, None)
        while block is not None:
            following = next(blocks, None)
            decoded += block.shape[1]
            chunk = resampler.resample_chunk(block[0], last=following is None)
            if following is None:
                # librosa.load pads soxr's output with zeros to ceil(n * 16000 / rate) samples
                # (usually one): so do we, so that the stem ends where lipdub sync's dub ends.
                short = math.ceil(decoded * 16000 / source_rate) - (count + len(chunk))
                chunk = np.concatenate([chunk, np.zeros(max(short, 0), np.float32)])
            out.write(chunk.astype(np.float32).tobytes())
            count += len(chunk)
            mono = np.concatenate([carry, chunk])
            n = len(mono) // hop
            values.append(np.sqrt(np.mean(mono[: n * hop].reshape(n, hop) ** 2, axis=1)))
            carry = mono[n * hop :]
            block = following
        if count == 0:
            raise AudioError(f"{path}: the audio stream holds no samples")
    env = np.concatenate(values).astype(np.float32)
    return StemAnalysis(character, path, target, count / 16000, env,
                        speech_segments(env, character, min_segment=min_segment))


STEM_VERSION = 1  # of what a cached stem analysis holds


def stem_analysis(character: str, path: Path, work_dir: Path, *, min_segment: float = 0.3,
                  identity: str | None = None) -> StemAnalysis:
    """:func:`analyse_stem`, kept in ``work_dir`` under the stem's content: decoded once.

    ``identity``: what names the content (default: the sha256 of the file; a film's own audio
    passes the film's fingerprint instead of hashing a whole master). An edited stem gets a new
    name, so stale samples are never served, and files other processes may have mapped are
    never rewritten.
    """
    key = cache_key("stem", STEM_VERSION, identity or file_sha256(path))
    samples, meta = Path(work_dir) / f"{key}_16k.f32", Path(work_dir) / f"{key}_envelope.npz"
    if samples.exists() and meta.exists():
        with np.load(meta) as data:
            env, duration = data["envelope"], float(data["duration"])
        return StemAnalysis(character, Path(path), samples, duration, env,
                            speech_segments(env, character, min_segment=min_segment))
    analysed = analyse_stem(character, path, work_dir, min_segment=min_segment, name=key)
    with writing(meta) as tmp:
        np.savez(tmp, envelope=analysed.envelope, duration=np.array(analysed.duration))
    return analysed


@dataclass(frozen=True)
class StemMix:
    """The stems summed: the WAV, and whether the sum ran past full scale.

    Attributes:
        path: the 24-bit stereo WAV.
        clipped_samples: samples (either channel) where the sum passed full scale and was
            clipped; never silent: the flow logs it and QC and the run summary show it.
        peak: the sum's highest absolute sample before clipping (1.0 = full scale).
    """

    path: Path
    clipped_samples: int
    peak: float


def mix_stems(stems: list[Path], output: Path, duration: float, rate: int = 48000) -> StemMix:
    """Sum the stems into one 24-bit stereo WAV of exactly ``duration`` seconds (streamed)."""
    total = int(round(duration * rate))
    clipped, peak = 0, 0.0
    sources = [iter_audio_blocks(p, rate, mono=False, block_seconds=2.0) for p in stems]
    buffers = [np.zeros((2, 0), np.float32) for _ in stems]
    with writing(output) as tmp, av.open(str(tmp), "w", format="wav") as dst:
        stream = dst.add_stream("pcm_s24le", rate=rate, layout="stereo")
        stream.codec_context.time_base = Fraction(1, rate)
        written = 0
        while written < total:
            n = min(rate, total - written)
            block = np.zeros((2, n), np.float32)
            for i, source in enumerate(sources):
                while buffers[i].shape[1] < n:
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    buffers[i] = np.concatenate([buffers[i], nxt], axis=1)
                take = buffers[i][:, :n]
                block[:, : take.shape[1]] += take
                buffers[i] = buffers[i][:, n:]
            over = np.abs(block) > 1.0
            clipped += int(over.any(axis=0).sum())
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            # pcm_s24le keeps the top 24 bits of s32 samples: scale to 24 bits, shift into place.
            pcm = (np.clip(block, -1, 1) * 8388607).astype(np.int32) << 8
            frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s32",
                                               layout="stereo")
            frame.sample_rate = rate
            frame.pts = written
            for packet in stream.encode(frame):
                dst.mux(packet)
            written += n
        for packet in stream.encode(None):
            dst.mux(packet)
    return StemMix(output, clipped, peak)
