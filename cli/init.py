"""``lipdub init``: a commented job spec for a film, filled with what the film says of itself.

Usage::

    lipdub init reel1.mov --stem alice=alice_de.wav --stem bob=bob_de.wav -o reel1.yaml
    lipdub dub reel1.yaml

The film is probed (picture span, frame rate, timecode, audio streams) and the stems are checked
against its pictures before anything is written, as ``lipdub dub`` would check them; paths in the
job are written relative to the job's folder, so the folder can move with its media.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``init`` command."""
    p = subparsers.add_parser(
        "init", help="write a job spec for a film (then: lipdub dub JOB)",
        description="Write a commented job spec for FILM with one dubbed stem per character, "
        "checked against the film's pictures.")
    p.add_argument("film", type=Path, help="the picture (its original audio guides routing)")
    p.add_argument("--stem", action="append", default=[], metavar="NAME=PATH", required=True,
                   help="a character's dubbed dialogue stem (repeat for each character)")
    p.add_argument("--generator", default="wav2lip_gan",
                   help="generator checkpoint: a registry name or a file (default wav2lip_gan)")
    p.add_argument("--output", type=Path, default=None,
                   help="the dubbed film (default: FILM's name + _dub.mov beside the job)")
    p.add_argument("-o", "--job", type=Path, required=True, help="the job spec to write (.yaml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing job spec")
    return p


def _stems(pairs: list[str]) -> dict[str, Path]:
    from lipdub.pipeline.errors import LipdubError

    stems: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise LipdubError(f"--stem {pair!r}: give NAME=PATH, e.g. --stem alice=alice_de.wav")
        if name in stems:
            raise LipdubError(f"--stem: character {name!r} is given twice")
        stems[name.strip()] = Path(path.strip())
    return stems


def _relative(path: Path, folder: Path) -> str:
    """``path`` as the job will say it: relative to the job's folder (absolute elsewhere)."""
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _film_facts(film: Path) -> list[str]:
    """Comment lines: the picture's span, rate and timecode, and the audio streams."""
    from lipdub.pipeline.job import picture_duration
    from lipdub.pipeline.media.decode import open_media, probe_video
    from lipdub.pipeline.media.timecode import read_timecode

    info = probe_video(film)
    seconds = picture_duration(film)
    rate = float(info.average_rate) if info.average_rate else 0.0
    timecode = read_timecode(film)
    facts = [f"picture: {info.width}x{info.height} {info.codec} {info.pix_fmt}, "
             f"{seconds:.3f} s ({info.frame_count or round(seconds * rate)} frames) at "
             f"{rate:.3f} fps" + (f", starting at timecode {timecode.text}" if timecode else "")]
    with open_media(film) as container:
        audio = container.streams.audio
        if not audio:
            facts.append("audio: none (routing cannot hear who speaks: give "
                         "original_dialogue, or overrides)")
        for i, stream in enumerate(audio):
            ctx = stream.codec_context
            facts.append(f"audio stream {i}: {ctx.name}, {ctx.layout.name}, {ctx.sample_rate} Hz")
    return facts


TEMPLATE = """\
# A lipdub film job, written by `lipdub init` (paths relative to this file).
{facts}film: {film}
# One dubbed dialogue stem per character, aligned to the film's first picture, at least as long.
stems:
{stems}# original_dialogue: dialogue_en.wav     # the original-language dialogue stem (default: the
#                                        # film's own audio tells routing who speaks where)
output:
  path: {output}
  codec: {codec}                            # h264 | h265 (review), ffv1 (.mkv), prores_hq, ...
  overwrite: false
  qc: true                               # QC report beside the output
checkpoints:
  generator: {generator}
  detector: retinaface_mobilenet0.25     # ships with lipdub
  # expert: lipsync_expert               # judges who speaks against the original audio
# shots: [12.48, 20.0]                   # cut times in seconds from the first picture; default:
#                                        # detected
overrides: []                            # routing decisions to force, e.g.
#  - character: alice
#    shot: 3
#    face: {{index: 1}}                  # the second face from the left
settings: {{}}                             # see configs/pipeline/example_job.yaml
"""


def run(args: argparse.Namespace) -> int:
    from lipdub.pipeline.errors import LipdubError
    from lipdub.pipeline.job import JobSpecError, check_job_inputs, parse_job
    from lipdub.pipeline.media.decode import require_file
    from lipdub.pipeline.media.profiles import resolve_profile
    from lipdub.pipeline.partial_files import writing

    job_path: Path = args.job
    if job_path.suffix.lower() not in (".yaml", ".yml"):
        raise LipdubError(f"{job_path}: a job spec is a .yaml file")
    if job_path.exists() and not args.overwrite:
        raise LipdubError(f"{job_path}: already exists; pass --overwrite to replace it")
    folder = job_path.parent if str(job_path.parent) else Path(".")
    if not folder.is_dir():
        raise LipdubError(f"{folder}: the job's folder does not exist")
    film = require_file(args.film, "film")
    stems = {name: require_file(path, f"stem {name}") for name, path in _stems(args.stem).items()}
    output = args.output or folder / f"{film.stem}_dub.mov"
    generator = args.generator
    if Path(generator).suffix in (".pth", ".pt", ".tar"):
        generator = _relative(Path(generator), folder)
    text = TEMPLATE.format(
        facts="".join(f"# {line}\n" for line in _film_facts(film)),
        film=_relative(film, folder),
        stems="".join(f"  {name}: {_relative(path, folder)}\n" for name, path in stems.items()),
        output=_relative(output, folder),
        codec=resolve_profile(None, output.suffix.lower()).name,  # the container's default
        generator=generator)
    missing_generator = ""
    try:  # the checks `lipdub dub` makes first: stems against the pictures, the output's codec
        check_job_inputs(parse_job(text, base=folder), source=str(job_path))
    except JobSpecError as exc:
        # A generator not downloaded yet is the one thing the job may still lack.
        problems = [p for p in exc.problems if not p.startswith("checkpoints.generator")]
        if problems:
            raise JobSpecError(str(job_path), problems) from None
        missing_generator = next(p for p in exc.problems if p.startswith("checkpoints."))
    with writing(job_path) as tmp:
        tmp.write_text(text)
    print(f"wrote {job_path}")
    if missing_generator:
        print(f"before dubbing: {missing_generator} (see `lipdub weights list`)")
    print(f"next: lipdub dub {job_path}")
    return 0
