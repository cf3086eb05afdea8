"""The film job spec: what to dub, with which stems, where to write it (YAML, checked by pydantic).

Example (``configs/pipeline/example_job.yaml`` has every key)::

    film: reels/reel1.mov
    stems:                      # one dubbed dialogue stem per character, aligned to frame 1
      alice: stems/alice_de.wav
      bob: stems/bob_de.wav
    output: {path: out/reel1_de.mov}
    checkpoints: {generator: wav2lip_gan}

Every problem is reported at once (:class:`JobSpecError` lists them, each naming its key and
file), before any heavy work starts. Relative paths are taken from the job file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lipdub.pipeline import contract, defaults
from lipdub.pipeline.errors import LipdubError


class JobSpecError(LipdubError):
    """A job spec with one or more problems; ``problems`` lists them."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listing = "; ".join(problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the job spec: {listing}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaceChoice(_Strict):
    """Which face of a shot a character is: the N-th from the left, or the one at a point."""

    index: int | None = Field(default=None, ge=0)
    point: tuple[float, float] | None = None


class Override(_Strict):
    """Routing override: this character is this face, in this shot or time range."""

    character: str
    shot: int | None = Field(default=None, ge=0, description="shot index (from 0)")
    start: float | None = Field(default=None, ge=0, description="seconds from the first frame")
    end: float | None = Field(default=None, ge=0)
    face: FaceChoice | None = None
    off_screen: bool = Field(default=False, description="never sync this character here")


class OutputSpec(_Strict):
    path: Path
    codec: str | None = Field(default=None,
                              description="output profile (lipdub.pipeline.media.profiles)")
    overwrite: bool = False
    audio: Path | None = Field(default=None, description="dub mix to mux (default: stems mixed)")
    qc: bool = Field(default=True, description="write the QC report beside the output")
    qc_fail_on: Literal["never", "flagged"] = Field(
        default="never", description="flagged: a film whose QC flags shots ends as a Failed run "
        "(the output is still written); never: it ends Completed, named after the verdict")

    @field_validator("codec")
    @classmethod
    def _profile(cls, codec: str | None) -> str | None:
        from lipdub.pipeline.media.profiles import PROFILES

        if codec is not None and codec not in PROFILES:
            raise ValueError(f"unknown output codec {codec!r}; choose one of {', '.join(PROFILES)}")
        return codec


class Checkpoints(_Strict):
    generator: str
    expert: str | None = None
    detector: str | None = None
    lse: str | None = Field(default=None, description="syncnet_v2 weights, for QC's LSE")


class Settings(_Strict):
    """Lip-sync settings shared by every segment (see ``lipdub sync --help``)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "min_route_score" in data:
            raise ValueError("min_route_score is gone: routing now judges faces against the "
                             "original audio; use route_min_z (default 2.0) and route_margin_z")
        return data

    pads: tuple[int, int, int, int] = defaults.PADS
    batch_size: int | None = Field(default=None, ge=1)  # None: defaults.GPU_BATCH / CPU_BATCH
    device: str = defaults.DEVICE
    precision: Literal["fp32", "bf16", "fp16"] | None = None
    smooth_window: int = Field(default=defaults.SMOOTH_WINDOW, ge=1)
    detect_every: int = Field(
        default=defaults.DETECT_EVERY, ge=2, multiple_of=2,
        description="film tracking detects faces on every N-th frame (and where faces move); "
        "mouth motion is measured on every 2nd frame, so N is even")
    detect_size: int = Field(default=defaults.DETECT_SIZE, ge=64)
    shot_threshold: float = Field(default=27.0, gt=0)
    min_segment: float = Field(default=0.3, ge=0, description="shortest speech segment, s")
    route_min_z: float = Field(
        default=2.0, gt=0,
        description="least evidence that a face speaks in the original audio (a z-score of its "
        "mouth motion against the original's loudness, see lipdub.pipeline.routing) to sync it")
    route_margin_z: float = Field(
        default=1.5, ge=0,
        description="among several faces: how far the chosen face must lead the next (z)")
    expert_lone_min: float = Field(
        default=0.1,
        description="with checkpoints.expert: least expert confidence to sync a face alone on "
        "screen (expert units, see expert_margin)")
    expert_margin: float = Field(
        default=0.05, ge=0,
        description="with checkpoints.expert: how much more in sync with the original audio "
        "the chosen face must be than the next one (expert confidence units)")
    match_colour: bool = defaults.MATCH_COLOUR
    accept_damaged: bool = Field(
        default=False, description="go on past a damaged film (pictures the decoder had to "
        "conceal, a file that ends before its announced count) instead of refusing it; every "
        "affected frame is listed in the run summary, the log and QC")


class Distribute(_Strict):
    """Fan-out of tracking and lip sync over the render farm's chunk workers (lipdub serve)."""

    mode: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: fan out when chunk workers are online; on: must; "
        "off: this machine does all (the work_dir must be shared by every machine otherwise)")
    chunk_seconds: float = Field(
        default=60.0, gt=0, description="picture per chunk, s: small chunks spread better and "
        "cost less to redo; each also loads the models once")


