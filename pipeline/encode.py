"""Encoding and muxing with PyAV: pictures keep their source timestamps, the dub audio is cut or
padded to the picture's length and interleaved as the pictures are written.

Outputs go to a temporary name in the destination folder and are renamed only when complete, so
an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import LipdubError, MediaError

# name -> (encoder, pixel format or None to keep the source's, encoder options)
VIDEO_CODECS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "h264": ("libx264", "yuv420p", {"crf": "16", "preset": "medium"}),
    "h265": ("libx265", "yuv420p", {"crf": "18", "preset": "medium", "x265-params": "log-level=1"}),
    "ffv1": ("ffv1", None, {"level": "3", "slicecrc": "1"}),
}
# Audio per container: FLAC in Matroska (lossless, no encoder priming to trim), AAC in MP4/MOV
# (their edit lists trim the AAC encoder's priming so audio stays aligned with the pictures).
AUDIO_CODECS = {".mkv": "flac", ".mp4": "aac", ".mov": "aac", ".m4v": "aac"}
DEFAULT_VIDEO_CODEC = {".mkv": "ffv1", ".mp4": "h264", ".mov": "h264", ".m4v": "h264"}


def temporary_path(output: Path) -> Path:
    """A hidden sibling of ``output`` with the same extension (so the muxer is chosen right)."""
    return output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")


@dataclass
class AudioReport:
    """What happened to the dub audio: how much was cut at the end or padded with silence."""

    source_duration: float = 0.0
    cut_seconds: float = 0.0
    padded_seconds: float = 0.0
    codec: str = ""
    sample_rate: int = 0
    notes: list[str] = field(default_factory=list)


class AudioTrack:
    """Streams the dub audio into the output, up to a given time, then cuts or pads it."""

    def __init__(self, container: av.container.OutputContainer, audio_path: Path, start: float,
                 duration: float):
        self.path = Path(audio_path)
        self.source = av.open(str(self.path))
        if not self.source.streams.audio:
            raise MediaError(f"{self.path}: has no audio stream")
        in_stream = self.source.streams.audio[0]
        suffix = Path(container.name).suffix.lower()
        codec = AUDIO_CODECS.get(suffix, "aac")
        # A WAV may declare "2 channels" without an order, which encoders refuse: name the
        # standard layout for the channel count instead (AAC here: mono or stereo only).
        channels = in_stream.channels or 2
        layout = av.AudioLayout(channels).name if channels > 2 else ("mono", "stereo")[channels - 1]
        if channels > 2 and codec == "aac":
            layout = "stereo"
        self.rate = in_stream.rate or 48000
        self.stream = container.add_stream(codec, rate=self.rate, layout=layout)
        self.stream.time_base = Fraction(1, self.rate)
        # Count the encoder's timestamps in samples: Matroska's 1/1000 stream time base must not
        # become the encoder's, or sample timestamps get rescaled twice.
        self.stream.codec_context.time_base = Fraction(1, self.rate)
        # Open the encoder now: the container header is written at the first muxed video packet,
        # and a stream whose encoder opens after that cannot be described in it any more.
        self.stream.codec_context.open()
        self.container = container
        self.resampler = av.AudioResampler(
            format=self.stream.codec_context.format, layout=layout, rate=self.rate
        )
        self.decoded = self.source.decode(in_stream)
        self.first_sample = int(round(start * self.rate))
        self.end = int(round(duration * self.rate))  # samples the picture's length allows
        self.written = 0  # samples handed to the encoder
        self.exhausted = False
        self.report = AudioReport(codec=codec, sample_rate=self.rate)
        self.layout = layout

    def _encode(self, frame: av.AudioFrame | None) -> None:
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def _emit(self, frame: av.AudioFrame) -> None:
        frame.pts = self.first_sample + self.written
        frame.time_base = Fraction(1, self.rate)  # not the stream's: Matroska changes it to 1/1000
        self.written += frame.samples
        self._encode(frame)

    def write_until(self, seconds: float) -> None:
        """Write dub samples until ``seconds`` of audio are written (interleaving with pictures).

        Nothing is ever written past the picture's length; what lies beyond is counted as cut.
        """
        target = min(int(round(seconds * self.rate)), self.end)
        while not self.exhausted and self.written < target:
            try:
                frame = next(self.decoded)
            except StopIteration:
                self.exhausted = True
                for tail in self.resampler.resample(None):
                    self._write(tail)
                break
            except av.error.FFmpegError as exc:
                raise MediaError(f"{self.path}: audio decoding failed ({exc})") from exc
            self.report.source_duration += frame.samples / (frame.sample_rate or self.rate)
            frame.pts = None
            for converted in self.resampler.resample(frame):
                self._write(converted)

    def _write(self, frame: av.AudioFrame) -> None:
        room = self.end - self.written
        if frame.samples > room:
            self.report.cut_seconds += (frame.samples - max(room, 0)) / self.rate
            if room <= 0:
                return
            frame = _slice_frame(frame, room, self.layout)
        self._emit(frame)

    def finish(self) -> AudioReport:
        """Write the rest up to the picture's length, pad with silence if short, and flush."""
        self.write_until(self.end / self.rate)
        if not self.exhausted:  # the dub runs past the picture: count what is cut
            for frame in self.decoded:
                self.report.source_duration += frame.samples / (frame.sample_rate or self.rate)
                self.report.cut_seconds += frame.samples / (frame.sample_rate or self.rate)
        missing = self.end - self.written
        if missing > 0:
            self.report.padded_seconds = missing / self.rate
            while missing > 0:
                n = min(missing, 4096)
                silence = av.AudioFrame(
                    format=self.stream.codec_context.format.name, layout=self.layout, samples=n
                )
                for plane in silence.planes:
                    plane.update(bytes(plane.buffer_size))
                silence.sample_rate = self.rate
                self._emit(silence)
                missing -= n
        self._encode(None)
        self.source.close()
        return self.report


