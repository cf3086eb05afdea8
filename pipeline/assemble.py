"""Assemble the dubbed film: stream it once, composite the synced faces, copy everything else.

Unit results are opened when their first frame comes and dropped after their last, so memory
holds only the units that overlap the current frame. When the source is intra-only and the
output profile writes the same codec (:mod:`lipdub.pipeline.media.passthrough`), untouched pictures
are copied packet for packet and only the edited ones are decoded and encoded; otherwise every
picture is decoded and encoded once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipdub.pipeline import stopping
from lipdub.pipeline.composite import paste_faces
from lipdub.pipeline.film_scan import FilmScan
from lipdub.pipeline.media.decode import VideoInfo
from lipdub.pipeline.media.encode import AudioReport, VideoWriter
from lipdub.pipeline.media.frames import is_planar_yuv
from lipdub.pipeline.media.passthrough import check_passthrough, iter_packets_and_frames
from lipdub.pipeline.media.stream_copy import CannotCopy, copy_video_stream


class _OpenUnit:
    def __init__(self, path: Path):
        with np.load(path) as data:
            self.frames = data["frames"]
            self.boxes = data["boxes"]
            self.preds = data["preds"]
        self.row = {int(f): i for i, f in enumerate(self.frames)}
        self.last = int(self.frames[-1]) if len(self.frames) else -1


@dataclass
class Assembly:
    """What :func:`assemble_film` did.

    Attributes:
        changed: pictures composited.
        audio: what happened to the audio.
        profile: the output profile's name.
        pix_fmt: the output's pixel format.
        packets_copied: untouched pictures copied from the source packet for packet.
        frames_encoded: pictures encoded.
        passthrough: why packets were (or were not) copied.
        pieces_from_source, pieces_encoded: in edited ProRes/DNxHR pictures, the coded slices
            (rows) taken from the source (everything away from the faces) and the ones encoded.
        splice: why an edited picture was written whole, when one was (else empty).
        size_note: an odd size padded by a pixel for the output profile (else empty).
    """

    changed: int
    audio: AudioReport | None
    profile: str
    pix_fmt: str
    packets_copied: int = 0
    frames_encoded: int = 0
    passthrough: str = ""
    pieces_from_source: int = 0
    pieces_encoded: int = 0
    splice: str = ""
    size_note: str = ""


# A unit's result file, or a call that waits until the unit is done and returns its file (the
# film is then written while its units are still being lip-synced).
UnitFile = Path | Callable[[], Path]


def _path(unit: UnitFile) -> Path:
    return unit() if callable(unit) else unit


def _edited_frames(units: list[tuple[int, int, UnitFile]]) -> set[int]:
    wanted: set[int] = set()
    for _, _, unit in units:
        with np.load(_path(unit)) as data:
            wanted.update(int(f) for f in data["frames"])
    return wanted


def assemble_film(info: VideoInfo, scan: FilmScan, units: list[tuple[int, int, UnitFile]],
                  output: Path, *, audio: Path | None, codec: str | None,
                  match_colour: bool = True, timecode: str | None = None,
                  metadata: dict[str, str] | None = None, passthrough: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> Assembly:
    """Write the dubbed film to ``output``.

    Arguments:
        info, scan: the film.
        units: (first frame, end frame, result file) of every synced unit; the file may be
            a call that waits for it, made when the assembly reaches the unit's first frame
            (for packet copy, all are waited for first: which pictures to decode depends on
            them all).
        output: the final file (written under a temporary name, renamed when complete).
        audio: the audio to mux (the dub mix), cut or padded to the picture.
        codec: output profile name (see :data:`lipdub.pipeline.media.profiles.PROFILES`).
        timecode: start timecode written on the output (the source's).
        metadata: container metadata (provenance).
        passthrough: copy untouched packets when the source and output codecs allow it.
        progress: called with (frames done, total) now and then.
    """
    copy_note = ""
    if not units and passthrough:  # nobody speaks: the coded pictures go as they are
        copied, copy_note = _copy_whole(info, scan, output, audio, timecode, metadata)
        if copied is not None:
            return copied
    pending = sorted(units, key=lambda u: (u[0], u[1]))
    active: list[_OpenUnit] = []
    changed = 0
    total = len(scan.times)
    writer = VideoWriter(output, width=info.width, height=info.height, time_base=info.time_base,
                         average_rate=info.average_rate, codec=codec, source_pix_fmt=info.pix_fmt,
                         sample_aspect_ratio=info.sample_aspect_ratio, audio=audio,
                         audio_start=float(scan.times[0]), duration=scan.duration,
                         colour=info.colour, timecode=timecode, metadata=metadata)
    try:
        check = check_passthrough(info.path, writer) if passthrough else None
        pictures: Iterator
        if check and check.ok:
            pictures = iter_packets_and_frames(info.path, _edited_frames(units))
        else:
            pictures = ((i, None, f) for i, f in enumerate(info.frames()))
        for index, packet, frame in pictures:
            stopping.check()  # a thread of its own in a film run: stopped here on a signal
            while pending and pending[0][0] <= index:
                active.append(_OpenUnit(_path(pending.pop(0)[2])))
            active = [u for u in active if u.last >= index]
            faces = [(tuple(int(v) for v in u.boxes[u.row[index]]), u.preds[u.row[index]])
                     for u in active if index in u.row]
            if frame is None:  # an untouched picture of an intra-only source
                writer.copy_packet(packet)
            elif packet is not None and faces and is_planar_yuv(frame):
                # An edited picture of an intra-only source: only the pieces with a face change.
                frame = paste_faces(frame, faces, match_colour=match_colour)
                changed += 1
                writer.write_spliced(frame, packet, [box for box, _ in faces])
            else:
                if faces and is_planar_yuv(frame):
                    frame = paste_faces(frame, faces, match_colour=match_colour)
                    changed += 1
                writer.write(frame)
            if progress and index % 50 == 0:
                progress(index, total)
        report = writer.close()
    except BaseException:
        writer.abort()
        raise
    reason = check.reason if check else "off"
    return Assembly(changed, report, writer.profile.name, writer.pix_fmt,
                    writer.packets_copied, writer.frames_encoded,
                    copy_note + ("packets copied: " if check and check.ok
                                 else "no packet copy: ") + reason,
                    writer.pieces_from_source, writer.pieces_encoded, writer.splice_fallback,
                    writer.size_note)


def _copy_whole(info: VideoInfo, scan: FilmScan, output: Path, audio: Path | None,
                timecode: str | None, metadata: dict[str, str] | None
                ) -> tuple[Assembly | None, str]:
    """The film copied whole (no picture edited); or None and why, where the output's
    container cannot hold its codec (then it is encoded as usual)."""
    try:
        done = copy_video_stream(info.path, output, audio=audio,
                                 audio_start=float(scan.times[0]), duration=scan.duration,
                                 timecode=timecode, metadata=metadata)
    except CannotCopy as exc:
        return None, f"no picture edited, but no stream copy: {exc}; "
    return Assembly(0, done.audio, f"stream copy ({done.codec})", done.pix_fmt,
                    packets_copied=done.packets_copied,
                    passthrough="stream copied whole: no picture edited"), ""
