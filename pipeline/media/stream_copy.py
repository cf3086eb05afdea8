"""A picture nobody speaks in: its video stream copied whole into the output, packet for packet.

When a run edits no picture (no face to sync, nobody speaks), decoding and encoding it again
would only lose quality and time: the source's coded stream goes into the output unchanged,
whatever its codec, with the dub audio beside it (cut or padded to the picture, as always) and
the timecode and provenance tags. Where the output's container cannot hold the source's codec
(FFV1 in MP4, say), :class:`CannotCopy` says so and the caller encodes as usual.

Damage is not looked for here (nothing is decoded): both callers decode every picture first
(the film scan, ``lipdub sync``'s face scan), which refuses a damaged file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from lipdub.pipeline import stopping
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.media.decode import open_media
from lipdub.pipeline.media.encode import AudioReport, AudioTrack
from lipdub.pipeline.partial_files import remove_stale_partials, writing


class CannotCopy(LipdubError):
    """The output's container cannot hold the source's video codec as it is."""


@dataclass
class StreamCopy:
    """What a whole-stream copy wrote: the packets copied, the source's codec, the audio."""

    packets_copied: int
    codec: str
    pix_fmt: str
    audio: AudioReport | None


def copy_video_stream(source: Path, output: Path, *, audio: Path | None, audio_start: float,
                      duration: float, timecode: str | None = None,
                      metadata: dict[str, str] | None = None) -> StreamCopy:
    """Write ``output``: ``source``'s first video stream copied unchanged, and ``audio``.

    Written under a temporary name and renamed when complete, as every output.

    Arguments:
        audio_start: presentation time of the first picture, where the audio starts.
        duration: the picture's length in seconds; the audio is cut or padded to it.

    Raises:
        CannotCopy: the container of ``output`` cannot hold the codec (nothing is written).
    """
    output = Path(output)
    suffix = output.suffix.lower()
    remove_stale_partials(output.parent)
    options = {"movflags": "use_metadata_tags"} if suffix != ".mkv" and metadata else {}
    copied = 0
    # Durable: the output is the delivered film or clip.
    with writing(output, durable=True) as tmp, open_media(source) as src:
        video = src.streams.video[0]
        codec = video.codec_context.name
        pix_fmt = video.codec_context.format.name if video.codec_context.format else "?"
        with av.open(str(tmp), "w", options=options) as container:
            container.metadata.update(metadata or {})
            try:
                stream = container.add_stream_from_template(video)
            except (ValueError, av.error.FFmpegError) as exc:
                raise CannotCopy(f"{suffix} cannot hold {codec} as it is ({exc})") from exc
            if timecode:
                stream.metadata["timecode"] = timecode
            track = AudioTrack(container, audio, audio_start, duration) if audio else None
            for packet in src.demux(video):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                stopping.check()
                packet.stream = stream
                try:
                    container.mux(packet)
                except av.error.FFmpegError as exc:
                    if copied == 0:  # the header: the muxer refuses the codec
                        raise CannotCopy(f"{suffix} cannot hold {codec} as it is "
                                         f"({exc})") from exc
                    raise
                copied += 1
                if track and packet.pts is not None:
                    track.write_until(float(packet.pts * packet.time_base) - audio_start + 0.5)
            report = track.finish() if track else None
    return StreamCopy(copied, codec, pix_fmt, report)
