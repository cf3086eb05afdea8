"""Assemble the dubbed film: stream it once, composite the synced faces, copy everything else.

Unit results are opened when their first frame comes and dropped after their last, so memory
holds only the units that overlap the current frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .composite import composite_face
from .encode import AudioReport, VideoWriter
from .film_scan import FilmScan
from .frames import is_planar_yuv, patch_frame, to_bgr
from .media import VideoInfo, iter_video_frames


class _OpenUnit:
    def __init__(self, path: Path):
        with np.load(path) as data:
            self.frames = data["frames"]
            self.boxes = data["boxes"]
            self.preds = data["preds"]
        self.row = {int(f): i for i, f in enumerate(self.frames)}
        self.last = int(self.frames[-1]) if len(self.frames) else -1


def assemble_film(info: VideoInfo, scan: FilmScan, units: list[tuple[int, int, Path]],
                  output: Path, *, audio: Path | None, codec: str | None,
                  match_colour: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> tuple[int, AudioReport]:
    """Write the dubbed film to ``output``.

    Arguments:
        info, scan: the film.
        units: (first frame, end frame, result file) of every synced unit.
        output: the final file (written under a temporary name, renamed when complete).
        audio: the audio to mux (the dub mix), cut or padded to the picture.
        codec: video codec name (see :data:`pipeline.encode.VIDEO_CODECS`).
        progress: called with (frames done, total) now and then.

    Returns:
        (frames changed, audio report).
    """
    pending = sorted(units)
    active: list[_OpenUnit] = []
    changed = 0
    total = len(scan.times)
    writer = VideoWriter(output, width=info.width, height=info.height, time_base=info.time_base,
                         average_rate=info.average_rate, codec=codec, source_pix_fmt=info.pix_fmt,
                         sample_aspect_ratio=info.sample_aspect_ratio, audio=audio,
                         audio_start=float(scan.times[0]), duration=scan.duration,
                         colour=info.colour)
    try:
        for index, frame in enumerate(iter_video_frames(info.path)):
            while pending and pending[0][0] <= index:
                active.append(_OpenUnit(pending.pop(0)[2]))
            active = [u for u in active if u.last >= index]
            rows = [(u, u.row[index]) for u in active if index in u.row]
            if rows and is_planar_yuv(frame):
                bgr = to_bgr(frame)
                for unit, row in rows:
                    x0, y0, x1, y1 = (int(v) for v in unit.boxes[row])
                    blended, mask = composite_face(bgr[y0:y1, x0:x1],
                                                   unit.preds[row].astype(np.float32),
                                                   match_colour=match_colour)
                    bgr[y0:y1, x0:x1] = blended
                    frame = patch_frame(frame, bgr, (x0, y0, x1, y1), mask)
                changed += 1
            writer.write(frame)
            if progress and index % 50 == 0:
                progress(index, total)
        report = writer.close()
    except BaseException:
        writer.abort()
        raise
    return changed, report
