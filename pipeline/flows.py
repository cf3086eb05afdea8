"""The ``dub_film`` Prefect flow: a whole film, every character, resumable.

probe -> shots -> face tracks per shot (parallel) -> stem analysis -> routing -> lip-sync units
(each holds the ``gpu`` slot only around model calls; results cached by content) -> assembly (in
the output profile, source timecode and provenance tags carried) -> OTIO timeline -> QC report ->
run summary and Prefect artifacts. The tasks are thin wrappers over plain stage functions.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from .assemble import assemble_film
from .film_scan import (
    TRACKS_VERSION,
    FilmScan,
    TrackInfo,
    load_tracks,
    save_tracks,
    scan_film,
    track_shot,
)
from .job import JobSpec, check_job_inputs, parse_job
from .media import VideoInfo, probe_video
from .provenance import provenance_metadata
from .routing import Decision, FilmRouting, route_film
from .run_progress import RunProgress
from .segment_sync import (
    SyncUnit,
    film_fingerprint,
    lipsync_unit,
    unit_boxes,
    unit_key,
    units_from_decisions,
)
from .stems import StemAnalysis, mix_stems, stem_analysis
from .timecode import read_timecode
from .work_cache import cache_key, file_sha256, writing

GPU_SLOT = "gpu"
_models: dict[tuple, object] = {}
_models_lock = threading.RLock()  # re-entrant: the detector asks for the generator's device


def _cached_model(kind: str, key: tuple, build):
    """One model per process and settings: tasks in threads share it."""
    with _models_lock:
        if (kind, key) not in _models:
            _models[(kind, key)] = build()
        return _models[(kind, key)]


def _detector(job: JobSpec):
    from .detector import load_face_detector

    return _cached_model("detector", (job.checkpoints.detector, job.settings.device),
                         lambda: load_face_detector(job.checkpoints.detector,
                                                    device=_generator(job).device))


def _generator(job: JobSpec):
    from .lipsync import LipSyncModel

    s = job.settings
    return _cached_model("generator", (job.checkpoints.generator, s.device, s.precision),
                         lambda: LipSyncModel(job.checkpoints.generator, device=s.device,
                                              precision=s.precision))


def _gpu_slot():
    """Hold the studio-wide ``gpu`` slot (a Prefect global concurrency limit) for one call."""
    return concurrency(GPU_SLOT, occupy=1, strict=False)


SCAN_VERSION = 1  # of what a cached scan holds


@task(name="scan film", cache_policy=NO_CACHE)
def scan_task(job: JobSpec, info: VideoInfo, work: Path) -> FilmScan:
    import numpy as np

    from .shots import shots_from_cuts

    # The folder is the film's; the name holds what else decides the cuts.
    key = cache_key("scan", SCAN_VERSION, job.shots,
                    None if job.shots is not None else job.settings.shot_threshold)
    cached = work / f"scan_{key}.npz"
    if cached.exists():
        with np.load(cached) as d:
            times = d["times"]
            return FilmScan(times, shots_from_cuts(times, list(d["cuts"])))
    scan = scan_film(info, cut_times=job.shots, threshold=job.settings.shot_threshold)
    with writing(cached) as tmp:
        np.savez(tmp, times=scan.times, cuts=np.array([s.start_time for s in scan.shots[1:]]))
    return scan


def detector_identity(job: JobSpec) -> str:
    """The sha256 of the job's face detector (what names its tracks)."""
    from .detector import resolve_detector

    return file_sha256(resolve_detector(job.checkpoints.detector)[0])


def tracks_path(job: JobSpec, scan: FilmScan, shot_index: int, work: Path,
                detector_sha: str | None = None) -> Path:
    """Where a shot's tracks are kept: named by its frames, the detector and every setting.

    ``detector_sha``: :func:`detector_identity`, when the caller has it (once per run).
    """
    s, shot = job.settings, scan.shots[shot_index]
    key = cache_key("tracks", TRACKS_VERSION, shot.start, shot.end,
                    float(scan.times[shot.start]), detector_sha or detector_identity(job),
                    s.detect_every, s.detect_size, s.smooth_window)
    return work / "tracks" / f"shot{shot_index:04d}_{key}.npz"


@task(name="track faces", task_run_name="track faces in shot {shot_index}", cache_policy=NO_CACHE)
def track_task(job: JobSpec, info: VideoInfo, scan: FilmScan, shot_index: int,
               work: Path, detector_sha: str) -> list[TrackInfo]:
    s = job.settings
    cached = tracks_path(job, scan, shot_index, work, detector_sha)
    if cached.exists():
        return load_tracks(cached)
    detector = _detector(job)
    tracks = track_shot(info, scan, scan.shots[shot_index], detector.detect,
                        every=s.detect_every, max_side=s.detect_size,
                        smooth_window=s.smooth_window)
    save_tracks(tracks, cached)
    return tracks


