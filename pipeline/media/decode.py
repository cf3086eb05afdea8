"""Probing and streaming decode of pictures with PyAV (one frame in memory at a time).

Every frame keeps its own timestamp: variable-frame-rate and NTSC-rate sources are never forced
onto a nominal frame rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from lipdub.pipeline import stopping
from lipdub.pipeline.errors import MediaError

COLOUR_TAGS = ("colorspace", "color_range", "color_primaries", "color_trc")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class VideoInfo:
    """What the picture stream of a file is.

    Attributes:
        path: the file.
        width, height: frame size in pixels (display aspect follows ``sample_aspect_ratio``).
        frame_count: frames the container announces (0 when it does not say).
        average_rate: mean frame rate (None for a still image).
        time_base: unit of the stream's timestamps.
        start_time: first presentation time in seconds.
        codec, pix_fmt: the stream's codec and pixel format names.
        sample_aspect_ratio: pixel aspect (1 for square pixels).
        colour: colour tags (colorspace, color_range, color_primaries, color_trc) as libav numbers.
        has_audio: whether the file also carries an audio stream.
        is_still: a single picture (jpg/png...), to be held for the length of the audio.
        accept_damaged: decode past damage instead of refusing the file (the job's
            ``settings.accept_damaged``; set with ``dataclasses.replace`` where it is decided;
            :meth:`frames` decodes accordingly).
    """

    path: Path
    width: int
    height: int
    frame_count: int
    average_rate: Fraction | None
    time_base: Fraction
    start_time: float
    codec: str
    pix_fmt: str
    sample_aspect_ratio: Fraction
    colour: dict
    has_audio: bool
    is_still: bool
    accept_damaged: bool = False

    def frames(self, *, start_time: float | None = None, end_time: float | None = None,
               damage: list[Damage] | None = None) -> Iterator[av.VideoFrame]:
        """This file's pictures (:func:`iter_video_frames`), past damage when it is accepted."""
        return iter_video_frames(self.path, start_time=start_time, end_time=end_time,
                                 accept_damaged=self.accept_damaged, damage=damage)


@dataclass(frozen=True)
class Damage:
    """Pictures of a file that did not decode as they should (listed when damage is accepted).

    Attributes:
        frame: the first affected picture's index (from the first picture decoded).
        time: its presentation time in seconds (None when it has none).
        what: what happened to it and what was delivered instead.
    """

    frame: int
    time: float | None
    what: str


def require_file(path: str | Path, what: str = "") -> Path:
    """``path``, when it is an existing file; else a :class:`MediaError` that says whether it
    is a folder or missing (``what``: "video", "audio"... to name it in the message)."""
    path = Path(path)
    kind = f"{what} file" if what else "file"
    if path.is_dir():
        raise MediaError(f"{path}: is a directory; give the {kind}" if what
                         else f"{path}: is a directory; give a media file")
    if not path.is_file():
        raise MediaError(f"{path}: {kind} not found")
    return path


