"""``lipdub sync``: lip-sync one clip (or a still) to a dub audio track, streaming.

Two passes over the picture keep memory flat in clip length: pass 1 decodes, reads every
frame's timestamp and detects faces on small copies of keyframes; pass 2 decodes again, runs the
generator in batches and composites, while a writer thread encodes. Between stages there are
bounded queues only; no list of frames is ever held.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lipdub.pipeline import defaults
from lipdub.pipeline.audio import (
    MEL_STEP_SIZE,
    DubMel,
    constant_frame_rate,
    dub_mel,
    frame_mel_starts,
)
from lipdub.pipeline.background import in_background
from lipdub.pipeline.composite import paste_faces
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.faces.face_plan import (
    FaceOptions,
    FrameTimes,
    plan_boxes,
    progress_bar,
    scan_video,
)
from lipdub.pipeline.generator import LipSyncModel, crop_face, resolve_device
from lipdub.pipeline.media.decode import VideoInfo, probe_video, require_file
from lipdub.pipeline.media.encode import VideoWriter
from lipdub.pipeline.media.frames import frame_from_planes, plane_arrays, to_bgr
from lipdub.pipeline.media.passthrough import check_passthrough, iter_packets_and_frames
from lipdub.pipeline.media.profiles import resolve_profile
from lipdub.pipeline.media.provenance import provenance_metadata
from lipdub.pipeline.media.stream_copy import CannotCopy, copy_video_stream
from lipdub.pipeline.media.timecode import read_timecode
from lipdub.pipeline.partial_files import write_text


@dataclass
class SyncOptions(FaceOptions):
    """Settings of one ``lipdub sync`` run (the CLI flags, one to one): the face flags of
    :class:`~lipdub.pipeline.faces.face_plan.FaceOptions` and these."""

    checkpoint: Path | None = None
    batch_size: int | None = None  # None: the device's (defaults.GPU_BATCH / CPU_BATCH)
    device: str = defaults.DEVICE
    precision: str | None = None
    detector: str | None = None  # registry name or file of a RetinaFace checkpoint
    codec: str | None = None
    still_fps: float = defaults.STILL_FPS
    match_colour: bool = defaults.MATCH_COLOUR
    accept_damaged: bool = False  # go on past damage, listing it (lipdub.pipeline.media.decode)
    overwrite: bool = False


@dataclass
class RunSummary:
    """What a run did; written as JSON beside the output."""

    input: str
    audio: str
    output: str
    frames: int = 0
    frames_synced: int = 0
    frames_passed_through: int = 0
    passed_through_ranges: list[list[int]] = field(default_factory=list)
    keyframes_detected: int = 0
    keyframes_with_faces: int = 0
    face_tracks: int = 0
    chosen_tracks: list[int] = field(default_factory=list)
    # [frame, x0, y0, x1, y1] for every synced frame (exclusive x1, y1)
    face_boxes: list[list[int]] = field(default_factory=list)
    audio_report: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    frames_per_second: float = 0.0
    device: str = ""
    precision: str = ""
    settings: dict = field(default_factory=dict)
    profile: str = ""
    size_note: str = ""  # an odd size padded by a pixel for the output profile (else empty)
    # Intra-only sources in the output's codec: faceless pictures copied packet for packet, and
    # in edited ones the coded pieces away from the face taken from the source
    # (lipdub.pipeline.media.splice).
    passthrough: str = ""
    packets_copied: int = 0
    frames_encoded: int = 0
    pieces_from_source: int = 0
    pieces_encoded: int = 0
    timecode: str | None = None
    provenance: dict = field(default_factory=dict)
    # Accepted damage of the source (--accept-damaged): [{"frame", "time", "what"}]
    damage: list[dict] = field(default_factory=list)


def _check_paths(video: Path, audio: Path, output: Path, overwrite: bool) -> None:
    require_file(video, "video")
    require_file(audio, "audio")
    if output.resolve() in (video.resolve(), audio.resolve()):
        raise LipdubError(f"{output}: the output would overwrite an input; choose another name")
    if output.exists() and not overwrite:
        raise LipdubError(f"{output}: already exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise LipdubError(f"{output.parent}: output folder does not exist")


def still_pix_fmt(info: VideoInfo) -> str:
    """The planar YUV format a still is lip-synced in: its own chroma (a 4:4:4 JPEG stays
    4:4:4, so that FFV1 keeps it), 4:2:0 for JPEG's 4:2:0 and 4:4:4 for RGB and grey
    pictures, which cannot be patched as they are."""
    own = info.pix_fmt.replace("yuvj", "yuv")
    return own if own in ("yuv420p", "yuv422p", "yuv444p") else "yuv444p"


def still_frames(info: VideoInfo, count: int, fps: float) -> Iterator[av.VideoFrame]:
    """The single picture of a still input as ``count`` frames at ``fps`` (pts 0, 1, 2...)."""
    frame = next(info.frames())
    fmt = still_pix_fmt(info)
    if fmt == "yuv420p" and (info.width % 2 or info.height % 2):
        fmt = "yuv444p"  # an odd size has no 4:2:0 picture
    base = frame.reformat(format=fmt)
    base.time_base = still_time_base(fps)
    planes = plane_arrays(base)
    for i in range(count):
        base.pts = i
        yield frame_from_planes(planes, base)  # a new frame each time: frames queue up


def still_time_base(fps: float) -> Fraction:
    return 1 / Fraction(fps).limit_denominator(1001)


def _passed_ranges(plan) -> list[list[int]]:
    missing = np.array([b is None for b in plan] + [False])
    edges = np.flatnonzero(np.diff(np.r_[False, missing].astype(int)))
    return [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2])]


def _scan(info: VideoInfo, detector, options: SyncOptions, background: list[Future],
          damage: list):
    """Pass 1 (or the still's one detection) while ``background`` (dub, model) completes.

    Returns:
        (the dub's DubMel, the loaded LipSyncModel or None, FrameTimes, detections).
    """

    def check_background() -> None:
        for future in background:
            if future.done() and future.exception() is not None:
                raise future.exception()

    if info.is_still:
        dub = background[0].result()
        count = max(1, math.ceil(dub.duration * options.still_fps))
        frame_duration = 1.0 / options.still_fps
        tb = still_time_base(options.still_fps)
        times = FrameTimes(np.arange(count) * frame_duration, tb, frame_duration)
        first = next(still_frames(info, 1, options.still_fps))
        dets = [] if detector is None else [(0, detector.detect([to_bgr(first)])[0])]
        # One picture: its detection stands for every keyframe of the still "clip" (the last
        # frame included, as in a video's scan).
        keys = [*range(0, count - 1, options.detect_every), count - 1]
        detections = [(i, d) for _, d in dets for i in keys]
    else:
        times, detections = scan_video(info, None if detector is None else detector.detect,
                                       options, on_batch=check_background, damage=damage)
    results = [future.result() for future in background]
    return results[0], (results[1] if len(results) > 1 else None), times, detections


def sync_clip(video: str | Path, audio: str | Path, output: str | Path,
              options: SyncOptions, *, model: LipSyncModel | None = None,
              detector=None, dub: Future[DubMel] | None = None) -> RunSummary:
    """Lip-sync ``video`` (or a still picture) to ``audio`` and write ``output``.

    Arguments:
        video, audio, output: paths; the output's extension picks the container.
        options: see :class:`SyncOptions`.
        model, detector: already-loaded ones (a flow reuses them across shots).
        dub: ``audio``'s :func:`~lipdub.pipeline.audio.dub_mel` being computed elsewhere (the CLI
            starts it in a process of its own before torch is imported); None: computed here.

    Returns:
        The :class:`RunSummary` (also written to ``output`` + ``.json``).

    Raises:
        MediaError, AudioError, LipdubError, lipdub.models.weights.WeightsError: bad input,
        before any output is written; nothing is left behind on failure.
    """
    video, audio, output = Path(video), Path(audio), Path(output)
    clock = {"start": time.perf_counter()}
    _check_paths(video, audio, output, options.overwrite)
    info = replace(probe_video(video), accept_damaged=options.accept_damaged)
    if options.face == "box" and options.face_box is None:
        raise LipdubError("--face box needs --box x1,y1,x2,y2")
    source_pix_fmt = still_pix_fmt(info) if info.is_still else info.pix_fmt
    # The writer checks this too; asked here, a bad choice fails before the scan, not after.
    resolve_profile(options.codec, output.suffix.lower()).pix_fmt_for(source_pix_fmt)
    damage: list = []  # what the scan met, when damage is accepted
    dub, model, times, detections = _load_and_scan(audio, info, options, model, detector, dub,
                                                   damage, clock)
    if info.is_still:
        count = len(times.times)
        frames: Callable[[], Iterator] = lambda: still_frames(info, count, options.still_fps)  # noqa: E731
        time_base, rate = times.time_base, 1 / times.time_base
    else:
        frames = info.frames
        time_base, rate = info.time_base, info.average_rate
    clock["scanned"] = time.perf_counter()
    n_frames = len(times.times)
    plan, chosen, n_tracks = plan_boxes(n_frames, detections, options, info)

    # The dub starts with the first picture; silence stands in where it is shorter. Each
    # frame's mel window is picked as the reference picks it (frame_mel_starts).
    t0 = times.times[0]
    seconds = np.asarray(times.times, np.float64) - t0
    chunk_starts = frame_mel_starts(seconds, dub.mel.shape[1],
                                    constant_frame_rate(seconds, float(rate) if rate else None))
    mel = dub.with_columns(int(chunk_starts.max()) + MEL_STEP_SIZE if n_frames else 0)

    summary = RunSummary(str(video), str(audio), str(output), frames=n_frames,
                         device=str(model.device), precision=model.precision,
                         settings={k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(
                             v, Path) else v) for k, v in asdict(options).items()})
    summary.damage = [asdict(d) for d in damage]
    start_tc = None if info.is_still else read_timecode(video)
    synced_ranges = [{"start": a, "end": b + 1} for a, b in _passed_ranges(
        [None if box is not None else 0 for box in plan])]
    tags = provenance_metadata(synced_ranges, rate=rate, timecode=start_tc)
    summary.provenance, summary.timecode = tags, start_tc.text if start_tc else None
    copied, copy_note = _copy_when_nothing_to_sync(video, output, audio, info, plan, times,
                                                   float(t0), summary)
    if copied is not None:  # the source's coded pictures as they are
        synced, audio_report = 0, copied.audio
    else:
        synced, audio_report = _write(video, output, info, options, audio, plan, mel,
                                      chunk_starts, model, frames, summary, source_pix_fmt,
                                      time_base, rate, float(t0), times.duration, copy_note)
    clock["rendered"] = time.perf_counter()
    summary.frames_synced = synced
    summary.frames_passed_through = n_frames - synced
    summary.passed_through_ranges = _passed_ranges(plan)
    summary.keyframes_detected = len(detections)
    summary.keyframes_with_faces = sum(1 for _, d in detections if len(d))
    summary.face_tracks = n_tracks
    summary.chosen_tracks = chosen
    summary.face_boxes = [[i, *box] for i, box in enumerate(plan) if box is not None]
    summary.audio_report = asdict(audio_report) if audio_report else {}
    _write_summary(summary, output, clock, n_frames)
    return summary


def _load_and_scan(audio: Path, info: VideoInfo, options: SyncOptions,
                   model: LipSyncModel | None, detector, dub: Future[DubMel] | None,
                   damage: list, clock: dict) -> tuple:
    """The face scan, with the dub's decode and the generator's load beside it (each is mostly
    one core's work); their errors are raised as soon as they happen, not after the scan.

    Returns (the dub's DubMel, the generator, FrameTimes, detections)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lipdub-load") as pool:
        dub_future = dub or pool.submit(dub_mel, audio)
        model_future = pool.submit(LipSyncModel, options.checkpoint, device=options.device,
                                   precision=options.precision) if model is None else None
        device = model.device if model is not None else resolve_device(options.device)
        if detector is None and options.face != "box":
            from lipdub.pipeline.faces.detector import load_face_detector

            detector = load_face_detector(options.detector, device=device)
        clock["loaded"] = time.perf_counter()
        background = [f for f in (dub_future, model_future) if f is not None]
        dub, loaded, times, detections = _scan(info, detector, options, background, damage)
    return dub, model or loaded, times, detections


def _copy_when_nothing_to_sync(video: Path, output: Path, audio: Path, info: VideoInfo,
                               plan: list, times, start: float, summary: RunSummary):
    """No face to sync anywhere: the video stream copied whole. Returns (the copy's report or
    None, a note for the summary when the copy could not be made)."""
    if info.is_still or any(box is not None for box in plan):
        return None, ""
    try:
        copied = copy_video_stream(video, output, audio=audio, audio_start=start,
                                   duration=times.duration, timecode=summary.timecode,
                                   metadata=summary.provenance)
    except CannotCopy as exc:
        return None, f"no face to sync, but no stream copy: {exc}; "
    summary.profile = f"stream copy ({copied.codec})"
    summary.packets_copied = copied.packets_copied
    summary.passthrough = "stream copied whole: no face to sync"
    return copied, ""


def _write_summary(summary: RunSummary, output: Path, clock: dict, n_frames: int) -> None:
    """The timings, then the summary beside the output (``OUT.json``)."""
    total = clock["rendered"] - clock["start"]
    summary.timings = {
        "load_s": round(clock["loaded"] - clock["start"], 3),
        "scan_s": round(clock["scanned"] - clock["loaded"], 3),
        "render_s": round(clock["rendered"] - clock["scanned"], 3),
        "total_s": round(total, 3),
    }
    summary.frames_per_second = round(n_frames / total, 2) if total > 0 else 0.0
    write_text(output.with_name(output.name + ".json"), json.dumps(asdict(summary), indent=2),
               durable=True)


def _write(video: Path, output: Path, info: VideoInfo, options: SyncOptions, audio: Path,
           plan: list, mel: np.ndarray, chunk_starts, model: LipSyncModel, frames, summary,
           source_pix_fmt: str, time_base, rate, start: float, duration: float,
           copy_note: str):
    """Pass 2 through the encoder (:func:`_render`); the writer's figures go into
    ``summary``. Returns (pictures synced, the audio's report)."""
    writer = VideoWriter(output, width=info.width, height=info.height, time_base=time_base,
                         average_rate=rate, codec=options.codec,
                         source_pix_fmt=source_pix_fmt,
                         sample_aspect_ratio=info.sample_aspect_ratio, audio=audio,
                         audio_start=start, duration=duration,
                         colour=None if info.is_still else info.colour,
                         timecode=summary.timecode, metadata=summary.provenance)
    summary.profile, summary.size_note = writer.profile.name, writer.size_note
    try:
        check = None if info.is_still else check_passthrough(video, writer)
        if check is not None and check.ok:  # intra-only source in the output's own codec
            wanted = {i for i, box in enumerate(plan) if box is not None}
            pictures = ((p, f) for _, p, f in iter_packets_and_frames(video, wanted))
        else:
            pictures = ((None, f) for f in frames())
        synced = _render(pictures, plan, mel, chunk_starts, model, writer, options, len(plan))
        audio_report = writer.close()
    except BaseException:
        writer.abort()
        raise
    summary.packets_copied, summary.frames_encoded = writer.packets_copied, writer.frames_encoded
    summary.passthrough = copy_note + (("packets copied: " if check.ok else "no packet copy: ")
                                       + check.reason if check is not None else "")
    summary.pieces_from_source, summary.pieces_encoded = (writer.pieces_from_source,
                                                          writer.pieces_encoded)
    return synced, audio_report


def _write_batch(pending: list, preds: list, writer: VideoWriter, match_colour: bool,
                 bar) -> None:
    """One generated batch into the output: faceless pictures copied (their packet) or encoded,
    the others composited, then encoded or spliced into their packet."""
    for (packet, frame, bgr, box), pred in zip(pending, preds):
        if box is None and packet is not None:
            writer.copy_packet(packet)
        elif box is None:
            writer.write(frame)
        else:
            frame = paste_faces(frame, [(box, pred)], bgr=bgr, match_colour=match_colour)
            if packet is not None:
                writer.write_spliced(frame, packet, [box])
            else:
                writer.write(frame)
        bar.update()


def _render(pictures: Iterator, plan, mel: np.ndarray, chunk_starts, model: LipSyncModel,
            writer: VideoWriter, options: SyncOptions, n_frames: int) -> int:
    """Pass 2: decode, batch the face crops through the generator, composite and encode.

    ``pictures`` yields (source packet or None, decoded frame or None): a packet comes with
    pictures that may be copied (faceless) or spliced (edited), a frame with every picture
    that has a face or cannot be copied.

    Returns:
        The number of pictures synced.
    """
    # One batch waits for the writer while the next is generated: enough to keep both busy;
    # each queued frame of a 1080p batch costs 9 MB (source + BGR copy).
    results: queue.Queue = queue.Queue(maxsize=1)
    errors: list[BaseException] = []
    bar = progress_bar(options.progress, total=n_frames, desc="lipsync", unit="fr")
    batch_size = options.batch_size or model.batch_size

    def write_loop():
        try:
            while (item := results.get()) is not None:
                _write_batch(*item, writer, options.match_colour, bar)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the producer
            errors.append(exc)
            while results.get() is not None:
                pass

    thread = threading.Thread(target=write_loop, daemon=True)
    thread.start()
    synced = 0
    pending: list = []  # (frame index, packet, frame, bgr, box) in presentation order

    def flush():
        nonlocal synced
        faces = [i for i, item in enumerate(pending) if item[4] is not None]
        preds: list = [None] * len(pending)
        if faces:
            crops = np.stack([crop_face(pending[i][3], pending[i][4]) for i in faces])
            mels = np.stack([mel[:, chunk_starts[pending[i][0]]:][:, :MEL_STEP_SIZE]
                             for i in faces])
            for i, pred in zip(faces, model(mels, crops)):
                preds[i] = pred
            synced += len(faces)
        if errors:
            raise errors[0]
        results.put(([item[1:] for item in pending], preds))
        pending.clear()

    try:
        with bar:
            n_faces = 0
            for index, (packet, frame) in enumerate(in_background(pictures, maxsize=8)):
                if index >= n_frames:
                    break
                box = plan[index]
                pending.append((index, packet, frame, to_bgr(frame) if box else None, box))
                n_faces += box is not None
                # Faceless stretches are flushed too, so the writer never waits on a long gap.
                if n_faces >= batch_size or len(pending) >= 4 * batch_size:
                    flush()
                    n_faces = 0
            if pending:
                flush()
    finally:
        results.put(None)
        thread.join()
    if errors:
        raise errors[0]
    return synced
