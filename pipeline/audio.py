"""Audio front end: decoding through PyAV, Wav2Lip's mel spectrogram and its per-frame chunks.

The numbers follow ``docs/wav2lip_spec.md`` §1 exactly (the parity tests check them):
the released models were trained on a reflect-padded STFT, which librosa >= 0.9 no longer does by
default, so the padding is passed explicitly here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import librosa
import numpy as np

from lipdub.pipeline.errors import AudioError, MediaError
from lipdub.pipeline.media.decode import open_media

SAMPLE_RATE = 16000
N_FFT = 800
HOP_SIZE = 200  # 12.5 ms: 80 mel frames per second
WIN_SIZE = 800
NUM_MELS = 80
FMIN, FMAX = 55, 7600
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20
MIN_LEVEL_DB = -100
MAX_ABS_VALUE = 4.0
MEL_STEP_SIZE = 16  # one chunk = 16 mel frames = 0.2 s
MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP_SIZE


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio.

    Attributes:
        samples: (N,) float32 in [-1, 1] at ``sample_rate``.
        sample_rate: rate of ``samples``.
        start_time: presentation time of the first sample in its container, in seconds
            (non-zero for some MP4s; needed to keep A/V alignment).
        source_rate: the stream's own sample rate.
        source_channels: the stream's own channel count.
    """

    samples: np.ndarray
    sample_rate: int
    start_time: float
    source_rate: int
    source_channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def read_audio(path: str | Path, sample_rate: int | None = SAMPLE_RATE) -> Audio:
    """Decode the first audio stream of any audio or video file to mono float32.

    Channels are averaged and the result resampled with soxr 'HQ', as ``librosa.load`` does, so
    the samples equal what the original Wav2Lip code feeds its mel spectrogram.

    Arguments:
        path: wav (16/24/32-bit), flac, mp3, aac/mp4, or any container PyAV opens.
        sample_rate: target rate, or None to keep the stream's rate.

    Returns:
        An :class:`Audio`.

    Raises:
        MediaError: missing or unreadable file.
        AudioError: no audio stream, or no samples in it.
    """
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.audio:
            raise AudioError(f"{path}: has no audio stream; give the dub audio as a separate file")
        stream = container.streams.audio[0]
        # Convert only the sample format (keep rate and layout): s16 -> float is x / 32768.
        to_float = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        start_time = None
        try:
            for frame in container.decode(stream):
                if start_time is None and frame.pts is not None:
                    start_time = float(frame.pts * frame.time_base)
                for converted in to_float.resample(frame):
                    chunks.append(converted.to_ndarray())
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: audio could not be decoded ({exc.strerror or exc})") from exc
        source_rate = stream.rate or stream.codec_context.sample_rate
        channels = stream.channels or (chunks[0].shape[0] if chunks else 0)
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise AudioError(f"{path}: the audio stream holds no samples (empty or zero-length audio)")
    planar = np.concatenate(chunks, axis=1)
    mono = planar.mean(axis=0) if planar.shape[0] > 1 else planar[0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    rate = source_rate
    if sample_rate is not None and sample_rate != source_rate:
        mono = librosa.resample(
            mono, orig_sr=source_rate, target_sr=sample_rate, res_type="soxr_hq"
        )
        rate = sample_rate
    return Audio(mono, rate, start_time or 0.0, source_rate, channels)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` (the equivalent of ``librosa.load``)."""
    return read_audio(path, sample_rate).samples


def iter_pcm16_mono_16k(path: str | Path) -> Iterator[np.ndarray]:
    """int16 mono 16 kHz chunks, as syncnet_python's ``ffmpeg -ac 1 -ar 16000`` step makes them.

    libswresample does the down-mix and the resampling here (not soxr), because the LSE metric's
    MFCCs are sensitive to the resampler (see the parity fixtures' README).
    """
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.audio:
            raise AudioError(f"{path}: has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for f in resampler.resample(frame):
                    yield f.to_ndarray().reshape(-1).astype(np.int16)
            for f in resampler.resample(None):
                yield f.to_ndarray().reshape(-1).astype(np.int16)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: audio could not be decoded ({exc.strerror or exc})") from exc


def read_pcm16_mono_16k(path: str | Path) -> np.ndarray:
    """All of :func:`iter_pcm16_mono_16k` as one array."""
    chunks = list(iter_pcm16_mono_16k(path))
    if not chunks:
        raise AudioError(f"{path}: the audio stream holds no samples")
    return np.concatenate(chunks)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=NUM_MELS, fmin=FMIN, fmax=FMAX)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram of 16 kHz mono samples.

    Arguments:
        wav: (N,) samples at 16 kHz.

    Returns:
        (80, 1 + N // 200) float32 in [-4, 4]; rows are mel bins (low to high), columns time.
    """
    # Imported here: scipy.signal costs 0.6 s of start-up that `lipdub sync` leaves to its child.
    from scipy.signal import lfilter

    wav = np.asarray(wav, dtype=np.float64)
    emphasised = lfilter([1.0, -PREEMPHASIS], [1.0], wav)
    spectrum = np.abs(
        librosa.stft(
            y=emphasised, n_fft=N_FFT, hop_length=HOP_SIZE, win_length=WIN_SIZE, pad_mode="reflect"
        )
    )
    mel = np.dot(_mel_basis(), spectrum)
    db = 20 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    normalised = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    out = np.clip(normalised, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)
    if np.isnan(out).any():
        raise AudioError("mel spectrogram contains NaN (add a little noise to synthetic audio)")
    return out


# A mel column whose STFT window holds only zeros: log floor, normalised and clipped.
SILENT_MEL = -MAX_ABS_VALUE


@dataclass(frozen=True)
class DubMel:
    """A dub's mel spectrogram, followed by silence for as long as the picture needs.

    Attributes:
        mel: (80, N) of the dub's 16 kHz samples alone, as the reference takes it (its last
            columns see the STFT's reflect padding, not silence).
        duration: the dub's own length in seconds.
    """

    mel: np.ndarray
    duration: float

    def with_columns(self, columns: int) -> np.ndarray:
        """The mel with at least ``columns`` columns: silent columns appended past the dub."""
        return with_silence(self.mel, columns)


def with_silence(mel: np.ndarray, columns: int) -> np.ndarray:
    """``mel`` with silent columns appended up to ``columns`` (itself when long enough)."""
    missing = columns - mel.shape[1]
    if missing <= 0:
        return mel
    return np.concatenate([mel, np.full((mel.shape[0], missing), SILENT_MEL, np.float32)],
                          axis=1)


def dub_mel(path: str | Path) -> DubMel:
    """Decode a dub and take its mel (the generator's audio input).

    Raises:
        MediaError, AudioError: as :func:`read_audio`.
    """
    audio = read_audio(path)
    return DubMel(melspectrogram(audio.samples), audio.duration)


def mel_columns(n_samples: int) -> int:
    """Columns of the mel of ``n_samples`` samples (a centred STFT: one per hop, plus one)."""
    return 1 + n_samples // HOP_SIZE


def constant_frame_rate(seconds: np.ndarray, rate: float | None) -> float | None:
    """``rate`` when every frame lasts 1/rate (to within 1 % of a frame), else None (VFR)."""
    if not rate or len(seconds) < 2:
        return float(rate) if rate else None
    steps = np.diff(seconds)
    return float(rate) if np.all(np.abs(steps * rate - 1.0) < 0.01) else None


def frame_mel_starts(seconds: np.ndarray, dub_columns: int, fps: float | None) -> np.ndarray:
    """Start column of every frame's 16-column mel window, as the reference picks them.

    Arguments:
        seconds: every frame's time from the first picture.
        dub_columns: columns of the dub's own mel (:func:`mel_columns`).
        fps: the picture's frame rate when it is constant (:func:`constant_frame_rate`).

    At a constant frame rate, frame i starts at ``int(i * (80. / fps))``: the reference's literal
    float expression, whose truncation differs from ``floor(t * 80)`` at some frames (164 in
    200,000 at 23.976 fps). The reference has no variable-frame-rate rule, so there each frame's
    own timestamp decides: ``floor(t * 80)``. Either way, the first window that would run past
    the dub's last column is clamped to the last 16 columns (the reference's final chunk);
    frames after it, which the reference drops (it cuts the picture to the dub), start where the
    rule puts them, in the silence after the dub: their mouths close (lipdub's rule).

    Returns:
        (frames,) int64.
    """
    if fps:
        starts = (np.arange(len(seconds), dtype=np.float64)
                  * (MEL_FRAMES_PER_SECOND / fps)).astype(np.int64)
    else:
        starts = np.floor(np.asarray(seconds, np.float64) * MEL_FRAMES_PER_SECOND
                          + 1e-9).astype(np.int64)
    over = np.flatnonzero(starts + MEL_STEP_SIZE > dub_columns)
    if len(over):
        starts[over[0]] = max(dub_columns - MEL_STEP_SIZE, 0)
    return starts


def mel_chunk_starts(n_mel_frames: int, fps: float) -> np.ndarray:
    """Start column of each mel chunk, exactly as the reference ``inference.py`` cuts them.

    Chunk i starts at ``int(i * (80. / fps))`` (that literal float expression: it rounds
    differently from ``int(80 * i / fps)`` at some i), until a chunk would run past the end;
    then one extra chunk covering the last 16 columns is added. This is the constant-frame-rate
    special case; :func:`mel_chunk_start_at` handles real timestamps.

    Returns:
        (n_chunks,) int64; n_chunks is the reference's number of output frames.
    """
    step = MEL_FRAMES_PER_SECOND / fps
    count = max(0, int(np.ceil((n_mel_frames - MEL_STEP_SIZE + 1) / step)) + 2)
    starts = (np.arange(count, dtype=np.float64) * step).astype(np.int64)
    starts = starts[starts + MEL_STEP_SIZE <= n_mel_frames]
    return np.append(starts, n_mel_frames - MEL_STEP_SIZE).astype(np.int64)


def mel_chunk_start_at(time_seconds: float, n_mel_frames: int) -> int:
    """Start column of the chunk for a frame shown at ``time_seconds`` (clamped to the mel)."""
    start = int(np.floor(time_seconds * MEL_FRAMES_PER_SECOND + 1e-9))
    return int(min(max(start, 0), max(n_mel_frames - MEL_STEP_SIZE, 0)))


def training_frames(n_mel_frames: int, fps: float = 25.0) -> np.ndarray:
    """Frame indices f >= 1 whose 16-column expert window (starting at frame f) fits the mel."""
    frames = np.arange(1, int(n_mel_frames / MEL_FRAMES_PER_SECOND * fps) + 2)
    frames = frames[[sync_mel_start(int(f), fps) + MEL_STEP_SIZE <= n_mel_frames for f in frames]]
    return frames.astype(np.int64)


def sync_mel_start(frame: int, fps: float = 25.0) -> int:
    """Training: the expert's mel window for a 5-frame window starting at ``frame``."""
    return int(MEL_FRAMES_PER_SECOND * (frame / float(fps)))


def indiv_mel_start(frame: int, fps: float = 25.0) -> int:
    """Training: the generator's per-frame mel for ``frame``; one frame EARLIER than inference.

    The original's "+1 (0->1 indexing)" then "-2" leaves this offset (spec §1.5); trained models
    expect it, so training reproduces it.
    """
    return int(MEL_FRAMES_PER_SECOND * ((frame - 1) / float(fps)))