class JobSpec(_Strict):
    film: Path
    stems: dict[str, Path] = Field(min_length=1)
    original_dialogue: Path | None = Field(
        default=None, description="the original-language dialogue stem, aligned to the film's "
        "first picture: routing hears who speaks in it (default: the film's own audio)")
    output: OutputSpec
    checkpoints: Checkpoints
    shots: list[float] | None = Field(default=None, description="cut times (s); default: detect")
    overrides: list[Override] = Field(default_factory=list)
    settings: Settings = Field(default_factory=Settings)
    work_dir: Path | None = Field(default=None, description="cache (default beside the output)")
    distribute: Distribute = Field(default_factory=Distribute)
    consent: str | None = Field(default=None, description="rights/consent note, carried along")

    @field_validator("stems")
    @classmethod
    def _names(cls, stems: dict[str, Path]) -> dict[str, Path]:
        for name in stems:
            if not re.fullmatch(contract.CHARACTER_NAME, name):
                raise ValueError(f"character name {name!r}: {contract.CHARACTER_NAME_RULE}")
        return stems

    def resolved(self, base: Path) -> JobSpec:
        """A copy with every relative path taken from ``base`` (the job file's folder)."""
        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else base / p)

        def weights(value: str | None) -> str | None:
            # A checkpoint is a registry name or a file: a file beside the job is taken from
            # there, as every other path of the job (`lipdub init` writes them relative).
            if value is None or Path(value).is_absolute() or not (base / value).is_file():
                return value
            return str(base / value)

        checkpoints = self.checkpoints.model_copy(update={
            key: weights(getattr(self.checkpoints, key))
            for key in ("generator", "expert", "detector", "lse")})
        return self.model_copy(update={
            "checkpoints": checkpoints,
            "film": fix(self.film),
            "stems": {k: fix(v) for k, v in self.stems.items()},
            "original_dialogue": fix(self.original_dialogue),
            "output": self.output.model_copy(update={"path": fix(self.output.path),
                                                     "audio": fix(self.output.audio)}),
            "work_dir": fix(self.work_dir),
        })

    @property
    def cache_dir(self) -> Path:
        return self.work_dir or self.output.path.parent / ".lipdub-cache"


