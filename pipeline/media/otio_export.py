"""An OpenTimelineIO timeline of a dubbed film, at source timecode, for an editor to conform.

Track ``V1`` holds one clip per shot; ``V2`` (and ``V3``... where dubbed segments overlap, two
faces in one shot) holds one clip per dubbed segment, with gaps between. Every clip points at
the delivered file (its available range starts at the source's start timecode, which the output
carries), so a conform in Resolve or any OTIO-aware tool lines the dubbed media up with the
original cut. Each clip's metadata (``lipdub``) says what it is: shot, character, frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio

from lipdub.pipeline.media.timecode import Timecode
from lipdub.pipeline.partial_files import writing


@dataclass(frozen=True)
class Span:
    """Frames [start, end) of the film with a name and metadata for the timeline."""

    name: str
    start: int
    end: int
    metadata: dict = field(default_factory=dict)


def _lanes(spans: list[Span]) -> list[list[Span]]:
    """Spread spans over as few tracks as needed so that none overlaps on a track."""
    lanes: list[list[Span]] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        for lane in lanes:
            if lane[-1].end <= span.start:
                lane.append(span)
                break
        else:
            lanes.append([span])
    return lanes


def build_timeline(name: str, media: Path, rate: Fraction, frames: int,
                   start: Timecode | None, shots: list[Span],
                   segments: list[Span], metadata: dict | None = None) -> otio.schema.Timeline:
    """The timeline (see the module docstring).

    Arguments:
        name: the timeline's name.
        media: the delivered file the clips point at.
        rate: the picture's frame rate.
        frames: pictures in the file.
        start: the source's start timecode (None: 00:00:00:00).
        shots, segments: frame ranges of the shots and of the dubbed segments.
        metadata: stored on the timeline under ``lipdub`` (provenance, consent...).
    """
    fps = float(rate)
    first = start.frames if start else 0
    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = otio.opentime.RationalTime(first, fps)
    timeline.metadata["lipdub"] = dict(metadata or {})
    timeline.metadata["lipdub"]["drop_frame"] = bool(start and start.drop_frame)
    available = otio.opentime.TimeRange(otio.opentime.RationalTime(first, fps),
                                        otio.opentime.RationalTime(frames, fps))

    def clip(span: Span) -> otio.schema.Clip:
        ref = otio.schema.ExternalReference(target_url=media.resolve().as_uri(),
                                            available_range=available)
        source = otio.opentime.TimeRange(otio.opentime.RationalTime(first + span.start, fps),
                                         otio.opentime.RationalTime(span.end - span.start, fps))
        item = otio.schema.Clip(name=span.name, media_reference=ref, source_range=source)
        item.metadata["lipdub"] = {"first_frame": span.start, "end_frame": span.end,
                                   **span.metadata}
        return item

    picture = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for shot in sorted(shots, key=lambda s: s.start):
        picture.append(clip(shot))
    timeline.tracks.append(picture)
    for number, lane in enumerate(_lanes(segments), start=2):
        track = otio.schema.Track(name=f"V{number}", kind=otio.schema.TrackKind.Video)
        at = 0
        for span in lane:
            if span.start > at:
                track.append(otio.schema.Gap(
                    source_range=otio.opentime.TimeRange(
                        otio.opentime.RationalTime(0, fps),
                        otio.opentime.RationalTime(span.start - at, fps))))
            track.append(clip(span))
            at = span.end
        timeline.tracks.append(track)
    return timeline


def write_timeline(timeline: otio.schema.Timeline, path: Path) -> Path:
    """Write ``timeline`` as ``.otio`` JSON, atomically and durably: it is delivered with the
    film, and an editor must never find half a timeline or an empty one."""
    with writing(path, durable=True) as tmp:
        otio.adapters.write_to_file(timeline, str(tmp))  # the adapter is chosen by the suffix
    return path
