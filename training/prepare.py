"""``lipdub prepare``: turn a folder of videos into a training dataset of face crops and audio.

Input is an LRS2-style tree (``ROOT/<group>/<video>.mp4``) or any folder of videos, searched
recursively; each video becomes ``OUT/<relative path without suffix>/`` with the layout of
:mod:`lipdub.training.data`. Faces are found with our RetinaFace detector and tracker (the same
stages ``lipdub sync`` uses, so training crops match inference crops), not S3FD.

Per video, two streaming passes (one decoded frame in memory at a time): pass 1 reads every
frame's timestamp and detects faces on keyframes; the largest face is tracked, interpolated and
smoothed; pass 2 decodes again and writes the crop of every output frame. Output frames are on a
regular grid at the dataset's frame rate (25 by default): frame k is the source picture shown at
time k / fps, so 30 fps or VFR sources become 25 fps datasets. Frames without a face are not
written (gaps, as the reference's preprocess.py leaves them). The audio is cut to start with the
first picture and written as 16 kHz mono ``audio.wav`` plus its ``mel.npy``.

Each video is written to ``<name>.partial`` and renamed when complete, so an interrupted run
resumes where it stopped (finished videos are skipped) and never leaves half a video behind; the
dataset's own files (``train.txt``, ``val.txt``, ``dataset.json``, ``prepare_report.json``) are
each written under a temporary name and renamed (:mod:`lipdub.pipeline.partial_files`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import wave
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lipdub.pipeline import defaults
from lipdub.pipeline.audio import SAMPLE_RATE, Audio, melspectrogram, read_audio
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.faces.face_plan import FaceOptions, plan_boxes, scan_video
from lipdub.pipeline.generator import FACE_SIZE, crop_face
from lipdub.pipeline.media.decode import iter_video_frames, probe_video
from lipdub.pipeline.media.frames import to_bgr
from lipdub.pipeline.partial_files import write_text
from lipdub.training.data import DATASET_META, DEFAULT_FPS, MIN_FRAMES

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
META = "meta.json"
PARTIAL = ".partial"


@dataclass
class PrepareOptions:
    """Settings of one ``lipdub prepare`` run (the CLI flags, one to one)."""

    fps: float = DEFAULT_FPS  # frame rate of the dataset (the reference's formulas assume 25)
    crop_size: int = FACE_SIZE  # crops are stored at this size (0: the raw box size)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right; the reference's
    face: str = "largest"  # largest | index | point | box (as lipdub sync)
    face_index: int = 0
    face_point: tuple[float, float] | None = None
    face_box: tuple[int, int, int, int] | None = None  # fixed box: no detection (pre-cropped)
    detector: str | None = None
    detect_every: int = defaults.PREPARE_DETECT_EVERY
    detect_max_side: int = defaults.DETECT_SIZE
    smooth: bool = True
    smooth_window: int = defaults.SMOOTH_WINDOW
    val_fraction: float = 0.05
    split_by: str = "group"  # group: whole parent folders go to val (held-out identities)
    jpeg_quality: int = 95
    device: str = "auto"
    overwrite: bool = False
    progress: bool | None = None  # None: on when stderr is a terminal

    def face_options(self) -> FaceOptions:
        """The detection and tracking settings, as ``lipdub sync`` plans its faces."""
        return FaceOptions(face=self.face, face_index=self.face_index,
                           face_point=self.face_point, face_box=self.face_box, pads=self.pads,
                           detect_every=self.detect_every, detect_max_side=self.detect_max_side,
                           smooth=self.smooth, smooth_window=self.smooth_window, progress=False)


@dataclass
class PrepareReport:
    """What a run did."""

    found: int = 0
    prepared: int = 0
    skipped: int = 0  # already prepared by an earlier run
    failed: list[list[str]] = field(default_factory=list)  # [video, reason]
    too_short: list[str] = field(default_factory=list)  # entries left out of the filelists
    frames: int = 0  # crops written by this run
    train: int = 0
    val: int = 0
    seconds: float = 0.0


def find_videos(input_path: str | Path) -> list[tuple[Path, str]]:
    """Videos under ``input_path`` (or the file itself) with their dataset entry names.

    The entry is the path relative to the input folder without its suffix, e.g.
    ``5535415699068794046/00001`` for LRS2's ``main/5535415699068794046/00001.mp4``.

    Raises:
        LipdubError: nothing found.
    """
    root = Path(input_path)
    if root.is_file():
        return [(root, root.stem)]
    if not root.is_dir():
        raise LipdubError(f"{root}: no such file or folder")
    videos = sorted(p for p in root.rglob("*")
                    if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise LipdubError(f"{root}: no videos found ({', '.join(VIDEO_SUFFIXES)})")
    return [(p, p.relative_to(root).with_suffix("").as_posix()) for p in videos]


def resample_indices(times: np.ndarray, fps: float, frame_duration: float) -> np.ndarray:
    """For each output frame k at time t0 + k / fps, the source frame shown then.

    Arguments:
        times: (N,) presentation times of the source frames, ascending.
        fps: output frame rate.
        frame_duration: how long the last source frame is shown.

    Returns:
        (K,) source indices; K = floor(duration * fps), duration = last - first + frame_duration.
    """
    if len(times) == 0:
        return np.zeros(0, np.int64)
    duration = float(times[-1] - times[0] + frame_duration)
    count = int(np.floor(duration * fps + 1e-6))
    out_times = times[0] + np.arange(count) / fps
    # 1 µs tolerance: a 25 fps source on a 1/12800 time base must map k -> k exactly.
    return np.searchsorted(times, out_times + 1e-6, side="right").astype(np.int64) - 1


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Write mono float samples in [-1, 1] as 16-bit PCM.

    Returns:
        The samples as they read back (quantised to 1/32768, the s16 -> float rule).
    """
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
    pcm = pcm.astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    return pcm.astype(np.float32) / 32768.0