def _slice_frame(frame: av.AudioFrame, samples: int, layout: str) -> av.AudioFrame:
    array = frame.to_ndarray()
    planar = frame.format.is_planar
    cut = array[:, :samples] if planar else array[:, : samples * len(frame.layout.channels)]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(cut), format=frame.format.name,
                                     layout=layout)
    out.sample_rate = frame.sample_rate
    return out


class VideoWriter:
    """Writes pictures (with their source timestamps) and the dub audio to ``output``.

    Arguments:
        output: final path; its extension chooses the container (.mp4, .mov, .mkv).
        width, height: picture size.
        time_base: the source stream's time base (timestamps are copied unchanged).
        average_rate: nominal frame rate, for encoders and players that want one.
        codec: a key of :data:`VIDEO_CODECS` (default by container).
        source_pix_fmt: kept by lossless codecs.
        audio: dub audio file to mux, or None.
        audio_start: presentation time of the first picture, where the dub audio starts.
        duration: the picture's length in seconds; the audio is cut or padded to it.
        colour: the source's ``colorspace``, ``color_range``, ``color_primaries`` and
            ``color_trc`` tags, carried over so players convert the output as they did the source.
    """

    def __init__(self, output: Path, *, width: int, height: int, time_base: Fraction,
                 average_rate: Fraction | None, codec: str | None, source_pix_fmt: str,
                 sample_aspect_ratio: Fraction = Fraction(1), audio: Path | None = None,
                 audio_start: float = 0.0, duration: float = 0.0,
                 colour: dict[str, int] | None = None):
        self.output = Path(output)
        suffix = self.output.suffix.lower()
        if suffix not in DEFAULT_VIDEO_CODEC:
            raise LipdubError(f"{self.output}: unsupported output container {suffix!r}; "
                              "use .mp4, .mov or .mkv")
        codec = codec or DEFAULT_VIDEO_CODEC[suffix]
        if codec not in VIDEO_CODECS:
            raise LipdubError(f"unknown output codec {codec!r}; choose one of "
                              f"{', '.join(VIDEO_CODECS)}")
        encoder, pix_fmt, options = VIDEO_CODECS[codec]
        self.tmp = temporary_path(self.output)
        self.container = av.open(str(self.tmp), "w")
        rate = average_rate if average_rate and average_rate > 0 else Fraction(25)
        self.stream = self.container.add_stream(encoder, rate=rate, options=dict(options))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = pix_fmt or source_pix_fmt
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        for tag, value in (colour or {}).items():
            if value:
                setattr(self.stream.codec_context, tag, value)
        if sample_aspect_ratio and sample_aspect_ratio != 1:
            self.stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        self.pix_fmt = self.stream.pix_fmt
        self.audio = AudioTrack(self.container, audio, audio_start, duration) if audio else None
        self.audio_start = audio_start
        self.last_time = audio_start

    def write(self, frame: av.VideoFrame) -> None:
        """Encode one picture (its pts/time_base are the source's) and interleave audio."""
        if frame.format.name != self.pix_fmt:
            pts, tb = frame.pts, frame.time_base
            frame = frame.reformat(format=self.pix_fmt)
            frame.pts, frame.time_base = pts, tb
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.last_time = float(frame.pts * frame.time_base)
        if self.audio:
            self.audio.write_until(self.last_time - self.audio_start + 0.5)  # a little ahead

    def close(self) -> AudioReport | None:
        """Flush, finish the audio (cut or padded to the picture), and rename into place."""
        report = None
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            if self.audio:
                report = self.audio.finish()
        finally:
            self.container.close()
        os.replace(self.tmp, self.output)
        return report

    def abort(self) -> None:
        """Drop the partial output (after an error)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the original error matters
            pass
        self.tmp.unlink(missing_ok=True)
