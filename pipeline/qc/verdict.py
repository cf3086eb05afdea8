"""The QC report's verdict as a producer sees it in Prefect: the run's state name, a table of
what needs a look, and warnings in the log.

A film whose QC flagged shots still ends Completed (the output is written and may be fine), but
its state is named after the verdict ("QC: 2 of 14 shots flagged") so the runs list says it; the
``lipdub-qc`` table lists each flagged segment with its frames, timecode, character and reason.
With ``output.qc_fail_on: flagged`` the run fails instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from fractions import Fraction

from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.media.timecode import FrameClock, Timecode


class QCFlagged(LipdubError):
    """QC flagged shots and the job asked for a failed run then (``output.qc_fail_on``)."""


@dataclass
class QCOutcome:
    """What a film's QC found, as the run hands it on: the report's files, its counts and
    verdict, and the whole report (qc.json's content) for the flagged rows."""

    html: str
    json: str
    shots: int
    verdict: str
    shots_flagged: int
    segments_flagged: int
    sync_model: dict | None  # {kind, weights}
    loudness: dict | None
    report: dict = field(repr=False)

    def summary(self) -> dict:
        """The run summary's ``qc`` entry: all but the whole report (it is in qc.json)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "report"}


def verdict_name(shots_flagged: int, shots: int) -> str | None:
    """The run's state name for a flagged film, None when QC flagged nothing."""
    return f"QC: {shots_flagged} of {shots} shots flagged" if shots_flagged else None


def verdict_line(shots_flagged: int, shots: int) -> str:
    """The verdict in one line, flagged or not (the run summary's ``qc.verdict``, which the
    editor plugins show as it is)."""
    return verdict_name(shots_flagged, shots) or f"QC: no shot flagged of {shots}"


def flagged_rows(report: dict, rate: Fraction | float,
                 start: Timecode | None = None) -> list[dict]:
    """One row per flagged segment of a QC report (:func:`lipdub.pipeline.qc.checks.run_qc`), film
    order.

    Frames are half-open, ``[first, end)``; timecodes are the source's (from 00:00:00:00 when it
    has none), the out point being the last frame shown.
    """
    rows, clock = [], FrameClock(rate, start)
    for shot in sorted(report["shots"], key=lambda s: s["shot"]):
        for seg in shot["segments"]:
            if not seg["flags"]:
                continue
            sync = seg["sync"]
            rows.append({
                "shot": shot["shot"], "segment": seg["name"],
                "character": seg.get("character") or "",
                **clock.span(seg["start"], seg["end"]),
                "reason": "; ".join(seg["flags"]),
                "LSE-C": sync["lse_c"] if sync.get("measured") else None,
                "offset (frames)": sync["offset_frames"] if sync.get("measured") else None,
            })
    return rows