def write_audio(folder: Path, samples: np.ndarray) -> np.ndarray:
    """``audio.wav`` and ``mel.npy`` (the mel of exactly what audio.wav holds); returns the mel."""
    mel = melspectrogram(write_wav(folder / "audio.wav", samples))
    np.save(folder / "mel.npy", mel)
    return mel


def aligned_audio(audio: Audio, first_frame_time: float) -> np.ndarray:
    """The samples of ``audio`` from the time of the video's first picture on."""
    offset = int(round((first_frame_time - audio.start_time) * audio.sample_rate))
    if offset >= 0:
        return audio.samples[offset:]
    return np.concatenate([np.zeros(-offset, np.float32), audio.samples])


def prepare_video(video: Path, folder: Path, options: PrepareOptions, detector) -> dict:
    """Write one video's crops, audio and meta.json into ``folder`` (through a .partial folder).

    Returns:
        Its meta dict (``frames`` = crops written).

    Raises:
        MediaError, AudioError: unreadable video, no audio stream.
    """
    info = probe_video(video)
    audio = read_audio(video)  # a video without sound fails here, before any decoding
    partial = folder.with_name(folder.name + PARTIAL)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        meta = _write_video(video, info, audio, partial, options, detector)
    except BaseException:  # an error, or a stop (SIGTERM, Ctrl-C): no half-written video left
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return meta


def _write_video(video: Path, info, audio, partial: Path, options: PrepareOptions,
                 detector) -> dict:
    faces = options.face_options()
    times, detections = scan_video(info, None if detector is None else detector.detect, faces)
    plan, chosen, n_tracks = plan_boxes(len(times.times), detections, faces, info)
    sources = resample_indices(times.times, options.fps, times.frame_duration)
    outputs = defaultdict(list)
    for k, i in enumerate(sources):
        if plan[i] is not None:
            outputs[int(i)].append(k)

    samples = aligned_audio(audio, float(times.times[0]))
    written = 0
    quality = [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]
    last = max(outputs, default=-1)
    for i, frame in enumerate(iter_video_frames(video)):
        if i > last:
            break
        if i not in outputs:
            continue
        bgr = to_bgr(frame)
        x0, y0, x1, y1 = plan[i]
        if options.crop_size == FACE_SIZE:
            crop = crop_face(bgr, plan[i])
        elif options.crop_size:
            crop = cv2.resize(bgr[y0:y1, x0:x1], (options.crop_size, options.crop_size),
                              interpolation=cv2.INTER_LINEAR)
        else:
            crop = bgr[y0:y1, x0:x1]
        for k in outputs[i]:
            cv2.imwrite(str(partial / f"{k}.jpg"), crop, quality)
            written += 1
    mel = write_audio(partial, samples)
    meta = {
        "source": str(video),
        "fps": options.fps,
        "frames": written,
        "frames_total": int(len(sources)),
        "source_frames": int(len(times.times)),
        "face_tracks": n_tracks,
        "audio_seconds": round(len(samples) / SAMPLE_RATE, 3),
        "mel_frames": int(mel.shape[1]),
    }
    (partial / META).write_text(json.dumps(meta, indent=2))
    return meta


