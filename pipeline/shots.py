"""Shot boundaries with PySceneDetect, fed with our own decoded frames (one decode for all).

PySceneDetect's detectors take frames one at a time with a timecode; giving them ours lets the
film scan decode the picture once for frame times, cuts and face detection together. Cuts are
kept as timestamps and mapped to our frame indices by time, never by PySceneDetect's frame
numbers (which follow timestamps on variable-frame-rate input).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scenedetect import ContentDetector
from scenedetect.common import FrameTimecode, Timecode

# Long side of the copy the shot detector sees: cuts survive heavy downscaling, and
# ContentDetector's cost is per pixel.
SHOT_DETECT_SIDE = 256


@dataclass(frozen=True)
class Shot:
    """A run of frames between two cuts: ``start`` inclusive, ``end`` exclusive (frame indices)."""

    index: int
    start: int
    end: int
    start_time: float
    end_time: float

    @property
    def frames(self) -> int:
        return self.end - self.start


class ShotDetector:
    """Feeds frames to PySceneDetect's ContentDetector and collects the cut times.

    Arguments:
        average_rate: the stream's nominal rate (PySceneDetect's minimum shot length is in frames).
        threshold: ContentDetector's threshold (27 is its default).
        min_shot_frames: shortest shot allowed.
    """

    def __init__(self, average_rate: Fraction | None, threshold: float = 27.0,
                 min_shot_frames: int = 8):
        self.rate = average_rate or Fraction(25)
        self.detector = ContentDetector(threshold=threshold, min_scene_len=min_shot_frames)
        self.cut_times: list[float] = []

    def add(self, pts: int, time_base: Fraction, small_bgr: np.ndarray) -> None:
        """Give the next frame (its timestamp, and a small BGR copy)."""
        timecode = FrameTimecode(Timecode(pts, time_base), fps=self.rate)
        for cut in self.detector.process_frame(timecode, small_bgr):
            self.cut_times.append(float(cut.seconds))


def shots_from_cuts(times: np.ndarray, cut_times: list[float]) -> list[Shot]:
    """Shots over frames with presentation ``times``, split at the frames shown at ``cut_times``.

    A cut at time t starts a new shot with the first frame shown at or after t (within half a
    frame, for rounding in timecodes).
    """
    n = len(times)
    if n == 0:
        return []
    step = float(np.median(np.diff(times))) if n > 1 else 0.04
    starts = sorted({int(np.searchsorted(times, t - step / 2)) for t in cut_times} - {0, n})
    bounds = [0, *[s for s in starts if 0 < s < n], n]
    end_time = float(times[-1] + step)
    return [
        Shot(i, a, b, float(times[a]), float(times[b]) if b < n else end_time)
        for i, (a, b) in enumerate(zip(bounds, bounds[1:]))
    ]


def shots_from_list(times: np.ndarray, boundaries: list[float]) -> list[Shot]:
    """Shots from a given list of cut times in seconds (an editor's shot list)."""
    return shots_from_cuts(times, [float(t) for t in boundaries])