def open_media(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning its errors into a :class:`MediaError` naming the file."""
    path = require_file(path)
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes)")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise MediaError(
            f"{path}: not a readable media file ({reason}); is it truncated or not a video?"
        ) from exc


def probe_video(path: str | Path) -> VideoInfo:
    """Describe the first video stream of ``path``.

    Raises:
        MediaError: missing, unreadable, or no video stream.
    """
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream (is it an audio file?)")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        is_still = path.suffix.lower() in IMAGE_SUFFIXES
        start = stream.start_time * stream.time_base if stream.start_time is not None else 0
        if not ctx.width or not ctx.height:
            raise MediaError(f"{path}: the video stream has no frame size (corrupt header?)")
        return VideoInfo(
            path=path,
            width=ctx.width,
            height=ctx.height,
            frame_count=int(stream.frames or 0),
            average_rate=None if is_still else stream.average_rate,
            time_base=stream.time_base or Fraction(1, 25),
            start_time=float(start),
            codec=ctx.name,
            pix_fmt=ctx.format.name if ctx.format else "unknown",
            sample_aspect_ratio=ctx.sample_aspect_ratio or Fraction(1),
            colour={tag: int(getattr(ctx, tag) or 0) for tag in COLOUR_TAGS},
            has_audio=bool(container.streams.audio),
            is_still=is_still,
        )


def iter_video_frames(
    path: str | Path,
    *,
    threads: bool = True,
    start_time: float | None = None,
    end_time: float | None = None,
    accept_damaged: bool = False,
    damage: list[Damage] | None = None,
) -> Iterator[av.VideoFrame]:
    """Decode the first video stream frame by frame, in presentation order.

    Arguments:
        path: the file.
        threads: let libavcodec decode with frame/slice threads.
        start_time, end_time: only frames shown in ``[start_time, end_time)`` (seconds, as
            ``frame.pts * time_base``); the decoder seeks to the keyframe before ``start_time``.
        accept_damaged: go on past damage: a picture the decoder had to conceal (flipped
            bytes, a lost reference) is delivered as the decoder concealed it, a decode that
            breaks off or a file shorter than its announced count ends the pictures early;
            each is appended to ``damage`` when a list is given.

    Raises:
        MediaError: damage (unless accepted): a decoder error, a concealed picture, fewer
            pictures than the container announces; the message names the last good frame.
    """
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        announced = int(stream.frames or 0)
        tb = stream.time_base
        # Half a tick of tolerance: times given in seconds come from pts * time_base.
        first = None if start_time is None else start_time - float(tb) / 2
        last = None if end_time is None else end_time - float(tb) / 2
        if not accept_damaged and (first is None or first <= 0):
            # From the first picture, the decoder stops at the first error instead of
            # concealing it (bytes flipped inside a packet, a packet lost). Not after a seek:
            # an open GOP's leading pictures miss their references there, harmlessly.
            stream.codec_context.options = {"err_detect": "explode"}
        if threads:
            stream.thread_type = "AUTO"
        # Accepted damage: a lost picture leaves a hole in the timestamps of a steady stream.
        steady = float(1 / stream.guessed_rate) if accept_damaged and stream.guessed_rate else None
        if first is not None and first > 0:
            container.seek(int(first / tb), stream=stream, backward=True)
        watch = _DamageWatch(path, first, accept_damaged, damage, steady)
        try:
            for frame in container.decode(stream):
                t = float(frame.pts * tb) if frame.pts is not None else None
                if first is not None and t is not None and t < first:
                    continue
                if not watch.index and first is not None and t is not None and t > first + 1.0:
                    break  # the seek overshot (broken index): fall back to decoding from 0
                if last is not None and t is not None and t >= last:
                    break
                stopping.check()  # every decoding loop, in whichever thread, stops here
                watch.picture(t, frame.is_corrupt)
                yield frame
                watch.delivered(t)
        except av.error.FFmpegError as exc:
            watch.decoding_failed(exc)
            return
    if watch.index == 0 and first is not None and first > 0:
        yield from _slow_range(path, first, last, accept_damaged)
        return
    if watch.index == 0 and start_time is None:
        raise MediaError(f"{path}: no picture could be decoded (truncated or empty video stream)")
    if start_time is None and end_time is None and announced and watch.index < announced:
        # A file cut short whose index survived decodes to its end without an error (frame
        # threads even drop the error of the damaged last packet): the count tells.
        watch.ended_short(announced)


class _DamageWatch:
    """What :func:`iter_video_frames` has delivered, and what it does at damage: raise a
    MediaError naming the last good frame, or (damage accepted) list it and go on."""

    def __init__(self, path: Path, first: float | None, accept: bool,
                 damage: list[Damage] | None, steady: float | None) -> None:
        self.path, self.first, self.accept, self.damage = path, first, accept, damage
        self.steady = steady
        self.index, self.last_good, self.previous_step = 0, None, None

    def error(self, what: str) -> MediaError:
        at = f" at {self.last_good:.3f} s" if self.last_good is not None else ""
        if not self.index:
            good = "no good picture before it"
        elif self.first is not None and self.first > 0:  # counted from the range's start
            good = f"the last good one is{at}"
        else:
            good = f"the last good one is frame {self.index - 1}{at}"
        return MediaError(f"{self.path}: damaged: {what} ({good}); the file is truncated or "
                          "corrupt. lipdub does not silently deliver damaged or shorter "
                          "pictures: repair or re-export it, or accept the damage "
                          "(--accept-damaged, the job's settings.accept_damaged) to have "
                          "every affected frame listed")

    def _note(self, time: float | None, what: str) -> None:
        if self.damage is not None:
            self.damage.append(Damage(self.index, time, what))

    def picture(self, t: float | None, corrupt: bool) -> None:
        """A picture about to be delivered: pictures lost before it, or concealed itself."""
        last = self.last_good
        if self.steady and last is not None and t is not None:
            missing = _missing_before(t - last, self.steady, self.previous_step)
            if missing:
                self._note(t, f"{missing} picture(s) missing before it (a {t - last:.3f} s gap "
                              f"where pictures come every {self.steady:.3f} s)")
        self.previous_step = t - last if last is not None and t is not None else None
        if corrupt:
            if not self.accept:
                shown = f" ({t:.3f} s)" if t is not None else ""
                raise self.error(f"a picture{shown} could only be concealed by the decoder")
            self._note(t, "concealed by the decoder (delivered as concealed)")

    def delivered(self, t: float | None) -> None:
        self.index += 1
        self.last_good = t

    def decoding_failed(self, exc: av.error.FFmpegError) -> None:
        reason = exc.strerror or str(exc)
        if not self.accept or not self.index:
            raise self.error(f"decoding failed after {self.index} picture(s) ({reason})") from exc
        self._note(None, f"decoding failed ({reason}): the pictures end here")

    def ended_short(self, announced: int) -> None:
        what = f"the file announces {announced} pictures but only {self.index} could be decoded"
        if not self.accept:
            raise self.error(what)
        self._note(None, f"missing: {what}; the pictures end here")


def _missing_before(gap: float, step: float, previous: float | None) -> int:
    """Pictures lost in a ``gap`` between two pictures of a stream that came every ``step``
    seconds until then (0 where the stream was not steady: variable frame rate)."""
    if previous is None or abs(previous - step) > 0.01 * step or gap < 1.5 * step:
        return 0
    return round(gap / step) - 1


def _slow_range(path: Path, first: float, last: float | None,
                accept_damaged: bool) -> Iterator[av.VideoFrame]:
    for frame in iter_video_frames(path, accept_damaged=accept_damaged):
        t = float(frame.pts * frame.time_base)
        if t < first:
            continue
        if last is not None and t >= last:
            return
        yield frame


def audio_lead(path: str | Path) -> float:
    """Seconds between a file's first audio sample and its first picture (0 without audio)."""
    with open_media(Path(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio
        if not audio:
            return 0.0

        def start(stream) -> float:
            return float(stream.start_time * stream.time_base) if stream.start_time else 0.0

        return start(video) - start(audio[0])