@task(name="analyse stem", task_run_name="analyse stem {character}", cache_policy=NO_CACHE)
def stem_task(job: JobSpec, character: str, work: Path) -> StemAnalysis:
    return stem_analysis(character, job.stems[character], work / "stems",
                         min_segment=job.settings.min_segment)


@task(name="lip-sync", task_run_name="lip-sync {unit.name}", cache_policy=NO_CACHE, retries=1)
def lipsync_task(job: JobSpec, info: VideoInfo, scan: FilmScan, unit: SyncUnit,
                 track: TrackInfo, stem: StemAnalysis, film_id: str, weights_sha: str,
                 work: Path) -> dict:
    boxes = unit_boxes(unit, track, info, job.settings.pads)
    samples = stem.samples()
    model = _generator(job)
    key = unit_key(unit, boxes, scan, samples, film_id, weights_sha, model.precision,
                   str(model.device))
    path = work / "units" / f"{unit.name}_{key}.npz"
    if path.exists():
        return {"unit": unit.name, "path": str(path), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    lipsync_unit(info, scan, unit, boxes, samples, model, path,
                 batch_size=job.settings.batch_size, model_slot=_gpu_slot)
    return {"unit": unit.name, "path": str(path), "cached": False}


@task(name="assemble", cache_policy=NO_CACHE)
def assemble_task(job: JobSpec, info: VideoInfo, scan: FilmScan, results: list[tuple],
                  audio: Path, timecode: str | None, metadata: dict[str, str]) -> dict:
    done = assemble_film(info, scan, results, job.output.path, audio=audio,
                         codec=job.output.codec, match_colour=job.settings.match_colour,
                         timecode=timecode, metadata=metadata)
    return asdict(done)


@task(name="route", cache_policy=NO_CACHE)
def route_task(job: JobSpec, info: VideoInfo, scan: FilmScan, tracks: dict, stems: dict,
               work: Path, film_id: str) -> FilmRouting:
    log = get_run_logger()
    routing = route_film(info, scan, tracks, stems, job.overrides, job.settings, work,
                         expert_checkpoint=job.checkpoints.expert, dialogue=job.original_dialogue,
                         film_id=film_id, log=log)
    rules = Counter(d.rule for d in routing.decisions if not d.synced)
    synced = sum(d.synced for d in routing.decisions)
    log.info("routing: %d of %d pieces of speech synced; left alone: %s", synced,
             len(routing.decisions), ", ".join(f"{n} {r}" for r, n in rules.items()) or "none")
    return routing


@task(name="qc", cache_policy=NO_CACHE)
def qc_task(job: JobSpec, scan: FilmScan, units: list[tuple], audio: Path,
            header: dict) -> dict:
    import numpy as np

    from .qc import QCSegment, run_qc

    segments = []
    for unit, result in units:
        with np.load(result["path"]) as data:
            boxes = {int(f): tuple(int(v) for v in b) for f, b in zip(data["frames"],
                                                                     data["boxes"])}
        segments.append(QCSegment(unit.name, unit.shot, unit.start, unit.end, boxes,
                                  unit.character))
    out = job.output.path
    report = run_qc(out, audio, segments, [(s.index, s.start, s.end) for s in scan.shots],
                    out.with_name(out.stem + "_qc"), source=job.film, lse=job.checkpoints.lse,
                    expert=job.checkpoints.expert, device="cpu", header=header)
    return {"html": report["html"], "json": report["json"],
            "shots_flagged": report["shots_flagged"],
            "segments_flagged": report["segments_flagged"],
            "sync_model": report["sync_model"], "loudness": report["loudness"]}


def _ensure_gpu_limit() -> None:
    from prefect import get_client

    with contextlib.suppress(Exception), get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(GPU_SLOT)
        except Exception:  # noqa: BLE001 - missing: create it (1 slot per GPU worker)
            client.upsert_global_concurrency_limit_by_name(GPU_SLOT, 1)


@flow(name="dub_film", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def dub_film(job: dict | str) -> dict:
    """Dub a film as the job spec says (a dict, YAML text or a path to a YAML file)."""
    log = get_run_logger()
    clock = {"start": time.perf_counter()}
    spec = parse_job(Path(job) if isinstance(job, str) and "\n" not in job else job)
    check_job_inputs(spec)
    log.info("dubbing %s into %s; characters: %s", spec.film, spec.output.path,
             ", ".join(spec.stems))
    info = probe_video(spec.film)
    film_id = film_fingerprint(spec.film)
    work = spec.cache_dir / film_id[:16]
    work.mkdir(parents=True, exist_ok=True)

    artifact = create_progress_artifact(0.0, key="lipdub-progress", description="scanning")
    progress = RunProgress(lambda percent, text: update_progress_artifact(
        artifact, percent, description=text))
    progress.update("scan", 0, 1, "finding the shots")
    scan = scan_task(spec, info, work)
    log.info("%d frames, %d shots", len(scan.times), len(scan.shots))
    detector_sha = detector_identity(spec)
    track_futures = {track_task.submit(spec, info, scan, s.index, work, detector_sha): s.index
                     for s in scan.shots}
    stem_futures = {c: stem_task.submit(spec, c, work) for c in spec.stems}
    tracks = {}
    for future in as_completed(list(track_futures)):
        tracks[track_futures[future]] = future.result()
        progress.update("tracks", len(tracks), len(scan.shots),
                        f"{len(tracks)} of {len(scan.shots)} shots tracked")
    tracks = dict(sorted(tracks.items()))
    stems = {c: f.result() for c, f in stem_futures.items()}
    clock["analysed"] = time.perf_counter()

    progress.update("routing", 0, 1, "who speaks")
    routing = route_task(spec, info, scan, tracks, stems, work, film_id)
    decisions = routing.decisions
    units = units_from_decisions(decisions)
    _publish_tables(scan, tracks, stems, decisions)

    from models.weights import sha256_file

    from .weights_registry import resolve_weights_file

    weights_sha = sha256_file(resolve_weights_file(spec.checkpoints.generator))
    _ensure_gpu_limit()
    by_track = {(t.shot, t.track_id): t for ts in tracks.values() for t in ts}
    futures = {lipsync_task.submit(spec, info, scan, u, by_track[(u.shot, u.track_id)],
                                   stems[u.character], film_id, weights_sha, work): i
               for i, u in enumerate(units)}
    to_sync = sum(u.end - u.start for u in units)
    synced, finished = 0, {}
    progress.update("lip sync", 0, to_sync, f"0 of {to_sync} frames")
    for future in as_completed(list(futures)):
        unit = units[futures[future]]
        finished[futures[future]] = future.result()
        synced += unit.end - unit.start
        rate = synced / max(time.perf_counter() - clock["analysed"], 1e-6)
        progress.update("lip sync", synced, to_sync,
                        f"{synced} of {to_sync} frames, {rate:.1f} frames/s")
    results = [(u, finished[i]) for i, u in enumerate(units)]  # in film order
    clock["synced"] = time.perf_counter()
    progress.update("assembly", 0, 1, "writing the output")

    audio, mix = (spec.output.audio, None) if spec.output.audio else _dub_mix(spec, scan, work)
    if mix and mix["clipped_samples"]:
        log.warning("the stems summed past full scale: %d samples clipped (peak %.2f x full "
                     "scale); give output.audio a mastered mix", mix["clipped_samples"],
                     mix["peak"])
    start_tc = read_timecode(spec.film)
    tags = provenance_metadata([asdict(u) for u, _ in results], rate=info.average_rate,
                               timecode=start_tc)
    done = assemble_task(spec, info, scan, [(u.start, u.end, Path(r["path"])) for u, r in results],
                         audio, start_tc.text if start_tc else None, tags)
    changed = done["changed"]
    clock["assembled"] = time.perf_counter()
    progress.update("qc", 0, 1, "timeline and QC report")
    otio_path = _export_timeline(spec, info, scan, results, start_tc, tags)
    qc = None
    if spec.output.qc:
        from .routing_report import routing_by_shot

        segments = [seg for st in stems.values() for seg in st.segments]
        qc = qc_task(spec, scan, results, audio, {
            "consent": spec.consent, "provenance": tags, "stem_mix": mix,
            "timecode": start_tc.as_dict() if start_tc else None,
            "routing": routing_by_shot(scan, tracks, segments, decisions, routing.heard)})
    clock["checked"] = time.perf_counter()
    summary = _summary(spec, scan, tracks, stems, decisions, results, changed,
                       done["audio"] or {}, clock)
    summary["stem_mix"] = mix
    summary.update({"profile": done["profile"], "pix_fmt": done["pix_fmt"],
                    "packets_copied": done["packets_copied"],
                    "frames_encoded": done["frames_encoded"], "passthrough": done["passthrough"],
                    "timecode": start_tc.as_dict() if start_tc else None,
                    "provenance": tags, "otio": str(otio_path), "qc": qc})
    from prefect.runtime import flow_run

    summary["flow_run"] = {"id": str(flow_run.id), "name": flow_run.name,
                           "tags": sorted(flow_run.tags or [])}
    summary_path = spec.output.path.with_name(spec.output.path.name + ".json")
    summary_path.write_text(json.dumps(summary, indent=2))
    progress.finish()
    create_markdown_artifact(
        f"**{spec.output.path.name}**: {changed} of {len(scan.times)} frames changed, "
        f"{summary['units_computed']} units computed, {summary['units_cached']} from cache."
        + (f" QC: {qc['shots_flagged']} shot(s) flagged ({qc['html']})." if qc else ""),
        key="lipdub-result", description="dubbed film")
    return summary


def _dub_mix(spec: JobSpec, scan: FilmScan, work: Path) -> tuple[Path, dict]:
    """The stems summed (kept under their content: made once, never rewritten in place), and
    what the sum did (clipped samples, peak)."""
    stems = list(spec.stems.values())
    key = cache_key("mix", [file_sha256(p) for p in stems], round(scan.duration, 6))
    path, report_path = work / f"dub_mix_{key}.wav", work / f"dub_mix_{key}.json"
    if path.exists() and report_path.exists():
        return path, json.loads(report_path.read_text())
    mix = mix_stems(stems, path, scan.duration)
    report = {"clipped_samples": mix.clipped_samples, "peak": round(mix.peak, 4)}
    with writing(report_path) as tmp:
        tmp.write_text(json.dumps(report))
    return path, report


def _export_timeline(spec: JobSpec, info: VideoInfo, scan: FilmScan, results, start_tc,
                     tags: dict) -> Path:
    """The OTIO timeline of the delivered file (shots on V1, dubbed segments above)."""
    from .otio_export import Span, build_timeline, write_timeline

    out = spec.output.path
    shots = [Span(f"shot {s.index}", s.start, s.end, {"shot": s.index}) for s in scan.shots]
    segments = [Span(u.name, u.start, u.end, {"shot": u.shot, "character": u.character,
                                              "track": u.track_id}) for u, _ in results]
    rate = info.average_rate or Fraction(1) / Fraction(scan.frame_duration).limit_denominator(1001)
    timeline = build_timeline(out.stem, out, rate, len(scan.times), start_tc, shots, segments,
                              {"consent": spec.consent, "provenance": tags})
    return write_timeline(timeline, out.with_suffix(".otio"))


def _publish_tables(scan: FilmScan, tracks, stems, decisions: list[Decision]) -> None:
    create_table_artifact(
        [{"shot": s.index, "first frame": s.start, "frames": s.frames,
          "start (s)": round(s.start_time - scan.times[0], 3)} for s in scan.shots],
        key="lipdub-shots", description="shots")
    create_table_artifact(
        [{"shot": t.shot, "track": t.track_id, "from left": t.order, "first frame": t.first,
          "last frame": t.last} for ts in tracks.values() for t in ts],
        key="lipdub-tracks", description="face tracks")
    create_table_artifact(
        [{"character": seg.character, "start (s)": round(seg.start, 3),
          "end (s)": round(seg.end, 3)} for st in stems.values() for seg in st.segments],
        key="lipdub-segments", description="speech segments")
    create_table_artifact(
        [{"character": d.character, "shot": d.shot, "first frame": d.start_frame,
          "end frame": d.end_frame, "face": "left alone" if d.track_id is None else d.track_id,
          "rule": d.rule, "reason": d.reason, "score": d.score, "margin": d.margin,
          "evidence": "; ".join(e.describe() for e in d.evidence)} for d in decisions],
        key="lipdub-routing", description="routing decisions (frames: first to end, exclusive)")


def _summary(spec, scan, tracks, stems, decisions, results, changed, audio_report, clock):
    computed = sum(1 for _, r in results if not r["cached"])
    return {
        "film": str(spec.film),
        "output": str(spec.output.path),
        "frames": int(len(scan.times)),
        "frames_changed": int(changed),
        "shots": [{"index": s.index, "start": s.start, "end": s.end,
                   "start_time": s.start_time, "end_time": s.end_time} for s in scan.shots],
        "tracks": [{"shot": t.shot, "track": t.track_id, "order": t.order, "first": t.first,
                    "last": t.last} for ts in tracks.values() for t in ts],
        "segments": [asdict(seg) for st in stems.values() for seg in st.segments],
        "decisions": [asdict(d) for d in decisions],
        "units": [{**asdict(u), "cached": r["cached"], "result": r["path"]} for u, r in results],
        "units_computed": computed,
        "units_cached": len(results) - computed,
        "audio_report": audio_report,
        "consent": spec.consent,
        "timings": {
            "analysis_s": round(clock["analysed"] - clock["start"], 2),
            "lipsync_s": round(clock["synced"] - clock["analysed"], 2),
            "assembly_s": round(clock["assembled"] - clock["synced"], 2),
            "qc_s": round(clock["checked"] - clock["assembled"], 2),
        },
    }
