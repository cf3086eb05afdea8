"""The run summary of a film, written beside the output (``OUT.json``): what the run did, for
people, the editors' plugins (they read it as JSON: lipdub.plugin.core.jobs) and ``lipdub qc``.

Frames are film frame indices, ranges half-open (``[start, end)``, as everywhere); times are
seconds from the first picture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class FilmSummary:
    film: str
    output: str
    frames: int
    frames_changed: int
    shots: list[dict]  # {index, start, end, start_time, end_time}
    tracks: list[dict]  # {shot, track, order, face ("face k of N from the left"), first, end}
    segments: list[dict]  # speech found in each stem (lipdub.pipeline.stems.Segment)
    decisions: list[dict]  # routing's decision per piece of speech (routing.Decision)
    units: list[dict]  # the lip-synced units (film_units.SyncUnit) with cached, result
    units_computed: int
    units_cached: int
    audio_report: dict  # what happened to the dub mix (media.encode.AudioReport)
    consent: str | None  # the job's rights/consent note, carried along
    timings: dict[str, float]  # seconds per stage: analysis, tracking, routing, lipsync, ...
    stem_mix: dict | None  # the stems' sum: clipped samples, peak (None: output.audio given)
    damage: list[dict]  # accepted damage of the film: {frame, time, what}
    chunks: list[dict]  # farm runs: one record per chunk (empty in one process)
    profile: str  # the output profile (media.profiles)
    pix_fmt: str
    packets_copied: int  # untouched pictures copied from the source packet for packet
    frames_encoded: int
    passthrough: str  # why packets were (or were not) copied
    size_note: str  # an odd size padded for the output profile (else empty)
    timecode: dict | None  # the source's start timecode, carried to the output
    provenance: dict[str, str]  # the container metadata saying what was altered
    otio: str  # the OpenTimelineIO timeline's file
    qc: dict | None  # QC's outcome (qc.verdict.QCOutcome.summary), None without QC
    flow_run: dict  # {id, name, tags} of the Prefect run

    def as_dict(self) -> dict:
        return asdict(self)
