"""Audio front end: PyAV decoding, the mel spectrogram and the chunk indices vs the fixtures."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import librosa
import numpy as np
import pytest

from lipdub.pipeline.audio import (
    SILENT_MEL,
    dub_mel,
    indiv_mel_start,
    load_audio,
    mel_chunk_start_at,
    mel_chunk_starts,
    mel_columns,
    melspectrogram,
    read_audio,
    read_pcm16_mono_16k,
    sync_mel_start,
    training_frames,
)
from lipdub.pipeline.errors import AudioError, MediaError

LJ_WAV = "audio/en_ljspeech_LJ001-0001__coqui.wav"


def fixture(parity_dir: Path, name: str) -> dict:
    with np.load(parity_dir / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def write_with_pyav(path: Path, signal: np.ndarray, rate: int, codec: str, fmt: str) -> None:
    """Encode (channels, n) float signal with PyAV (e.g. pcm_s24le, flac, aac)."""
    layout = "mono" if signal.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if fmt:
            stream.format = fmt
        frame = av.AudioFrame.from_ndarray(signal.astype(np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=rate)
        for converted in resampler.resample(frame):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


def sine(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * (440 + 110 * c) * t) for c in range(channels)])


# -- parity with the original Wav2Lip audio.py -------------------------------------------------


def test_mel_matches_reference(parity_dir):
    d = fixture(parity_dir, "audio_mel")
    mel = melspectrogram(d["wav_16k"])
    assert mel.shape == d["mel"].shape
    np.testing.assert_allclose(mel, d["mel"], atol=1e-5, rtol=0)
    # The reflect padding matters: librosa's default constant padding must NOT match the reference.
    assert np.abs(d["mel_librosa_default_constant_pad"] - d["mel"]).max() > 1e-2


@pytest.mark.parametrize("suffix", ["25", "30", "29_97", "23_976", "30000_1001", "24000_1001"])
def test_chunk_starts_match_inference_loop(parity_dir, suffix):
    d = fixture(parity_dir, "audio_mel")
    fps = float(d[f"fps_value_{suffix}"])
    starts = mel_chunk_starts(d["mel"].shape[1], fps)
    np.testing.assert_array_equal(starts, d[f"chunk_starts_fps{suffix}"])
    assert len(starts) == int(d[f"n_chunks_fps{suffix}"])
    np.testing.assert_array_equal(
        mel_chunk_starts(int(d["long_T"]), fps), d[f"long_chunk_starts_fps{suffix}"]
    )


def test_training_windows_keep_the_off_by_one(parity_dir):
    d = fixture(parity_dir, "audio_mel")
    frames = training_frames(d["mel"].shape[1])
    np.testing.assert_array_equal(frames, d["train_frames"])
    np.testing.assert_array_equal([sync_mel_start(f) for f in frames], d["train_sync_mel_start"])
    np.testing.assert_array_equal([indiv_mel_start(f) for f in frames], d["train_indiv_mel_start"])


def test_decoding_matches_librosa_load(parity_dir, media_dir):
    """PyAV decode + soxr_hq resampling gives the exact samples librosa.load gave the reference."""
    d = fixture(parity_dir, "audio_mel")
    np.testing.assert_array_equal(load_audio(media_dir / LJ_WAV), d["wav_16k"])


def test_syncnet_pcm16_matches_reference(parity_dir, media_dir):
    d = fixture(parity_dir, "mfcc")
    np.testing.assert_array_equal(read_pcm16_mono_16k(media_dir / LJ_WAV), d["pcm16"])


def test_timestamp_chunks_agree_with_constant_rate_loop():
    """At constant frame rates the timestamp rule lands on the reference's columns."""
    for fps in (25.0, 30.0, 24000 / 1001, 30000 / 1001):
        starts = mel_chunk_starts(9601, fps)[:-1]
        by_time = [mel_chunk_start_at(i / fps, 9601) for i in range(len(starts))]
        assert np.abs(np.array(by_time) - starts).max() <= 1  # only float-rounding ties differ
        assert np.mean(np.array(by_time) == starts) > 0.99


