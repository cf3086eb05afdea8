"""The ``dub_film`` Prefect flow: a whole film, every character, resumable.

probe -> shots -> face tracks per shot -> stem analysis -> routing -> lip-sync units (results kept
in the work folder by content) -> assembly (in the output profile, source timecode and provenance
tags carried) -> OTIO timeline -> QC report -> run summary and Prefect artifacts. Tracking and
lip sync run in this process's task threads, or fan out over the farm's chunk workers
(lipdub.pipeline.farm.fan_out). The tasks are thin wrappers over plain stage functions
(lipdub.pipeline.film_stages).
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import TagsContext
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from lipdub.pipeline import contract, stopping
from lipdub.pipeline.assemble import Assembly, assemble_film
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.farm.fan_out import (
    Chunk,
    Farm,
    chunk_count,
    farm_precision,
    find_farm,
    make_chunks,
    make_waves,
    run_chunks,
)
from lipdub.pipeline.film_scan import FilmScan, TrackInfo, load_tracks
from lipdub.pipeline.film_stages import (
    UnitResult,
    code_version,
    detector_identity,
    film_shots,
    film_work_dir,
    generator_sha,
    shot_tracks,
    tracks_path,
    unit_path,
    unit_result,
)
from lipdub.pipeline.film_summary import FilmSummary
from lipdub.pipeline.film_units import SyncUnit, film_fingerprint, units_from_decisions
from lipdub.pipeline.job import JobSpec, check_job_inputs, parse_job
from lipdub.pipeline.media.decode import VideoInfo, probe_video
from lipdub.pipeline.media.provenance import provenance_metadata
from lipdub.pipeline.media.timecode import FrameClock, Timecode, read_timecode
from lipdub.pipeline.partial_files import remove_stale_partials, write_text
from lipdub.pipeline.qc.verdict import (
    QCFlagged,
    QCOutcome,
    flagged_rows,
    verdict_line,
    verdict_name,
)
from lipdub.pipeline.roots import require_within_roots, roots_from_env
from lipdub.pipeline.routing import Decision, FilmRouting, route_film
from lipdub.pipeline.run_progress import RunProgress
from lipdub.pipeline.run_tables import (
    FRAMES_NOTE,
    describe_faces,
    routing_rows,
    segment_rows,
    shot_rows,
    track_rows,
)
from lipdub.pipeline.stem_mel import stem_mel
from lipdub.pipeline.stems import StemAnalysis, mix_stems, stem_analysis
from lipdub.pipeline.stopping import workers_stop_with_me
from lipdub.pipeline.turns import Turns
from lipdub.pipeline.work_cache import cache_key, file_sha256

__all__ = ["dub_film", "scan_task", "tracks_path"]

# Units started at once in this process: one has the generator, the next decodes its first
# frames meanwhile (more would only wait, holding decoders and memory).
UNITS_IN_FLIGHT = 2


@task(name="scan film", cache_policy=NO_CACHE)
def scan_task(job: JobSpec, info: VideoInfo, work: Path) -> FilmScan:
    return film_shots(job, info, work)


@task(name="track faces", task_run_name="track faces in shot {shot_index}", cache_policy=NO_CACHE)
def track_task(job: JobSpec, info: VideoInfo, scan: FilmScan, shot_index: int,
               work: Path, detector_sha: str) -> list[TrackInfo]:
    return shot_tracks(job, info, scan, shot_index, work, detector_sha)[0]


@task(name="analyse stem", task_run_name="analyse stem {character}", cache_policy=NO_CACHE)
def stem_task(job: JobSpec, character: str, work: Path) -> StemAnalysis:
    analysed = stem_analysis(character, job.stems[character], work / "stems",
                             min_segment=job.settings.min_segment)
    stem_mel(analysed.samples_path)  # in a child, while the faces are tracked
    return analysed


@task(name="lip-sync", task_run_name="lip-sync {unit.name}", cache_policy=NO_CACHE, retries=1)
def lipsync_task(job: JobSpec, info: VideoInfo, scan: FilmScan, unit: SyncUnit,
                 track: TrackInfo, stem: StemAnalysis, film_id: str, weights_sha: str,
                 work: Path, card_turn=None) -> UnitResult:
    return unit_result(job, info, scan, unit, track, stem, film_id, weights_sha, work,
                       card_turn)


@task(name="assemble", cache_policy=NO_CACHE)
def assemble_task(job: JobSpec, info: VideoInfo, scan: FilmScan, results: list[tuple],
                  audio: Path, timecode: str | None, metadata: dict[str, str]) -> Assembly:
    return assemble_film(info, scan, results, job.output.path, audio=audio,
                         codec=job.output.codec, match_colour=job.settings.match_colour,
                         timecode=timecode, metadata=metadata)


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
            header: dict) -> QCOutcome:
    import numpy as np

    from lipdub.pipeline.qc.checks import QCSegment, run_qc

    segments = []
    for unit, result in units:
        with np.load(result.path) as data:
            boxes = {int(f): tuple(int(v) for v in b) for f, b in zip(data["frames"],
                                                                     data["boxes"])}
        segments.append(QCSegment(unit.name, unit.shot, unit.start, unit.end, boxes,
                                  unit.character))
    out = job.output.path
    report = run_qc(out, audio, segments, [(s.index, s.start, s.end) for s in scan.shots],
                    out.with_name(out.stem + "_qc"), source=job.film, lse=job.checkpoints.lse,
                    expert=job.checkpoints.expert, device="cpu", header=header,
                    source_damage_accepted=job.settings.accept_damaged, stems=job.stems)
    return QCOutcome(html=report["html"], json=report["json"], shots=len(report["shots"]),
                     verdict=verdict_line(report["shots_flagged"], len(report["shots"])),
                     shots_flagged=report["shots_flagged"],
                     segments_flagged=report["segments_flagged"],
                     sync_model=report["sync_model"], loudness=report["loudness"],
                     report=report)


@flow(name=contract.FLOW, log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def dub_film(job: dict | str) -> dict:
    """Dub a film as the job spec says (a dict, YAML text or a path to a YAML file)."""
    # The run's tags (film, characters) label it in the UI; its task runs do not take them up:
    # a tagged task run first asks the server for tag concurrency slots, a write that waited
    # 1.8-2.2 s behind the run's own log and event writes on the temporary SQLite server.
    with TagsContext(current_tags=set()):
        return _dub_film(job)


@dataclass
class _Run:
    """What a film run knows so far, handed from phase to phase of :func:`_dub_film`."""

    spec: JobSpec
    info: VideoInfo
    film_id: str
    work: Path
    log: Any
    progress: RunProgress
    clock: dict[str, float]  # when each phase ended (time.perf_counter), for the summary
    scan: FilmScan | None = None
    fan: _FanOut | None = None
    detector_sha: str = ""
    tracks: dict[int, list[TrackInfo]] = field(default_factory=dict)
    stems: dict[str, StemAnalysis] = field(default_factory=dict)
    routing: FilmRouting | None = None
    units: list[SyncUnit] = field(default_factory=list)
    start_tc: Timecode | None = None

    def faces(self) -> list[TrackInfo]:
        return [t for ts in self.tracks.values() for t in ts]

    @functools.cached_property
    def face_names(self) -> dict[tuple[int, int], str]:
        """(shot, track) -> "face k of N from the left", once the tracks are known."""
        return describe_faces(self.faces())


def _dub_film(job: dict | str) -> dict:
    run = _open_run(job)
    _scan_film(run)
    _tracks_and_stems(run)
    _route(run)
    audio, mix = (run.spec.output.audio, None) if run.spec.output.audio else _dub_mix(run)
    tags = provenance_metadata([asdict(u) for u in run.units], rate=run.info.average_rate,
                               timecode=run.start_tc)
    results, done = _sync_and_assemble(run, audio, tags)
    run.progress.update("qc", 0, 1, "timeline and QC report")
    otio_path = _export_timeline(run, results, tags)
    qc = _qc(run, results, audio, mix, tags) if run.spec.output.qc else None
    run.clock["checked"] = time.perf_counter()
    summary = _summary(run, results, done, mix, qc, tags, otio_path)
    return _finish(run, summary, qc, done.changed)


def _open_run(job: dict | str) -> _Run:
    """The job read and checked (paths inside the machine's roots before any file is opened),
    the film probed, its work folder ready (a killed run's half-written files swept)."""
    clock = {"start": time.perf_counter()}
    log = get_run_logger()
    spec = parse_job(Path(job) if isinstance(job, str) and "\n" not in job else job)
    require_within_roots(spec, roots_from_env())
    check_job_inputs(spec)
    log.info("dubbing %s into %s; characters: %s", spec.film, spec.output.path,
             ", ".join(spec.stems))
    info = replace(probe_video(spec.film), accept_damaged=spec.settings.accept_damaged)
    film_id = film_fingerprint(spec.film)
    work = film_work_dir(spec, film_id)
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(work, recursive=True)
    artifact = create_progress_artifact(0.0, key=contract.PROGRESS_KEY, description="scanning")
    progress = RunProgress(lambda percent, text: update_progress_artifact(
        artifact, percent, description=text))
    return _Run(spec, info, film_id, work, log, progress, clock)


def _scan_film(run: _Run) -> None:
    run.progress.update("scan", 0, 1, "finding the shots")
    run.scan = scan_task(run.spec, run.info, run.work)
    run.clock["scanned"] = time.perf_counter()
    run.log.info("%d frames, %d shots", len(run.scan.times), len(run.scan.shots))
    for damage in run.scan.damage:  # accepted (settings.accept_damaged), never silent
        run.log.warning("damaged film: frame %d%s: %s", damage.frame,
                        f" ({damage.time:.3f} s)" if damage.time is not None else "",
                        damage.what)


def _tracks_and_stems(run: _Run) -> None:
    """Face tracks (here or on the farm) while the stems are analysed in task threads."""
    spec = run.spec
    run.detector_sha = detector_identity(spec)
    stem_futures = {c: stem_task.submit(spec, c, run.work) for c in spec.stems}
    farm = find_farm(spec.distribute.mode, _deployment_name())
    if farm:
        run.fan = _FanOut(spec, run.info, run.scan, run.work, run.film_id, farm, run.log)
        run.log.info("fanning out to %d chunk worker(s) in pool %s: %s", len(farm.workers),
                     farm.pool, ", ".join(farm.workers))
        run.tracks = run.fan.tracks(run.detector_sha, run.progress)
    else:
        run.tracks = _tracks_here(spec, run.info, run.scan, run.work, run.detector_sha,
                                  run.progress)
    run.clock["tracked"] = time.perf_counter()
    run.stems = {c: f.result() for c, f in stem_futures.items()}
    run.clock["analysed"] = time.perf_counter()


def _route(run: _Run) -> None:
    """Who speaks each line; the units to lip-sync; the run's tables in the UI."""
    run.progress.update("routing", 0, 1, "who speaks")
    run.routing = route_task(run.spec, run.info, run.scan, run.tracks, run.stems, run.work,
                             run.film_id)
    run.units = units_from_decisions(run.routing.decisions)
    run.start_tc = read_timecode(run.spec.film)
    _publish_tables(run.scan, run.tracks, run.stems, run.routing.decisions,
                    FrameClock(run.info.average_rate or 1 / run.scan.frame_duration,
                               run.start_tc))
    run.clock["routed"] = time.perf_counter()


def _sync_and_assemble(run: _Run, audio: Path, tags: dict[str, str]) -> tuple[list, Assembly]:
    """Lip-sync the units (here or on the farm) while the film is assembled beside them: the
    assembly waits for each unit's pictures when it reaches them. Returns (unit, result) in
    film order and the assembly's report."""
    spec, units, clock, progress = run.spec, run.units, run.clock, run.progress
    to_sync = sum(u.end - u.start for u in units)
    progress.update("lip sync", 0, to_sync, f"0 of {to_sync} frames")
    synced = {"frames": 0}

    def unit_done(frames: int) -> None:
        synced["frames"] += frames
        rate = synced["frames"] / max(time.perf_counter() - clock["analysed"], 1e-6)
        progress.update("lip sync", synced["frames"], to_sync,
                        f"{synced['frames']} of {to_sync} frames, {rate:.1f} frames/s")

    weights_sha = generator_sha(spec)
    files = _UnitFiles(len(units))
    assembly = assemble_task.submit(
        spec, run.info, run.scan, [(u.start, u.end, wait) for u, wait
                                   in zip(units, files.waiters())], audio,
        run.start_tc.text if run.start_tc else None, tags)
    try:
        with workers_stop_with_me():  # first: a stop is known before the finally below
            if run.fan:
                finished = run.fan.units(units, run.tracks, run.stems, run.detector_sha,
                                         weights_sha, unit_done, files.done)
            else:
                by_track = {(t.shot, t.track_id): t for t in run.faces()}
                finished = _sync_here(spec, run.info, run.scan, units, by_track, run.stems,
                                      run.film_id, weights_sha, run.work, unit_done, files.done)
    finally:
        files.end()
    clock["synced"] = time.perf_counter()
    progress.update("assembly", 0, 1, "writing the output")
    done = assembly.result()
    if done.size_note:
        run.log.warning("%s", done.size_note)
    clock["assembled"] = time.perf_counter()
    return [(u, finished[i]) for i, u in enumerate(units)], done


def _qc(run: _Run, results: list, audio: Path, mix: dict | None, tags: dict) -> QCOutcome:
    from lipdub.pipeline.routing_report import routing_by_shot

    segments = [seg for st in run.stems.values() for seg in st.segments]
    return qc_task(run.spec, run.scan, results, audio, {
        "consent": run.spec.consent, "provenance": tags, "stem_mix": mix,
        "damage": [asdict(d) for d in run.scan.damage],
        "timecode": run.start_tc.as_dict() if run.start_tc else None,
        "routing": routing_by_shot(run.scan, run.tracks, segments, run.routing.decisions,
                                   run.routing.heard)})


def _finish(run: _Run, summary: FilmSummary, qc: QCOutcome | None, changed: int):
    """The summary written beside the output, the verdict and the result in Prefect; the
    run's end state (Completed, named after a QC verdict, or Failed when the job asks)."""
    spec = run.spec
    summary_path = spec.output.path.with_name(spec.output.path.name + contract.SUMMARY_SUFFIX)
    written = summary.as_dict()
    write_text(summary_path, json.dumps(written, indent=2), durable=True)
    run.progress.finish()
    verdict = _publish_qc(spec, run.info, qc, run.start_tc, run.log) if qc else None
    create_markdown_artifact(
        f"**{spec.output.path.name}**: {changed} of {len(run.scan.times)} frames changed, "
        f"{summary.units_computed} units computed, {summary.units_cached} from cache."
        + (f" QC: {qc.shots_flagged} shot(s) flagged ({qc.html})." if qc else ""),
        key=contract.RESULT_KEY, description="dubbed film")
    if verdict and spec.output.qc_fail_on == "flagged":
        raise QCFlagged(f"{verdict} ({qc.html}); the job's output.qc_fail_on is 'flagged': "
                        f"{spec.output.path} is written, review it before delivery")
    # Completed either way; a flagged film's state says so in the runs list.
    return Completed(name=verdict, data=written) if verdict else written


def _deployment_name() -> str | None:
    """This run's deployment name (its chunks run under the same name), None when ad hoc."""
    from prefect.runtime import deployment

    return deployment.name


class _UnitFiles:
    """Each unit's result file as soon as it is done, for the assembly running beside."""

    def __init__(self, count: int) -> None:
        self._files = [ConcurrentFuture() for _ in range(count)]

    def waiters(self) -> list[Callable[[], Path]]:
        return [f.result for f in self._files]

    def done(self, index: int, path: str) -> None:
        self._files[index].set_result(Path(path))

    def end(self) -> None:
        """A failed unit or a stop ends the assembly too (without its output)."""
        for f in self._files:
            if not f.done():
                f.set_exception(stopping.Stopped(stopping.signal_number())
                                if stopping.requested()
                                else LipdubError("the lip sync ended before this unit"))


def _sync_here(spec: JobSpec, info: VideoInfo, scan: FilmScan, units: list[SyncUnit],
               by_track: dict, stems: dict, film_id: str, weights_sha: str, work: Path,
               unit_done: Callable[[int], None],
               unit_file: Callable[[int, str], None]) -> dict[int, UnitResult]:
    """Lip-sync the units in this process's task threads.

    Units take the generator one at a time, whole, in film order (lipdub.pipeline.turns): at most
    two are started at once, the second decoding its first frames while the first has the
    generator; ``unit_file`` hears of each unit's file as it is done (the assembly runs beside
    them, so compositing and encoding overlap the generator as in ``lipdub sync``).
    """
    turns = Turns()
    finished: dict[int, UnitResult] = {}
    running: dict = {}
    queued = iter(enumerate(units))
    while len(finished) < len(units):
        while len(running) < UNITS_IN_FLIGHT and (item := next(queued, None)):
            i, u = item
            track = by_track[(u.shot, u.track_id)]
            running[lipsync_task.submit(spec, info, scan, u, track, stems[u.character],
                                        film_id, weights_sha, work, partial(turns.turn, i))] = i
        future = next(as_completed(list(running)))
        i = running.pop(future)
        finished[i] = future.result()
        unit_file(i, finished[i].path)
        unit_done(units[i].end - units[i].start)
    return finished


def _tracks_here(spec: JobSpec, info: VideoInfo, scan: FilmScan, work: Path, detector_sha: str,
                 progress: RunProgress) -> dict[int, list[TrackInfo]]:
    """Every shot's tracks, in this process's task threads."""
    futures = {track_task.submit(spec, info, scan, s.index, work, detector_sha): s.index
               for s in scan.shots}
    tracks, done, total = {}, 0, len(scan.times)
    with workers_stop_with_me():
        for future in as_completed(list(futures)):
            tracks[futures[future]] = future.result()
            done += scan.shots[futures[future]].frames
            progress.update("tracks", done, total, f"{done} of {total} frames tracked")
    return dict(sorted(tracks.items()))


class _FanOut:
    """Tracking and lip sync as chunk runs on the farm's workers (lipdub.pipeline.farm.fan_out);
    what is in the work folder already is never chunked."""

    def __init__(self, spec: JobSpec, info: VideoInfo, scan: FilmScan, work: Path, film_id: str,
                 farm: Farm, log):
        from prefect.runtime import flow_run

        self.spec, self.info, self.scan, self.work = spec, info, scan, work
        self.film_id, self.farm, self.log = film_id, farm, log
        self.parent = str(flow_run.id)
        self.job = spec.model_dump(mode="json")
        self.records: list[dict] = []
        fps = 1.0 / scan.frame_duration
        self.count = lambda frames: chunk_count(frames, fps, spec.distribute.chunk_seconds,
                                                len(farm.workers))

    def _run(self, chunks: list[Chunk], parameters, on_done, on_poll=None) -> list[dict]:
        records = run_chunks(self.farm, chunks, parameters, self.work / "chunks", self.parent,
                             on_done=on_done, on_poll=on_poll, log=self.log)
        self.records += [{"stage": c.stage, **r} for c, r in zip(chunks, records)]
        return records

    def tracks(self, detector_sha: str, progress: RunProgress) -> dict[int, list[TrackInfo]]:
        spec, scan, work = self.spec, self.scan, self.work
        paths = {s.index: tracks_path(spec, scan, s.index, work, detector_sha)
                 for s in scan.shots}
        missing = [i for i, p in paths.items() if not p.exists()]
        frames = [scan.shots[i].frames for i in missing]
        total = len(scan.times)
        done = {"frames": total - sum(frames)}

        def on_done(chunk: Chunk, record: dict) -> None:
            done["frames"] += chunk.frames
            progress.update("tracks", done["frames"], total,
                            f"{done['frames']} of {total} frames tracked")

        expect = {"code": code_version(), "film": self.film_id, "detector": detector_sha,
                  "work": str(work)}
        chunks = make_chunks("tracks", missing, frames, self.count(sum(frames)), "shots")
        self._run(chunks, lambda c, record: {"job": self.job, "shots": list(c.items),
                                             "expect": expect, "record": str(record)}, on_done)
        return {i: load_tracks(p) for i, p in sorted(paths.items())}

    def units(self, units: list[SyncUnit], tracks: dict, stems: dict, detector_sha: str,
              weights_sha: str, unit_done, unit_file) -> dict[int, UnitResult]:
        spec, scan, work = self.spec, self.scan, self.work
        device_type, precision = farm_precision(spec.settings, self.farm)
        by_track = {(t.shot, t.track_id): t for ts in tracks.values() for t in ts}
        finished, expected = {}, {}
        for i, u in enumerate(units):
            path, _ = unit_path(spec, self.info, scan, u, by_track[(u.shot, u.track_id)],
                                stems[u.character], self.film_id, weights_sha, work,
                                device_type=device_type, precision=precision)
            if path.exists():
                finished[i] = UnitResult(u.name, str(path), cached=True)
                unit_file(i, str(path))
                unit_done(u.end - u.start)
            else:
                expected[i] = path
        missing = list(expected)
        frames = [units[i].end - units[i].start for i in missing]
        # The stems' content hashes (made once, for their analysis): a chunk finds the
        # analysis under them instead of hashing every stem again in each new process.
        expect = {"code": code_version(), "film": self.film_id, "weights": weights_sha,
                  "work": str(work), "stems": {c: file_sha256(p) for c, p in spec.stems.items()}}

        def entry(i: int) -> dict:
            u = units[i]
            return {"unit": asdict(u), "tracks": str(tracks_path(spec, scan, u.shot, work,
                                                                 detector_sha))}

        def arrived(i: int, path: str, computed: bool) -> None:
            finished[i] = UnitResult(units[i].name, path, cached=not computed)
            unit_file(i, path)
            unit_done(units[i].end - units[i].start)

        def look() -> None:
            # A unit's file is renamed into place when whole: the assembly and the progress
            # take it up at once rather than when its chunk ends (a chunk holds several units,
            # and the last ones would otherwise all be assembled after the lip sync).
            for i, path in list(expected.items()):
                if path.exists():
                    del expected[i]
                    arrived(i, str(path), computed=True)

        def on_done(chunk: Chunk, record: dict) -> None:
            for i, item in zip(chunk.items, record["items"]):
                if expected.pop(i, None) is not None:
                    arrived(i, item["path"], item["computed"])
                else:  # seen already: the record says whether it was computed or found
                    finished[i].cached = not item["computed"]

        chunks = make_waves("lipsync", missing, frames, self.count(sum(frames)),
                            len(self.farm.workers), "units")
        self._run(chunks, lambda c, record: {"job": self.job, "units": [entry(i) for i in c.items],
                                             "expect": expect, "record": str(record)}, on_done,
                  look)
        return finished


def _publish_qc(spec: JobSpec, info: VideoInfo, qc: QCOutcome, start_tc, log) -> str | None:
    """The QC verdict in Prefect: the ``lipdub-qc`` table and a warning per flagged segment;
    returns the run's state name (None when nothing was flagged)."""
    rows = flagged_rows(qc.report, info.average_rate or 25, start_tc)
    for row in rows:
        log.warning("QC: shot %d, %s, %s-%s (%s): %s", row["shot"], row["character"] or "?",
                    row["timecode in"], row["timecode out"], row["segment"], row["reason"])
    verdict = verdict_name(qc.shots_flagged, qc.shots)
    create_table_artifact(
        rows or [{"shot": "none", "reason": f"no shot flagged of {qc.shots}"}],
        key=contract.QC_KEY,
        description=f"{verdict or 'QC: nothing flagged'}; report: [qc.html]"
                    f"({Path(qc.html).resolve().as_uri()}) (frames: first to end, exclusive)")
    return verdict


def _dub_mix(run: _Run) -> tuple[Path, dict]:
    """The stems summed (kept under their content: made once, never rewritten in place), and
    what the sum did (clipped samples, peak)."""
    stems = list(run.spec.stems.values())
    key = cache_key("mix", [file_sha256(p) for p in stems], round(run.scan.duration, 6))
    path, report_path = run.work / f"dub_mix_{key}.wav", run.work / f"dub_mix_{key}.json"
    if path.exists() and report_path.exists():
        report = json.loads(report_path.read_text())
    else:
        mix = mix_stems(stems, path, run.scan.duration)
        report = {"clipped_samples": mix.clipped_samples, "peak": round(mix.peak, 4)}
        write_text(report_path, json.dumps(report))
    if report["clipped_samples"]:
        run.log.warning("the stems summed past full scale: %d samples clipped (peak %.2f x full "
                        "scale); give output.audio a mastered mix", report["clipped_samples"],
                        report["peak"])
    return path, report


def _export_timeline(run: _Run, results: list, tags: dict) -> Path:
    """The OTIO timeline of the delivered file (shots on V1, dubbed segments above)."""
    from lipdub.pipeline.media.otio_export import Span, build_timeline, write_timeline

    spec, info, scan, start_tc = run.spec, run.info, run.scan, run.start_tc
    faces = run.face_names
    out = spec.output.path
    shots = [Span(f"shot {s.index}", s.start, s.end, {"shot": s.index}) for s in scan.shots]
    segments = [Span(u.name, u.start, u.end, {"shot": u.shot, "character": u.character,
                                              "face": faces.get((u.shot, u.track_id), ""),
                                              "track": u.track_id}) for u, _ in results]
    rate = info.average_rate or Fraction(1) / Fraction(scan.frame_duration).limit_denominator(1001)
    timeline = build_timeline(out.stem, out, rate, len(scan.times), start_tc, shots, segments,
                              {"consent": spec.consent, "provenance": tags,
                               "frames": FRAMES_NOTE})
    return write_timeline(timeline, out.with_suffix(".otio"))


def _publish_tables(scan: FilmScan, tracks, stems, decisions: list[Decision],
                    clock: FrameClock) -> None:
    """The run's tables in the Prefect UI (lipdub.pipeline.run_tables: one vocabulary)."""
    faces = [t for ts in tracks.values() for t in ts]
    create_table_artifact(shot_rows(scan, clock), key="lipdub-shots",
                          description=f"shots ({FRAMES_NOTE})")
    create_table_artifact(track_rows(faces, clock), key="lipdub-tracks",
                          description=f"face tracks ({FRAMES_NOTE})")
    create_table_artifact(segment_rows(stems.values(), clock, scan), key="lipdub-segments",
                          description=f"speech found in each stem ({FRAMES_NOTE})")
    create_table_artifact(routing_rows(decisions, faces, clock), key="lipdub-routing",
                          description=f"routing decisions ({FRAMES_NOTE})")


def _summary(run: _Run, results: list, done: Assembly, mix: dict | None, qc: QCOutcome | None,
             tags: dict, otio_path: Path) -> FilmSummary:
    """The run summary written beside the output (``OUT.json``)."""
    from prefect.runtime import flow_run

    spec, scan, clock = run.spec, run.scan, run.clock
    computed = sum(1 for _, r in results if not r.cached)
    faces = run.face_names
    return FilmSummary(
        film=str(spec.film),
        output=str(spec.output.path),
        frames=int(len(scan.times)),
        frames_changed=int(done.changed),
        shots=[{"index": s.index, "start": s.start, "end": s.end,
                "start_time": s.start_time, "end_time": s.end_time} for s in scan.shots],
        # Frames half-open, as everywhere ([first, end)); faces by their place.
        tracks=[{"shot": t.shot, "track": t.track_id, "order": t.order,
                 "face": faces[(t.shot, t.track_id)], "first": t.first, "end": t.last + 1}
                for t in run.faces()],
        segments=[asdict(seg) for st in run.stems.values() for seg in st.segments],
        decisions=[asdict(d) for d in run.routing.decisions],
        units=[{**asdict(u), "cached": r.cached, "result": r.path} for u, r in results],
        units_computed=computed,
        units_cached=len(results) - computed,
        audio_report=asdict(done.audio) if done.audio else {},
        consent=spec.consent,
        timings={
            "analysis_s": round(clock["analysed"] - clock["start"], 2),
            "tracking_s": round(clock["tracked"] - clock["scanned"], 2),
            "routing_s": round(clock["routed"] - clock["analysed"], 2),
            "lipsync_s": round(clock["synced"] - clock["routed"], 2),
            "assembly_s": round(clock["assembled"] - clock["synced"], 2),
            "qc_s": round(clock["checked"] - clock["assembled"], 2),
        },
        stem_mix=mix,
        damage=[asdict(d) for d in scan.damage],
        chunks=run.fan.records if run.fan else [],
        profile=done.profile, pix_fmt=done.pix_fmt, packets_copied=done.packets_copied,
        frames_encoded=done.frames_encoded, passthrough=done.passthrough,
        size_note=done.size_note,
        timecode=run.start_tc.as_dict() if run.start_tc else None,
        provenance=tags,
        otio=str(otio_path),
        qc=qc.summary() if qc else None,
        flow_run={"id": str(flow_run.id), "name": flow_run.name,
                  "tags": sorted(flow_run.tags or [])},
    )
