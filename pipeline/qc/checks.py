"""Per-shot, per-segment quality control of a dubbed picture: sync, seams, flicker.

For every dubbed segment (frames [start, end) of one face, with its box per frame):

- sync: LSE-D, LSE-C and the A/V offset (:mod:`lipdub.pipeline.lse_segment`; "not measured" when no
sync
  network is given);
- seam: the luma step across the composite mask's soft edge, measured along the edge's normal
  (mean |dL/dn| in 8-bit grey levels where the mask changes);
- flicker: the temporal second difference of luma inside the mouth region (mask > 0.5),
  |L(t-1) - (L(t-2) + L(t)) / 2| averaged, grey levels.
  Both are judged by what the composite added, never by what a face has anyway (a jaw line
  crosses the mask's edge, a speaking mouth moves): with the source at hand, the output's value
  minus the source's at the same frame; without it, minus the same face's value on the
  untouched frames just outside the segment (``QCSettings.baseline_frames`` on each side,
  within the shot, the segment's first or last box; flicker must then also exceed what those
  frames showed, as speech moves a mouth by itself); with neither, they are reported and not
  judged;
- audio: digital silence (every sample zero) in the delivered audio, or in the character's own
  stem, over a segment is flagged (a silent stem routed to a face, a lost mix).

The picture is decoded once (the source beside it, in step). Shots sum up their segments; a shot
is flagged when any of its segments is. :mod:`lipdub.pipeline.qc.report` writes the contact sheets,
the sync-confidence plots, ``qc.json`` and ``qc.html``.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lipdub.pipeline.composite import lower_face_mask
from lipdub.pipeline.lse_segment import AudioSource, SyncModel, measure, model_crop
from lipdub.pipeline.media.decode import audio_lead, iter_video_frames, open_media, probe_video
from lipdub.pipeline.media.frames import to_bgr
from lipdub.pipeline.media.timecode import read_timecode


@dataclass
class QCSegment:
    """A dubbed stretch of one face: frames [start, end), ``boxes`` by frame index."""

    name: str
    shot: int
    start: int
    end: int
    boxes: dict[int, tuple[int, int, int, int]]
    character: str | None = None


@dataclass
class QCSettings:
    """What QC measures and where it draws the line (every threshold is a flag, not a failure).

    Attributes:
        max_offset_frames: |A/V offset| above this many frames is flagged.
        min_lse_c: syncnet_v2 confidence below this is flagged (published real footage: 6-8).
        min_expert_c: expert confidence (its own scale) at or below this is flagged.
        max_seam: grey levels the composite may add across the mask edge (untouched footage
            measures 0 +- 1: the pictures' own noise).
        max_flicker: grey levels of temporal flicker the composite may add in the mouth
            (judged against the untouched frames beside a segment, at least as much flicker
            as those frames showed: a speaking mouth flickers by itself).
        baseline_frames: untouched frames on each side of a segment that seam and flicker are
            measured against when there is no source.
        sheet_frames: pictures per shot on the contact sheet.
    """

    max_offset_frames: int = 1
    min_lse_c: float = 3.0
    min_expert_c: float = 0.0
    max_seam: float = 4.0
    max_flicker: float = 3.0
    baseline_frames: int = 8
    sheet_frames: int = 6


@dataclass
class _Collect:
    segment: QCSegment
    times: list[float] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    seam: list[float] = field(default_factory=list)
    flicker: list[float] = field(default_factory=list)
    # Untouched frames beside the segment (frame -> box) and their values, when no source.
    baseline: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    base_seam: list[float] = field(default_factory=list)
    base_flicker: list[float] = field(default_factory=list)

    @property
    def last(self) -> int:
        return max([*self.segment.boxes, *self.baseline], default=-1)


def _baseline(segment: QCSegment, shot: tuple[int, int] | None,
              count: int) -> dict[int, tuple[int, int, int, int]]:
    """Up to ``count`` frames on each side of ``segment``, inside its ``shot`` ([start, end)),
    with the segment's first or last box: the same face, untouched."""
    if not segment.boxes or shot is None or count <= 0:
        return {}
    first, last = min(segment.boxes), max(segment.boxes)
    before = range(max(shot[0], segment.start - count), segment.start)
    after = range(segment.end, min(shot[1], segment.end + count))
    return {**{f: segment.boxes[first] for f in before},
            **{f: segment.boxes[last] for f in after}}


def _edge_terms(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gy, gx = np.gradient(mask)
    norm = np.hypot(gx, gy)
    band = norm > 0.01
    return gx[band] / norm[band], gy[band] / norm[band], band


def seam_value(luma: np.ndarray, mask: np.ndarray) -> float:
    """Mean |dL/dn| (grey levels per pixel) across the soft edge of ``mask`` in ``luma``."""
    nx, ny, band = _edge_terms(mask)
    if not band.any():
        return 0.0
    ly, lx = np.gradient(luma)
    return float(np.abs(lx[band] * nx + ly[band] * ny).mean())


def flicker_value(previous2: np.ndarray, previous: np.ndarray, current: np.ndarray,
                  mask: np.ndarray) -> float:
    """Mean |L(t-1) - (L(t-2) + L(t)) / 2| inside the mouth region (mask > 0.5)."""
    inside = mask > 0.5
    if not inside.any():
        return 0.0
    second = previous - (previous2 + current) / 2
    return float(np.abs(second[inside]).mean())


def _luma(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _box_metrics(lumas: list[np.ndarray], box, mask) -> tuple[float, float | None]:
    x0, y0, x1, y1 = box
    crops = [lum[y0:y1, x0:x1] for lum in lumas]
    seam = seam_value(crops[-1], mask)
    flicker = flicker_value(*crops, mask) if len(crops) == 3 else None
    return seam, flicker


def sheet_picks(segments: list[QCSegment], count: int) -> set[int]:
    """Frames shown on a shot's contact sheet: ``count`` spread over its dubbed frames."""
    frames = sorted({f for s in segments for f in s.boxes})
    if not frames:
        return set()
    at = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return {frames[i] for i in at}


def measure_segments(output: Path, segments: list[QCSegment], *, source: Path | None = None,
                     sync: SyncModel | None = None, audio: AudioSource | None = None,
                     sheet_frames: int = 6, sheet_dir: Path | None = None,
                     source_damage_accepted: bool = False,
                     shots: dict[int, tuple[int, int]] | None = None, baseline_frames: int = 8
                     ) -> tuple[list[dict], dict[int, str]]:
    """Decode ``output`` (and ``source`` in step) once and measure every segment.

    Without a ``source``, each segment's seam and flicker are measured on the untouched
    frames beside it too (``baseline_frames`` each side, within its shot from ``shots``:
    index -> [start, end)).

    A shot's contact sheet is written into ``sheet_dir`` as soon as its last segment is
    measured, so a feature's worth of tiles is never held at once.

    Returns:
        (one dict per segment: name, shot, character, frames, sync, seam, flicker;
        contact-sheet file name per shot).
    """
    from lipdub.pipeline.qc.report import write_contact_sheet

    by_shot: dict[int, list[QCSegment]] = {}
    for seg in segments:
        by_shot.setdefault(seg.shot, []).append(seg)
    unfinished = {shot: len(segs) for shot, segs in by_shot.items()}
    sheets: dict[int, str] = {}

    def finished(col: _Collect, start_time: float) -> None:
        results.append(_finish(col, sync, audio, start_time, source is not None))
        shot = col.segment.shot
        unfinished[shot] -= 1
        shot_tiles = tiles.pop(shot, None) if unfinished[shot] == 0 else None
        if shot_tiles and sheet_dir is not None:
            sheets[shot] = write_contact_sheet(shot_tiles, sheet_dir, shot)

    picks = set().union(*(sheet_picks(s, sheet_frames) for s in by_shot.values()))
    collecting = {s.name: _Collect(s) for s in segments}
    if source is None:
        for col in collecting.values():
            col.baseline = _baseline(col.segment, (shots or {}).get(col.segment.shot),
                                     baseline_frames)
    last = max((col.last + 1 for col in collecting.values()), default=0)
    lasts = {name: col.last for name, col in collecting.items()}
    tiles: dict[int, list] = {}
    history: list[tuple[np.ndarray, np.ndarray | None]] = []  # (output luma, source luma)
    results: list[dict] = []
    out_frames = iter_video_frames(output)
    src_frames = (iter_video_frames(source, accept_damaged=source_damage_accepted) if source
                  else itertools.repeat(None))
    t0 = None
    for index, (frame, src) in enumerate(zip(out_frames, src_frames)):
        if index >= last:
            break
        time = float(frame.pts * frame.time_base)
        t0 = time if t0 is None else t0
        active = [c for c in collecting.values()
                  if c.segment.start <= index < c.segment.end and index in c.segment.boxes]
        beside = [c for c in collecting.values() if index in c.baseline]
        if not active and not beside:
            history.clear()
            continue
        bgr = to_bgr(frame)
        src_bgr = to_bgr(src) if src is not None else None
        history = (history + [(_luma(bgr), None if src_bgr is None else _luma(src_bgr))])[-3:]
        for col in beside:
            _measure_untouched(col, index, history)
        for col in active:
            _measure_synced(col, index, history, bgr, src_bgr, sync)
            col.times.append(time)
            if index in picks:
                box = col.segment.boxes[index]
                tiles.setdefault(col.segment.shot, []).append(
                    (index, _tile(src_bgr, box), _tile(bgr, box)))
        for col in [c for c in [*active, *beside] if index == lasts[c.segment.name]]:
            finished(col, t0)
            del collecting[col.segment.name]
    for col in list(collecting.values()):  # segments whose pictures ran out early
        finished(col, t0 or 0.0)
    order = {s.name: i for i, s in enumerate(segments)}
    return sorted(results, key=lambda r: order[r["name"]]), sheets


def _measure_untouched(col: _Collect, index: int, history: list) -> None:
    """Seam and flicker of an untouched frame beside a segment (its baseline)."""
    box = col.baseline[index]
    seam, flicker = _box_metrics([h[0] for h in history], box,
                                 lower_face_mask(box[3] - box[1], box[2] - box[0]))
    col.base_seam.append(seam)
    # Flicker spans three pictures: only where all three are untouched.
    if flicker is not None and {index - 1, index - 2} <= col.baseline.keys():
        col.base_flicker.append(flicker)


def _measure_synced(col: _Collect, index: int, history: list, bgr: np.ndarray,
                    src_bgr: np.ndarray | None, sync: SyncModel | None) -> None:
    """Seam and flicker of a synced frame (less the source's own, when there is a source),
    and its crop for the sync measurement."""
    box = col.segment.boxes[index]
    mask = lower_face_mask(box[3] - box[1], box[2] - box[0])
    seam, flicker = _box_metrics([h[0] for h in history], box, mask)
    if src_bgr is not None:
        src_seam, src_flicker = _box_metrics([h[1] for h in history], box, mask)
        seam -= src_seam
        flicker = None if flicker is None else flicker - src_flicker
    col.seam.append(seam)
    if flicker is not None:
        col.flicker.append(flicker)
    if sync is not None:
        col.crops.append(model_crop(sync, bgr, box))


def _tile(bgr: np.ndarray | None, box, height: int = 160) -> np.ndarray | None:
    if bgr is None:
        return None
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    x0, y0 = max(0, x0 - w // 5), max(0, y0 - h // 5)
    x1, y1 = min(bgr.shape[1], x1 + w // 5), min(bgr.shape[0], y1 + h // 5)
    crop = bgr[y0:y1, x0:x1]
    width = max(1, round(crop.shape[1] * height / max(1, crop.shape[0])))
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def _finish(col: _Collect, sync: SyncModel | None, audio: AudioSource | None, t0: float,
            relative: bool) -> dict:
    seg = col.segment
    if sync is None or audio is None:
        sync_result = {"measured": False, "reason": "no sync model given (syncnet_v2 or expert)"}
    elif not col.crops:
        sync_result = {"measured": False, "reason": "no pictures with a face box"}
    else:
        sync_result = measure(sync, col.crops, np.asarray(col.times), audio, t0)
    seam = float(np.mean(col.seam)) if col.seam else None
    flicker = float(np.mean(col.flicker)) if col.flicker else None
    beside = {}
    if relative:
        against = "source"
    elif col.base_seam:
        against = "untouched frames beside"
        beside = {"seam_beside": round(float(np.mean(col.base_seam)), 3),
                  "flicker_beside": (round(float(np.mean(col.base_flicker)), 3)
                                     if col.base_flicker else None)}
        seam = None if seam is None else seam - beside["seam_beside"]
        flicker = (flicker - beside["flicker_beside"]
                   if flicker is not None and col.base_flicker else None)
    else:
        against = "nothing"  # reported as measured, not judged
    return {
        "name": seg.name, "shot": seg.shot, "character": seg.character,
        "start": seg.start, "end": seg.end, "frames_measured": len(col.times),
        "start_time": round(col.times[0] - t0, 4) if col.times else None,
        "end_time": round(col.times[-1] - t0, 4) if col.times else None,
        "sync": sync_result,
        "seam": None if seam is None else round(seam, 3),
        "flicker": None if flicker is None else round(flicker, 3),
        "relative_to": against, **beside,
        "silent": [],  # filled by run_qc: "delivered audio", "stem"
    }


class _Silence:
    """Listens to audio blocks going by and tells, per span ([start, end) seconds after the
    first picture; ``delay``: seconds of audio before it), whether every sample of every
    channel in it was zero (a span past the audio's end is silent there)."""

    def __init__(self, spans: list[tuple[float, float]], rate: int, delay: float = 0.0):
        self.bounds = [(int(round((a + delay) * rate)), int(min(b + delay, 1e9) * rate))
                       for a, b in spans]
        self.heard = [False] * len(spans)
        self.at = 0

    def hear(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``blocks`` passed on as they are, listened to on the way."""
        for block in blocks:
            nonzero = np.flatnonzero(np.any(block != 0, axis=0)) + self.at
            for i, (lo, hi) in enumerate(self.bounds):
                if not self.heard[i] and lo < self.at + block.shape[1] and hi > self.at \
                        and len(nonzero):
                    j = np.searchsorted(nonzero, lo)
                    self.heard[i] = j < len(nonzero) and nonzero[j] < hi
            self.at += block.shape[1]
            yield block

    def silent(self) -> list[bool]:
        return [not h for h in self.heard]


def _audio_blocks(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    """The sample rate and the stereo float blocks of ``path``'s audio, streamed."""
    from lipdub.pipeline.stems import iter_audio_blocks

    with open_media(path) as container:
        rate = container.streams.audio[0].rate
    return rate, iter_audio_blocks(path, None, mono=False, block_seconds=10.0)


def silent_spans(path: Path, spans: list[tuple[float, float]], delay: float = 0.0
                 ) -> list[bool]:
    """Whether ``path``'s audio is digital silence over each span (see :class:`_Silence`)."""
    rate, blocks = _audio_blocks(path)
    listener = _Silence(spans, rate, delay)
    for _ in listener.hear(blocks):
        pass
    return listener.silent()


def _segment_spans(results: list[dict]) -> tuple[list[dict], list[tuple[float, float]]]:
    """The measured segments and their spans in seconds, the last picture's duration in."""
    measured = [r for r in results if r["start_time"] is not None]
    spans = []
    for r in measured:
        step = (r["end_time"] - r["start_time"]) / max(r["frames_measured"] - 1, 1)
        spans.append((r["start_time"], r["end_time"] + step))
    return measured, spans


def _mark_silence(measured: list[dict], silent: list[bool], where: str) -> None:
    """Add ``where`` to the ``silent`` list of each segment that is silent in it."""
    for r, quiet in zip(measured, silent):
        if quiet:
            r["silent"].append(where)


def flag_segment(result: dict, settings: QCSettings) -> list[str]:
    """Why a segment needs a look (empty: it passes every threshold)."""
    flags = []
    sync = result["sync"]
    if sync.get("measured"):
        if abs(sync["offset_frames"]) > settings.max_offset_frames:
            flags.append(f"A/V offset {sync['offset_frames']:+d} frames "
                         f"({sync['offset_seconds']:+.3f} s)")
        low = settings.min_lse_c if sync["metric"] == "syncnet_v2" else settings.min_expert_c
        if sync["lse_c"] <= low:
            flags.append(f"low sync confidence (LSE-C {sync['lse_c']:.2f} <= {low:g})")
    judged = result.get("relative_to", "source") != "nothing"
    if judged and result["seam"] is not None and result["seam"] > settings.max_seam:
        flags.append(f"visible seam (+{result['seam']:.1f} grey levels across the mask edge)")
    # Beside the segment rather than under it, a face's own mouth moves differently (speech
    # starts and stops): there, flicker must also exceed what the face showed by itself.
    flicker_limit = max(settings.max_flicker, result.get("flicker_beside") or 0.0)
    if judged and result["flicker"] is not None and result["flicker"] > flicker_limit:
        flags.append(f"mouth flicker (+{result['flicker']:.1f} grey levels)")
    for where in result.get("silent", []):
        flags.append(f"digital silence in the {where} (every sample zero)")
    return flags


def summarise(results: list[dict], shots: list[tuple[int, int, int]],
              settings: QCSettings) -> list[dict]:
    """Per shot (index, start, end): its segments with their flags; flagged shots first."""
    rows = []
    known = {index for index, _, _ in shots}
    extra = sorted({r["shot"] for r in results} - known)  # segments of shots not listed
    shots = list(shots) + [(i, min(r["start"] for r in results if r["shot"] == i),
                            max(r["end"] for r in results if r["shot"] == i)) for i in extra]
    for index, start, end in shots:
        segs = [dict(r, flags=flag_segment(r, settings)) for r in results if r["shot"] == index]
        measured = [s["sync"] for s in segs if s["sync"].get("measured")]
        rows.append({
            "shot": index, "start": start, "end": end, "segments": segs,
            "flagged": any(s["flags"] for s in segs),
            "worst_lse_c": min((m["lse_c"] for m in measured), default=None),
            "worst_offset": max((m["offset_frames"] for m in measured), key=abs, default=None),
        })
    return sorted(rows, key=lambda r: (not r["flagged"], r["shot"]))


def measure_loudness(path: Path, listener: _Silence | None = None) -> dict:
    """Integrated loudness (ITU-R BS.1770-4, LUFS) and sample peak of the delivered audio.

    Streamed (:mod:`lipdub.pipeline.media.loudness`): memory stays flat however long the film. A
    mix with more than two channels is down-mixed to stereo by libswresample first. ``listener``
    hears the same blocks (one decode for loudness and silence).
    """
    from lipdub.pipeline.media.loudness import integrated_loudness

    rate, blocks = _audio_blocks(path)
    loudness, peak = integrated_loudness(listener.hear(blocks) if listener else blocks, rate)
    return {"measured": True, "standard": "ITU-R BS.1770-4 (pyloudnorm's K-weighting)",
            "integrated_lufs": round(loudness, 2) if np.isfinite(loudness) else None,
            "sample_peak_dbfs": round(20 * np.log10(peak), 2) if peak > 0 else None}


def _picture_clock(path: Path) -> dict:
    """The picture's frame rate and start timecode, so the report can give timecodes beside
    frame numbers (None where the file has neither)."""
    rate = probe_video(path).average_rate
    start = read_timecode(path)
    return {"frame_rate": str(rate) if rate else None,
            "timecode": start.as_dict() if start else None}


def run_qc(output: Path, audio: Path, segments: list[QCSegment],
           shots: list[tuple[int, int, int]], out_dir: Path, *, source: Path | None = None,
           lse: str | None = None, expert: str | None = None, device: str = "cpu",
           settings: QCSettings | None = None, loudness: bool = True,
           header: dict | None = None, source_damage_accepted: bool = False,
           stems: dict[str, Path] | None = None) -> dict:
    """Measure, flag and write the QC report of ``output`` (see the module docstring).

    Arguments:
        output: the dubbed picture; audio: the delivered audio (sample 0 = its first picture).
        segments, shots: what to measure; shots as (index, first frame, end frame).
        out_dir: where ``qc.json``, ``qc.html`` and the PNGs go (created).
        source: the undubbed picture, for before/after and source-relative seam and flicker.
        lse, expert: sync networks' weights (name or file); syncnet_v2 is preferred.
        header: shown at the top of the report and stored in the JSON (consent, provenance,
            the source's ``timecode``...); without a ``timecode`` the output's own is used.
        source_damage_accepted: the source decodes past damage (the job accepted it; the
            header's ``damage`` lists it).
        stems: each character's dialogue stem (aligned to the first picture): a segment
            whose stem is digital silence is flagged.

    Returns:
        The report as stored in ``qc.json`` (plus ``html`` and ``json`` paths).
    """
    from lipdub.pipeline.lse_segment import load_sync_model

    settings = settings or QCSettings()
    sync = load_sync_model(lse, expert, device)
    same_file = Path(audio).resolve() == Path(output).resolve()
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _measure_and_write(output, audio, segments, shots, out_dir, source, sync,
                                  settings, loudness, header, source_damage_accepted, stems,
                                  same_file)
    except BaseException:
        if created:  # a refused input or a stop leaves no half-made report folder
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _measure_and_write(output: Path, audio: Path, segments: list[QCSegment],
                       shots: list[tuple[int, int, int]], out_dir: Path, source: Path | None,
                       sync: SyncModel | None, settings: QCSettings, loudness: bool,
                       header: dict | None, source_damage_accepted: bool,
                       stems: dict[str, Path] | None, same_file: bool) -> dict:
    from lipdub.pipeline.qc.report import write_report

    delay = audio_lead(output) if same_file else 0.0
    # The delivered audio, decoded for the sync network into a scratch file (memory-mapped).
    with tempfile.TemporaryDirectory(prefix=".qc_audio_", dir=out_dir) as scratch:
        source_audio = AudioSource(audio, sync.kind, delay, work_dir=Path(scratch)) \
            if sync else None
        results, sheets = measure_segments(output, segments, source=source, sync=sync,
                                           audio=source_audio,
                                           sheet_frames=settings.sheet_frames, sheet_dir=out_dir,
                                           source_damage_accepted=source_damage_accepted,
                                           shots={i: (a, b) for i, a, b in shots},
                                           baseline_frames=settings.baseline_frames)
        del source_audio  # its memory map, before the scratch folder goes
    # The delivered audio is decoded once, for its loudness and for silence: over the whole
    # of it (span 0) and over each segment.
    measured, spans = _segment_spans(results)
    rate, blocks = _audio_blocks(audio)  # nothing is decoded until the blocks are read
    listener = _Silence([(0.0, float("inf")), *spans], rate, delay)
    if loudness:
        loud = measure_loudness(audio, listener)
    else:
        loud = {"measured": False, "reason": "not asked"}
        for _ in listener.hear(blocks):
            pass
    silent = listener.silent()
    _mark_silence(measured, silent[1:], "delivered audio")
    for character, stem in (stems or {}).items():
        own, own_spans = _segment_spans([r for r in results if r["character"] == character])
        _mark_silence(own, silent_spans(stem, own_spans) if own_spans else [],
                      f"{character}'s stem")
    rows = summarise(results, shots, settings)
    report = {
        **_picture_clock(output),
        **(header or {}),
        "output": str(output), "source": str(source) if source else None, "audio": str(audio),
        "sync_model": {"kind": sync.kind, "weights": sync.source} if sync else None,
        "loudness": loud,
        "audio_silent": silent[0],
        "thresholds": asdict(settings),
        "shots_flagged": sum(r["flagged"] for r in rows),
        "segments_flagged": sum(bool(s["flags"]) for r in rows for s in r["segments"]),
        "shots": rows,
    }
    return write_report(report, sheets, out_dir)
