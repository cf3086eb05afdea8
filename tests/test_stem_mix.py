"""Summing the stems never clips silently (issue 13, item 5 in part)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from lipdub.pipeline.stems import mix_stems


def _tone(path, level, rate=48000, seconds=1.0):
    t = np.arange(int(rate * seconds)) / rate
    # Stereo, so that no pan law (mono is spread at -3 dB per side) changes the level.
    tone = (level * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    pcm = np.repeat(tone, 2)[None]  # interleaved L R
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_clipping_is_counted_and_the_peak_reported(tmp_path):
    loud = [_tone(tmp_path / f"loud{i}.wav", 0.7) for i in range(2)]
    mix = mix_stems(loud, tmp_path / "loud_mix.wav", 1.0)
    assert mix.peak == pytest.approx(1.4, abs=0.01)
    # Samples of a sine at 1.4 over full scale: |sin| > 1/1.4 for 1 - 2*asin(1/1.4)/pi of it.
    expected = (1 - 2 * np.arcsin(1 / 1.4) / np.pi) * 48000
    assert mix.clipped_samples == pytest.approx(expected, rel=0.02)
    quiet = [_tone(tmp_path / f"quiet{i}.wav", 0.3) for i in range(2)]
    mix = mix_stems(quiet, tmp_path / "quiet_mix.wav", 1.0)
    assert mix.clipped_samples == 0 and mix.peak == pytest.approx(0.6, abs=0.01)
    assert [p.name for p in tmp_path.glob(".*")] == []  # no temporary left