def group_of(entry: str, split_by: str = "group") -> str:
    """The unit a split keeps together: the parent folder (LRS2: one show), or the video."""
    return entry.rsplit("/", 1)[0] if split_by == "group" and "/" in entry else entry


def split_of(entry: str, val_fraction: float, split_by: str = "group") -> str:
    """``"val"`` or ``"train"``, decided by a hash of the entry's group (stable across runs)."""
    key = group_of(entry, split_by)
    bucket = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < val_fraction else "train"


def write_dataset_files(root: Path, train: list[str], val: list[str], meta: dict) -> None:
    """train.txt, val.txt and dataset.json of a dataset folder.

    Each is written atomically (a killed run leaves the previous list, never half of one); not
    durably: a rerun of ``lipdub prepare`` skips the prepared videos and writes them again.
    """
    write_text(root / "train.txt", "".join(f"{e}\n" for e in train))
    write_text(root / "val.txt", "".join(f"{e}\n" for e in val))
    write_text(root / DATASET_META, json.dumps(meta, indent=2))


def _check_dataset_fps(root: Path, fps: float) -> None:
    meta = root / DATASET_META
    if meta.is_file():
        existing = json.loads(meta.read_text()).get("fps")
        if existing and abs(float(existing) - fps) > 1e-9:
            raise LipdubError(f"{root} holds a {existing} fps dataset; prepare into another "
                              f"folder or pass --fps {existing}")


def _remove_partial(output: Path, entry: str) -> None:
    """Remove a failed video's .partial folder and the parent folders it leaves empty."""
    partial = output / (entry + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    parent = partial.parent
    while parent != output and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def prepare_dataset(input_path: str | Path, output: str | Path,
                    options: PrepareOptions | None = None) -> PrepareReport:
    """Prepare every video under ``input_path`` into the dataset folder ``output``.

    Videos that fail (no audio, unreadable) are reported and skipped; the run goes on.

    Returns:
        A :class:`PrepareReport` (also written to ``output/prepare_report.json``).

    Raises:
        LipdubError: no videos, or a dataset of another frame rate in ``output``.
    """
    options = options or PrepareOptions()
    start = time.perf_counter()
    output = Path(output)
    if options.split_by not in ("group", "video"):
        raise LipdubError(f"split_by must be group or video, got {options.split_by!r}")
    videos = find_videos(input_path)
    _check_dataset_fps(output, options.fps)
    report = PrepareReport(found=len(videos))
    todo = [(v, e) for v, e in videos
            if options.overwrite or not (output / e / META).is_file()]
    report.skipped = len(videos) - len(todo)
    detector = None
    if todo and options.face != "box":
        from lipdub.pipeline.faces.detector import load_face_detector
        from lipdub.pipeline.generator import resolve_device

        detector = load_face_detector(options.detector, device=resolve_device(options.device))
    show = sys.stderr.isatty() if options.progress is None else options.progress
    with tqdm(todo, desc="prepare", unit="video", disable=not show) as bar:
        for video, entry in bar:
            bar.set_postfix_str(entry[-40:])
            try:
                meta = prepare_video(video, output / entry, options, detector)
            except LipdubError as exc:
                report.failed.append([str(video), " ".join(str(exc).split())])
                _remove_partial(output, entry)
                continue
            report.prepared += 1
            report.frames += meta["frames"]

    train, val = [], []
    for _, entry in videos:
        meta_path = output / entry / META
        if not meta_path.is_file():
            continue
        if json.loads(meta_path.read_text())["frames"] <= MIN_FRAMES:
            report.too_short.append(entry)
            continue
        (val if split_of(entry, options.val_fraction, options.split_by) == "val"
         else train).append(entry)
    groups = {group_of(e, options.split_by) for e in train}
    if not val and options.val_fraction > 0 and len(groups) > 1:
        # A small dataset whose hashes all fell in train: hold out one group anyway.
        held = group_of(train[-1], options.split_by)
        val = [e for e in train if group_of(e, options.split_by) == held]
        train = [e for e in train if group_of(e, options.split_by) != held]
    report.train, report.val = len(train), len(val)
    write_dataset_files(output, train, val, {
        "fps": options.fps,
        "crop_size": options.crop_size,
        "pads": list(options.pads),
        "detector": options.detector or "default",
        "created_by": "lipdub prepare",
        "videos": len(train) + len(val),
    })
    report.seconds = round(time.perf_counter() - start, 2)
    write_text(output / "prepare_report.json", json.dumps(asdict(report), indent=2))
    return report