def _format(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{key}: {error['msg']}"


def parse_job(data: dict | str | Path, *, base: Path | None = None) -> JobSpec:
    """Read and type-check a job (a dict, YAML text, or a YAML file); paths are resolved.

    Raises:
        JobSpecError: every schema problem at once.
    """
    source = "job"
    if isinstance(data, Path) or (isinstance(data, str) and "\n" not in data
                                  and data.endswith((".yaml", ".yml"))):
        path = Path(data)
        source = str(path)
        if not path.is_file():
            raise JobSpecError(source, [f"job file not found: {path}"])
        base = base or path.parent
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise JobSpecError(source, [f"not valid YAML: {exc}"]) from exc
    elif isinstance(data, str):
        data = yaml.safe_load(data)
    if not isinstance(data, dict):
        raise JobSpecError(source, ["the job must be a mapping of keys (film, stems, ...)"])
    try:
        job = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobSpecError(source, [_format(e) for e in exc.errors()]) from None
    return job.resolved(base or Path.cwd())


def picture_duration(path: Path) -> float:
    """Seconds from the film's first picture to the end of its last (0 when nothing says).

    Stems are aligned to the first picture, so this, not the container's length, is what they
    must cover: audio that starts before the picture (camera files, web masters) is no part
    of it.
    """
    import av

    from lipdub.pipeline.media.decode import open_media

    with open_media(path) as container:
        video = container.streams.video[0]
        if video.duration and video.time_base:
            return float(video.duration * video.time_base)
        if container.duration:
            start = (container.start_time or 0) / av.time_base
            first_picture = (float(video.start_time * video.time_base)
                             if video.start_time is not None else start)
            return container.duration / av.time_base - (first_picture - start)
        return 0.0


def _profile_problems(job: JobSpec, info) -> list[str]:
    """The output codec against the output's container and the film's bit depth."""
    from lipdub.pipeline.media.profiles import ProfileError, resolve_profile

    try:
        profile = resolve_profile(job.output.codec, job.output.path.suffix)
        if info is not None:
            profile.pix_fmt_for(info.pix_fmt)
    except ProfileError as exc:
        return [f"output.codec: {exc}"]
    return []


def check_job_inputs(job: JobSpec, source: str = "job") -> None:
    """Check every file and name the job refers to; report all problems at once.

    Runs before any heavy work: the film and stems open and are long enough, overrides name
    known characters, the output does not overwrite anything, and the checkpoints are found.

    Raises:
        JobSpecError: listing every problem found.
    """
    info, problems = _media_problems(job)
    problems += _override_problems(job) + _output_problems(job, info) + _checkpoint_problems(job)
    if problems:
        raise JobSpecError(source, problems)


def _audio_problem(key: str, path: Path) -> list[str]:
    from lipdub.pipeline.stems import audio_duration

    try:
        audio_duration(path)
    except LipdubError as exc:
        return [f"{key}: {exc}"]
    return []


def _media_problems(job: JobSpec) -> tuple[Any, list[str]]:
    """The film and every stem open, and the stems cover the film's pictures. Returns the
    film's VideoInfo (None when it does not open) and the problems."""
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.stems import audio_duration

    problems: list[str] = []
    film_seconds = 0.0
    info = None
    try:
        info = probe_video(job.film)
        film_seconds = picture_duration(job.film)
        if info.is_still:
            problems.append(f"film: {job.film} is a still picture; use `lipdub sync` for stills")
    except LipdubError as exc:
        problems.append(f"film: {exc}")
    for name, stem in job.stems.items():
        try:
            seconds = audio_duration(stem)
        except LipdubError as exc:
            problems.append(f"stems.{name}: {exc}")
            continue
        if film_seconds and seconds < film_seconds - 0.1:
            problems.append(
                f"stems.{name}: {stem} lasts {seconds:.2f} s but the film's pictures last "
                f"{film_seconds:.2f} s; each stem must cover the film from its first picture "
                "(pad it with silence)"
            )
    if job.original_dialogue is not None:
        problems += _audio_problem("original_dialogue", job.original_dialogue)
    return info, problems


def _override_problems(job: JobSpec) -> list[str]:
    problems = []
    for i, override in enumerate(job.overrides):
        if override.character not in job.stems:
            problems.append(
                f"overrides[{i}].character: {override.character!r} has no stem "
                f"(characters: {', '.join(sorted(job.stems))})"
            )
        start, end, face = override.start, override.end, override.face
        if start is not None and end is not None and end <= start:
            problems.append(f"overrides[{i}]: end ({end}) must be after start")
        if face is not None and (face.index is None) == (face.point is None):
            problems.append(f"overrides[{i}].face: give exactly one of index or point")
        if override.face is None and not override.off_screen:
            problems.append(f"overrides[{i}]: give a face (index or point) or off_screen: true")
    return problems


def _output_problems(job: JobSpec, info) -> list[str]:
    """The output overwrites nothing it must not, has a folder, a container and a profile
    that fits the film; a given mix opens."""
    problems = []
    out = job.output.path
    inputs = {job.film.resolve(), *(p.resolve() for p in job.stems.values())}
    if job.original_dialogue is not None:
        inputs.add(job.original_dialogue.resolve())
    if out.resolve() in inputs:
        problems.append(f"output.path: {out} would overwrite an input")
    elif out.exists() and not job.output.overwrite:
        problems.append(f"output.path: {out} already exists (set output.overwrite: true)")
    if not out.parent.is_dir():
        problems.append(f"output.path: folder {out.parent} does not exist")
    if out.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        problems.append(f"output.path: {out.suffix or 'no extension'}: use .mp4, .mov or .mkv")
    else:
        problems += _profile_problems(job, info)
    if job.output.audio is not None:
        problems += _audio_problem("output.audio", job.output.audio)
    return problems


def _checkpoint_problems(job: JobSpec) -> list[str]:
    from lipdub.pipeline.faces.detector import resolve_detector
    from lipdub.pipeline.weights_registry import resolve_weights_file

    problems = []
    for key in ("generator", "expert", "lse"):
        value = getattr(job.checkpoints, key)
        if value is not None:
            try:
                resolve_weights_file(value)
            except LipdubError as exc:
                problems.append(f"checkpoints.{key}: {exc}")
    try:
        resolve_detector(job.checkpoints.detector)
    except LipdubError as exc:
        problems.append(f"checkpoints.detector: {exc}")
    return problems
