"""Job checks that measure the film: stems are aligned to the first picture, so they must cover
the pictures, not the container (audio may start before the first picture)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from filmmaker import encode_mono, write_stem

from lipdub.pipeline.job import JobSpecError, check_job_inputs, parse_job, picture_duration

FPS = 25


def late_picture_film(path: Path, picture_seconds: float, audio_lead: float) -> Path:
    """An MP4 whose audio starts ``audio_lead`` seconds before its first picture."""
    rate = 48000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout="mono")
        first = round(audio_lead * FPS)
        for i in range(round(picture_seconds * FPS)):
            picture = np.full((180, 320, 3), (i * 3) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = first + i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = 0.1 * np.sin(np.arange(int((audio_lead + picture_seconds) * rate)) / 9)
        encode_mono(out, sound, samples, rate)
    return path


def test_stems_cover_the_pictures_not_the_container(tmp_path, synthetic_generator,
                                                    detector_weights):
    film = late_picture_film(tmp_path / "camera.mp4", 9.2, 0.85)
    assert picture_duration(film) == pytest.approx(9.2, abs=0.05)
    exact = write_stem(tmp_path / "anna.wav", [], 9.2)  # exactly as long as the pictures
    job = {"film": str(film), "stems": {"anna": str(exact)},
           "output": {"path": str(tmp_path / "out.mp4")},
           "checkpoints": {"generator": str(synthetic_generator),
                           "detector": str(detector_weights)}}
    check_job_inputs(parse_job(job))  # accepted (it was refused: "the film lasts 10.05 s")
    short = write_stem(tmp_path / "short.wav", [], 8.0)
    with pytest.raises(JobSpecError, match=r"short\.wav lasts 8\.00 s but the film's pictures "
                                           r"last 9\.2\d s"):
        check_job_inputs(parse_job({**job, "stems": {"anna": str(short)}}))
