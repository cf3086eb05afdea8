"""SMPTE timecode: read a source's start timecode, count frames with it (drop-frame too).

Where libavformat puts a start timecode when it reads one: MOV/MP4 ``tmcd`` tracks in the video
stream's (and the data stream's) ``timecode`` tag, MXF and some others in the container's, and
Matroska (which has no timecode element) in a ``TIMECODE`` tag. A ``;`` (or ``.``) before the
frames field marks drop-frame counting, as in ``00:59:59;28``.

Drop-frame (29.97 and 59.94 fps material) skips frame *numbers* 0 and 1 (0-3 at 59.94) at the
start of every minute except every tenth, so that the count keeps up with the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.media.decode import open_media

_TC = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")


class TimecodeError(LipdubError):
    """A timecode string that is not ``HH:MM:SS:FF`` or does not fit the frame rate."""


def nominal_fps(rate: Fraction | float) -> int:
    """Frames counted per timecode second: 24 for 23.976, 30 for 29.97, 60 for 59.94."""
    return max(1, round(float(rate)))


def is_drop_frame_rate(rate: Fraction | float) -> bool:
    """Whether drop-frame counting exists for ``rate`` (the NTSC rates 29.97 and 59.94)."""
    fps = nominal_fps(rate)
    return fps % 30 == 0 and abs(float(rate) - fps * 1000 / 1001) < 1e-3


def _drops(fps: int) -> int:
    return 2 * (fps // 30)


@dataclass(frozen=True)
class Timecode:
    """A start timecode with its rate.

    Attributes:
        text: as found or written, e.g. ``01:00:00:00`` or ``00:59:59;28``.
        rate: the picture's frame rate.
        drop_frame: drop-frame counting (``;`` separator).
    """

    text: str
    rate: Fraction
    drop_frame: bool

    @property
    def frames(self) -> int:
        """Frame number of this timecode (frames since 00:00:00:00)."""
        return timecode_to_frames(self.text, self.rate)

    def shifted(self, frames: int) -> str:
        """The timecode ``frames`` pictures later."""
        return frames_to_timecode(self.frames + frames, self.rate, self.drop_frame)

    def as_dict(self) -> dict:
        return {"timecode": self.text, "rate": str(self.rate), "fps": float(self.rate),
                "drop_frame": self.drop_frame}


def parse_timecode(text: str, rate: Fraction | float) -> Timecode:
    """Check ``text`` against ``rate`` and return it as a :class:`Timecode`.

    Raises:
        TimecodeError: malformed, frames field too large, or drop-frame at a non-NTSC rate.
    """
    timecode_to_frames(text, rate)
    drop = _TC.match(text.strip()).group(4) in ";.,"
    return Timecode(text.strip(), Fraction(rate).limit_denominator(1001), drop)


def timecode_to_frames(text: str, rate: Fraction | float) -> int:
    """Frame number of ``HH:MM:SS:FF`` (or ``HH:MM:SS;FF`` drop-frame) at ``rate``."""
    match = _TC.match(text.strip())
    if not match:
        raise TimecodeError(f"timecode {text!r}: write it as HH:MM:SS:FF (HH:MM:SS;FF drop-frame)")
    hours, minutes, seconds, sep, frames = match.groups()
    h, m, s, f = int(hours), int(minutes), int(seconds), int(frames)
    fps = nominal_fps(rate)
    if m > 59 or s > 59 or f >= fps:
        raise TimecodeError(f"timecode {text!r}: a field is out of range at {float(rate):g} fps")
    total = (h * 3600 + m * 60 + s) * fps + f
    if sep in ";.,":
        if not is_drop_frame_rate(rate):
            raise TimecodeError(f"timecode {text!r}: drop-frame (';') exists only at 29.97 and "
                                f"59.94 fps, not {float(rate):g}; use ':'")
        drops = _drops(fps)
        if s == 0 and f < drops and m % 10:
            raise TimecodeError(f"timecode {text!r}: that frame number is dropped; it does not "
                                "exist in drop-frame counting")
        minutes_total = 60 * h + m
        total -= drops * (minutes_total - minutes_total // 10)
    return total


def frames_to_timecode(frames: int, rate: Fraction | float, drop_frame: bool = False) -> str:
    """``HH:MM:SS:FF`` (``HH:MM:SS;FF`` when ``drop_frame``) of frame number ``frames``.

    Hours wrap at 24, as on a timecode clock.
    """
    fps = nominal_fps(rate)
    if drop_frame and not is_drop_frame_rate(rate):
        raise TimecodeError(f"drop-frame timecode needs 29.97 or 59.94 fps, not {float(rate):g}")
    n = int(frames)
    if drop_frame:
        drops = _drops(fps)
        per_ten = fps * 600 - drops * 9  # frames in ten minutes
        per_minute = fps * 60 - drops
        tens, rest = divmod(n, per_ten)
        n += drops * 9 * tens
        if rest > drops:
            n += drops * ((rest - drops) // per_minute)
    f = n % fps
    s = n // fps % 60
    m = n // (fps * 60) % 60
    h = n // (fps * 3600) % 24
    return f"{h:02d}:{m:02d}:{s:02d}{';' if drop_frame else ':'}{f:02d}"


class FrameClock:
    """Film frames as timecodes: the film's own start timecode, else counted from 00:00:00:00."""

    def __init__(self, rate: Fraction | float, start: Timecode | None = None):
        self.rate, self.start = rate, start

    def at(self, frame: int) -> str:
        return self.start.shifted(frame) if self.start else frames_to_timecode(frame, self.rate)

    def span(self, first: int, end: int) -> dict:
        """The columns of a half-open frame range [first, end): the out point is the last
        frame shown."""
        return {"first frame": first, "end frame": end, "timecode in": self.at(first),
                "timecode out": self.at(max(first, end - 1))}


def read_timecode(path: str | Path) -> Timecode | None:
    """The start timecode of ``path``'s picture, or None when it has none.

    Looks in the video stream's tags, then the container's, then any data (``tmcd``) stream's.
    """
    with open_media(path) as container:
        if not container.streams.video:
            return None
        video = container.streams.video[0]
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        places = [video.metadata, container.metadata,
                  *(s.metadata for s in container.streams if s.type == "data")]
        for tags in places:
            for key, value in tags.items():
                if key.lower() == "timecode" and value:
                    return parse_timecode(value, rate)
    return None
