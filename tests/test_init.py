"""`lipdub init`: a job spec written from the film's own facts, checked before it is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filmmaker import write_stem

from lipdub.cli.main import main
from lipdub.pipeline.job import parse_job

FILM = "video/talkinghead_woman_flag__vretalk_face3.mp4"  # 125 frames at 25 fps, AAC stereo


def test_init_writes_a_job_that_dub_accepts(media_dir, tmp_path, capsys, synthetic_generator):
    stems = tmp_path / "stems"
    stems.mkdir()
    anna = write_stem(stems / "anna_de.wav", [], 5.0)
    ben = write_stem(stems / "ben_de.wav", [], 5.0)
    job = tmp_path / "jobs" / "reel.yaml"
    job.parent.mkdir()
    generator = job.parent / "wav2lip_gan.pth"  # beside the job; the tests run elsewhere
    shutil.copy(synthetic_generator, generator)
    film = media_dir / FILM
    assert main(["init", str(film), "--stem", f"anna={anna}", "--stem", f"ben={ben}",
                 "--generator", str(generator), "-o", str(job)]) == 0
    out = capsys.readouterr().out
    assert f"next: lipdub dub {job}" in out
    assert "before dubbing" not in out, out  # nothing left to fix
    text = job.read_text()
    assert "# picture: 590x590 h264 yuv420p, 5.000 s (125 frames) at 25.000 fps" in text
    assert "# audio stream 0: aac, stereo, 44100 Hz" in text
    assert "stems/anna_de.wav" in text and str(tmp_path) not in text  # relative to the job
    spec = parse_job(job)
    assert spec.film.resolve() == film.resolve()
    assert {c: p.resolve() for c, p in spec.stems.items()} == {"anna": anna.resolve(),
                                                                "ben": ben.resolve()}
    assert spec.output.path.resolve() == job.parent.resolve() / (film.stem + "_dub.mov")
    # The checkpoint written relative to the job is found from the job's folder too.
    assert "generator: wav2lip_gan.pth" in text
    assert Path(spec.checkpoints.generator).resolve() == generator.resolve()
    # Never over a job already there, unless told.
    assert main(["init", str(film), "--stem", f"anna={anna}", "-o", str(job)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert "ben" in job.read_text()


@pytest.mark.parametrize("stem_arg, message", [
    ("short", "stems.anna"),
    ("anna", "NAME=PATH"),
    ("missing", "not found"),
])
def test_init_refuses_what_dub_would_refuse_and_writes_nothing(media_dir, tmp_path, capsys,
                                                               stem_arg, message):
    short = write_stem(tmp_path / "short.wav", [], 2.0)
    arg = {"short": f"anna={short}", "anna": "anna",
           "missing": f"anna={tmp_path / 'nope.wav'}"}[stem_arg]
    job = tmp_path / "job.yaml"
    assert main(["init", str(media_dir / FILM), "--stem", arg, "-o", str(job)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lipdub: error:") and "\n" not in err and message in err, err
    assert not job.exists() and not list(tmp_path.glob(".*"))
