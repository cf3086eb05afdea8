"""QC with a trained expert finds a deliberately shifted audio track (issue: mastering and QC).

Synthetic weights cannot judge sync, so this uses the synthetic talking-mouth expert
(``synthetic_expert`` in conftest.py: trained by the test session in about two minutes, or the
one ``benchmarks/train_synthetic.py`` trains, given as ``LIPDUB_SYNTHETIC_EXPERT``).

The clip is a held-out identity (a seed the dataset never drew) speaking a held-out recording
(the dataset's validation audio), rendered exactly as the training data is; QC measures it
against its own audio delayed or advanced by a few frames.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lipdub.pipeline.audio import SAMPLE_RATE
from lipdub.pipeline.qc.checks import QCSegment, QCSettings, run_qc

pytestmark = pytest.mark.slow  # the session trains its expert once (about two minutes)

FPS = 25
SECONDS = 8.0
HELD_OUT_AUDIO = "speech_48k_stereo__vretalk_audio2.wav"  # the dataset's validation recording


@pytest.fixture(scope="module")
def talking_clip(media_dir: Path, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """(video of a synthetic face speaking the held-out recording, its 16 kHz samples)."""
    from lipdub.pipeline.audio import read_audio
    from lipdub.training.synthetic import (
        normalise_level,
        openings_from_audio,
        random_identity,
        render_face,
        shapes_from_audio,
    )

    samples = normalise_level(read_audio(media_dir / "audio" / HELD_OUT_AUDIO).samples)
    samples = samples[: int(SECONDS * SAMPLE_RATE)]
    n = int(len(samples) / SAMPLE_RATE * FPS)
    openings = openings_from_audio(samples, n, FPS)
    shapes = shapes_from_audio(samples, n, FPS)
    rng = np.random.default_rng(20261129)
    ident = random_identity(rng)
    path = tmp_path_factory.mktemp("qc_expert") / "face.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width = stream.height = 96
        stream.pix_fmt = "bgr0"
        stream.time_base = Fraction(1, FPS)
        for k in range(n):
            image = render_face(ident, openings[k], noise=2.0, rng=rng, shape=shapes[k])
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path, samples


def _shifted_wav(samples: np.ndarray, frames: int, path: Path) -> Path:
    """The samples played ``frames`` pictures late (negative: early), same length."""
    from lipdub.training.prepare import write_wav

    shift = int(round(frames / FPS * SAMPLE_RATE))
    if shift >= 0:
        moved = np.concatenate([np.zeros(shift, np.float32), samples[: len(samples) - shift]])
    else:
        moved = np.concatenate([samples[-shift:], np.zeros(-shift, np.float32)])
    write_wav(path, moved)
    return path


@pytest.mark.parametrize("shift", [0, 4, -4])
def test_expert_qc_finds_the_shift(talking_clip, synthetic_expert, tmp_path: Path,
                                   shift: int) -> None:
    video, samples = talking_clip
    n = int(len(samples) / SAMPLE_RATE * FPS)
    audio = _shifted_wav(samples, shift, tmp_path / "dub.wav")
    segment = QCSegment("face", 0, 0, n, {k: (0, 0, 96, 96) for k in range(n)})
    report = run_qc(video, audio, [segment], [(0, 0, n)], tmp_path / "qc",
                    expert=str(synthetic_expert), settings=QCSettings(max_offset_frames=1),
                    loudness=False)
    measured = report["shots"][0]["segments"][0]
    sync = measured["sync"]
    assert sync["measured"] and sync["metric"] == "expert"
    # syncnet_python's convention (offset = vshift - best audio index): audio played k pictures
    # late matches best k windows further on, so the offset is -k. Within one frame of that.
    assert abs(sync["offset_frames"] + shift) <= 1, sync
    flagged = any("A/V offset" in f for f in measured["flags"])
    assert flagged == (abs(shift) > 1), measured["flags"]
