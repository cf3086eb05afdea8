"""Encoding and muxing with PyAV: pictures keep their source timestamps, the dub audio is cut or
padded to the picture's length and interleaved as the pictures are written.

What is written follows an output profile (:mod:`lipdub.pipeline.media.profiles`): a master
(ProRes, DNxHR, FFV1) keeps the source's bit depth and carries the audio sample for sample (PCM in
MOV, FLAC or PCM in Matroska); a review copy is H.264/H.265 with AAC. The source's start timecode is
written on the picture stream (a ``tmcd`` track in MOV/MP4, a ``TIMECODE`` tag in Matroska), and
container metadata says what was altered (provenance). Source packets can be copied in between
encoded pictures (see :mod:`lipdub.pipeline.media.passthrough`).

Outputs go to a temporary name in the destination folder and are renamed only when complete, so
an interrupted run never leaves a file that looks finished, and are flushed to the disk before the
rename (``durable``, see :mod:`lipdub.pipeline.partial_files`), as every delivered file is.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lipdub.pipeline.errors import MediaError
from lipdub.pipeline.media.frames import pad_frame
from lipdub.pipeline.media.profiles import OutputProfile, audio_codec, resolve_profile
from lipdub.pipeline.media.splice import SPLICERS, SpliceResult
from lipdub.pipeline.partial_files import commit, partial_name, remove_stale_partials


@dataclass
class AudioReport:
    """What happened to the dub audio: how much was cut at the end or padded with silence."""

    source_duration: float = 0.0
    cut_seconds: float = 0.0
    padded_seconds: float = 0.0
    codec: str = ""
    sample_rate: int = 0
    sample_format: str = ""
    channels: int = 0
    notes: list[str] = field(default_factory=list)


class AudioTrack:
    """Streams the dub audio into the output, up to a given time, then cuts or pads it."""

    def __init__(self, container: av.container.OutputContainer, audio_path: Path, start: float,
                 duration: float, profile: OutputProfile | None = None):
        self.path = Path(audio_path)
        self.source = av.open(str(self.path))
        if not self.source.streams.audio:
            raise MediaError(f"{self.path}: has no audio stream")
        in_stream = self.source.streams.audio[0]
        suffix = Path(container.name).suffix.lower()
        profile = profile or resolve_profile(None, suffix)
        codec, sample_format = audio_codec(profile, suffix, in_stream.format.name,
                                           in_stream.codec_context.name)
        # A WAV may declare "2 channels" without an order, which encoders refuse: name the
        # standard layout for the channel count instead (AAC here: mono or stereo only).
        channels = in_stream.channels or 2
        layout = av.AudioLayout(channels).name if channels > 2 else ("mono", "stereo")[channels - 1]
        if channels > 2 and codec == "aac":
            layout = "stereo"
        self.rate = in_stream.rate or 48000
        self.stream = container.add_stream(codec, rate=self.rate, layout=layout)
        if sample_format:
            self.stream.codec_context.format = sample_format
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
        self.report = AudioReport(codec=codec, sample_rate=self.rate,
                                  sample_format=self.stream.codec_context.format.name,
                                  channels=channels)
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
        output: final path; its extension chooses the container (.mov, .mkv, .mp4).
        width, height: picture size.
        time_base: the source stream's time base (timestamps are copied unchanged).
        average_rate: nominal frame rate, for encoders and players that want one.
        codec: an output profile name (:data:`lipdub.pipeline.media.profiles.PROFILES`; default by
            container).
        source_pix_fmt: its bit depth is kept (a lossless profile keeps the format itself).
        audio: dub audio file to mux, or None.
        audio_start: presentation time of the first picture, where the dub audio starts.
        duration: the picture's length in seconds; the audio is cut or padded to it.
        colour: the source's ``colorspace``, ``color_range``, ``color_primaries`` and
            ``color_trc`` tags, carried over so players convert the output as they did the source.
        timecode: SMPTE start timecode of the first picture (``HH:MM:SS:FF``, ``;`` before
            the frames when drop-frame), or None.
        metadata: container metadata (provenance); MOV/MP4 keep arbitrary keys.

    Raises:
        ProfileError: unknown profile, or one the container or the source's bit depth forbids.
    """

    def __init__(self, output: Path, *, width: int, height: int, time_base: Fraction,
                 average_rate: Fraction | None, codec: str | None, source_pix_fmt: str,
                 sample_aspect_ratio: Fraction = Fraction(1), audio: Path | None = None,
                 audio_start: float = 0.0, duration: float = 0.0,
                 colour: dict[str, int] | None = None, timecode: str | None = None,
                 metadata: dict[str, str] | None = None):
        self.output = Path(output)
        suffix = self.output.suffix.lower()
        self.profile = resolve_profile(codec, suffix)
        pix_fmt = self.profile.pix_fmt_for(source_pix_fmt)
        # An odd size a review profile's chroma cannot hold is padded by a pixel (edge pixels
        # repeated) and said so; masters that hold any size (FFV1, ProRes 4444) keep it.
        self.size = self.profile.fit_size(width, height, source_pix_fmt)
        self.size_note = "" if self.size == (width, height) else (
            f"the picture is {width}x{height}; {self.profile.description or self.profile.name} "
            f"({pix_fmt}) cannot hold an odd size, so it was written at "
            f"{self.size[0]}x{self.size[1]}, its last column/row repeated (write .mkv, FFV1, "
            "or --codec prores_4444 to keep the exact size)")
        remove_stale_partials(self.output.parent)
        self.tmp = partial_name(self.output)
        # MOV/MP4 keep only a few known metadata keys unless told to write them all.
        options = {"movflags": "use_metadata_tags"} if suffix != ".mkv" and metadata else {}
        self.container = av.open(str(self.tmp), "w", options=options)
        self.container.metadata.update(metadata or {})
        rate = average_rate if average_rate and average_rate > 0 else Fraction(25)
        self.stream = self.container.add_stream(self.profile.encoder, rate=rate,
                                                options=dict(self.profile.options))
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = pix_fmt
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        if self.profile.intra_only:
            # Slice threads only: each picture's packet comes back at once, so copied source
            # packets and encoded ones stay in order.
            self.stream.thread_type = "SLICE"
        if timecode:
            self.stream.metadata["timecode"] = timecode
        for tag, value in (colour or {}).items():
            if value:
                setattr(self.stream.codec_context, tag, value)
        if sample_aspect_ratio and sample_aspect_ratio != 1:
            self.stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        self.pix_fmt = self.stream.pix_fmt
        self.audio = (AudioTrack(self.container, audio, audio_start, duration, self.profile)
                      if audio else None)
        self.audio_start = audio_start
        self.last_time = audio_start
        self.frames_encoded = 0
        self.packets_copied = 0
        # Edited ProRes/DNxHR pictures (write_spliced): coded pieces from the source and
        # encoded, and why a picture was written whole when one was.
        self.pieces_from_source = 0
        self.pieces_encoded = 0
        self.splice_fallback = ""
        # Pictures in the order written: a copied packet, or None until its encoded one comes.
        self._slots: deque = deque()

    def open_encoder(self) -> None:
        """Open the video encoder now (its extradata is then known, see passthrough)."""
        if not self.stream.codec_context.is_open:
            self.stream.codec_context.open()

    def _in_pix_fmt(self, frame: av.VideoFrame) -> av.VideoFrame:
        if (frame.width, frame.height) != self.size:
            frame = pad_frame(frame, *self.size)
        if frame.format.name != self.pix_fmt:
            pts, tb = frame.pts, frame.time_base
            frame = frame.reformat(format=self.pix_fmt)
            frame.pts, frame.time_base = pts, tb
        return frame

    def write(self, frame: av.VideoFrame) -> None:
        """Encode one picture (its pts/time_base are the source's) and interleave audio."""
        frame = self._in_pix_fmt(frame)
        self._slots.append(None)
        self._take(self.stream.encode(frame))
        self.frames_encoded += 1
        self._advance(float(frame.pts * frame.time_base))

    def write_spliced(self, frame: av.VideoFrame, source: av.Packet,
                      boxes: list[tuple[int, int, int, int]]) -> SpliceResult | None:
        """Encode an edited picture, keeping the source packet's coded pieces outside ``boxes``.

        For ProRes and DNxHR outputs of a source in the same codec and profile (see
        :mod:`lipdub.pipeline.media.splice`); other codecs, or an encoder that holds pictures back,
        get the plain :meth:`write`. Returns what the splice did, or None when it was not tried.
        """
        splicer = SPLICERS.get(self.profile.codec)
        if self.size_note:  # a padded picture has no source packet of its size to splice
            self.write(frame)
            return None
        frame = self._in_pix_fmt(frame)
        packets = self.stream.encode(frame)
        self.frames_encoded += 1
        self._slots.append(None)
        result = None
        if splicer is not None and len(packets) == 1:
            encoded = packets[0]
            result = splicer(bytes(source), bytes(encoded), boxes)
            self.pieces_from_source += result.pieces_from_source
            self.pieces_encoded += result.pieces_total - result.pieces_from_source
            self.splice_fallback = self.splice_fallback or result.reason
            if result.pieces_from_source:
                packet = av.Packet(result.data)
                packet.pts, packet.dts, packet.duration = encoded.pts, encoded.dts, encoded.duration
                packet.time_base, packet.is_keyframe = encoded.time_base, True
                packet.stream = self.stream
                packets = [packet]
        self._take(packets)
        self._advance(float(frame.pts * frame.time_base))
        return result

    def copy_packet(self, packet: av.Packet) -> None:
        """Mux a source packet unchanged (an untouched picture of an intra-only source)."""
        packet.stream = self.stream
        self._slots.append(packet)
        self._drain()
        self.packets_copied += 1
        self._advance(float(packet.pts * packet.time_base))

    def _take(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            index = self._slots.index(None)
            self._slots[index] = packet
        self._drain()

    def _drain(self) -> None:
        while self._slots and self._slots[0] is not None:
            self.container.mux(self._slots.popleft())

    def _advance(self, seconds: float) -> None:
        self.last_time = seconds
        if self.audio:
            self.audio.write_until(self.last_time - self.audio_start + 0.5)  # a little ahead

    def close(self) -> AudioReport | None:
        """Flush, finish the audio (cut or padded to the picture), and rename into place."""
        report = None
        try:
            self._take(self.stream.encode(None))
            if self._slots:
                raise MediaError(f"{self.output}: the encoder returned fewer pictures than given")
            if self.audio:
                report = self.audio.finish()
        finally:
            self.container.close()
        commit(self.tmp, self.output, durable=True)  # the output is a deliverable: keep it
        return report

    def abort(self) -> None:
        """Drop the partial output (after an error)."""
        try:
            self.container.close()
        except Exception as exc:  # noqa: BLE001 - already failing; the original error matters
            logging.getLogger(__name__).debug("closing the abandoned %s: %s", self.tmp, exc)
        self.tmp.unlink(missing_ok=True)