# -- decoding many formats ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "codec,fmt,suffix,rate,channels",
    [
        ("pcm_s16le", "s16", "wav", 16000, 1),
        ("pcm_s24le", "s32", "wav", 48000, 2),
        ("flac", "", "flac", 44100, 2),
        ("libmp3lame", "", "mp3", 22050, 1),
        ("aac", "", "m4a", 48000, 2),
    ],
)
def test_formats_decode_to_mono_16k(tmp_path, codec, fmt, suffix, rate, channels):
    signal = sine(rate, 1.0, channels)
    path = tmp_path / f"tone.{suffix}"
    write_with_pyav(path, signal, rate, codec, fmt)
    audio = read_audio(path)
    assert audio.sample_rate == 16000 and audio.source_rate == rate
    assert audio.source_channels == channels
    expected = librosa.resample(signal.mean(axis=0), orig_sr=rate, target_sr=16000)
    lossy = codec in ("libmp3lame", "aac")
    # Lossy codecs add encoder delay/padding; compare the level and the spectrum peak instead.
    if lossy:
        assert abs(len(audio.samples) - len(expected)) < 0.1 * 16000
        assert abs(np.std(audio.samples) - np.std(expected)) < 0.05
        # The strongest parts of the spectrum are the channels' tones, each of them, where
        # they were (a wrong rate or channel mix moves or loses one).
        spectrum = np.abs(np.fft.rfft(audio.samples * np.hanning(len(audio.samples))))
        freqs = np.fft.rfftfreq(len(audio.samples), 1 / 16000)
        strong = freqs[spectrum > 0.3 * spectrum.max()]
        tones = np.array([440 + 110 * c for c in range(channels)])
        assert all(np.abs(tones - f).min() < 5 for f in strong), strong
        assert all(np.abs(strong - t).min() < 5 for t in tones), strong
    else:
        assert len(audio.samples) == len(expected)
        np.testing.assert_allclose(audio.samples, expected, atol=1e-4)


def test_video_container_audio(media_dir):
    audio = read_audio(media_dir / "video/talkinghead_woman_flag__vretalk_face3.mp4")
    assert audio.source_rate == 44100 and audio.source_channels == 2
    assert 4.9 < audio.duration < 5.2


def test_bad_audio_inputs(tmp_path, media_dir):
    with pytest.raises(MediaError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    with pytest.raises(MediaError, match="notes.wav"):
        read_audio(text)
    with pytest.raises(AudioError, match="no audio stream"):
        read_audio(media_dir / "video/talkinghead_man_selfie_NO_AUDIO_STREAM__liveportrait_d13.mp4")
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(empty)


# -- a dub's mel, silence after it --------------------------------------------------------------


def test_dub_mel_is_the_references_then_silence(media_dir):
    path = media_dir / "audio" / "en_vctk_p240__rtvc.mp3"
    dub = dub_mel(path)
    samples = read_audio(path).samples
    assert dub.duration == pytest.approx(len(samples) / 16000)
    # The dub's own mel, as the reference takes it (reflect padding at its end included)...
    np.testing.assert_array_equal(dub.mel, melspectrogram(samples))
    n = dub.mel.shape[1]
    assert n == mel_columns(len(samples))
    # ...then silence: the columns that zero samples after the dub give, once past the STFT
    # window's reach (n_fft/2 = 400 samples = 2 columns, plus the pre-emphasis tap).
    mel = dub.with_columns(n + 240)
    padded = melspectrogram(np.concatenate([samples, np.zeros(16000 * 4, np.float32)]))
    assert mel.shape[1] == n + 240
    np.testing.assert_array_equal(mel[:, n:], SILENT_MEL)
    np.testing.assert_allclose(padded[:, n + 3 : n + 240], SILENT_MEL, atol=1e-6)
    assert dub.with_columns(10) is dub.mel  # a shorter picture needs nothing added


def test_a_stem_mel_kept_in_blocks_is_the_whole_stems_mel(media_dir, tmp_path):
    """The film path's stem mel (computed block by block in a child process, then memory-mapped)
    equals the mel of the whole stem taken at once, the reference's, to float rounding."""
    from lipdub.pipeline.stem_mel import stem_mel, stem_mel_path, write_stem_mel
    from lipdub.pipeline.stems import analyse_stem

    stem = analyse_stem("anna", media_dir / "audio" / "en_ljspeech_LJ001-0001__coqui.wav",
                        tmp_path)
    whole = melspectrogram(stem.samples())
    assert whole.shape[1] > 700
    # Small blocks (and one ending a column short of the last) against the whole.
    write_stem_mel(stem.samples_path, tmp_path / "blocks.npy", block=97)
    np.testing.assert_allclose(np.load(tmp_path / "blocks.npy"), whole, rtol=0, atol=2e-5)
    kept = stem_mel(stem.samples_path)  # computed by a child process
    assert stem_mel_path(stem.samples_path).exists() and isinstance(kept, np.memmap)
    np.testing.assert_allclose(kept, whole, rtol=0, atol=2e-5)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
