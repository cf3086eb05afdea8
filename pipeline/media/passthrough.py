"""Untouched pictures copied packet for packet, when the source is intra-only and the output is too.

A picture that lip sync does not change need not be decoded and encoded again: when every source
picture is coded on its own (ProRes, DNxHR, FFV1 with one picture per GOP, MJPEG) and the output
profile writes the same codec with the same profile, pixel format, size and global codec header
(extradata, where the encoder writes one), the source packet *is* a valid output packet. Only
edited pictures are decoded and encoded; the rest is muxed as read, so untouched pictures are
bit-exact and cost no encode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import av

from lipdub.pipeline.errors import MediaError
from lipdub.pipeline.media.decode import open_media
from lipdub.pipeline.media.encode import VideoWriter


@dataclass(frozen=True)
class PassthroughCheck:
    """Whether packets can be copied, and why not when they cannot."""

    ok: bool
    reason: str


def check_passthrough(source: Path, writer: VideoWriter) -> PassthroughCheck:
    """Can ``writer`` take ``source``'s untouched video packets as they are?

    The encoder is opened here (its codec header is compared with the source's).
    """
    profile = writer.profile
    with open_media(source) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if not ctx.codec.intra_only:
            return PassthroughCheck(False, f"source codec {ctx.name} is not intra-only")
        if ctx.name != profile.codec:
            return PassthroughCheck(False, f"source codec {ctx.name} differs from the output's "
                                           f"{profile.codec}")
        if profile.decoded_profile and ctx.profile != profile.decoded_profile:
            return PassthroughCheck(False, f"source profile {ctx.profile} differs from "
                                           f"{profile.decoded_profile}")
        if ctx.format is None or ctx.format.name != writer.pix_fmt:
            got = ctx.format.name if ctx.format else "unknown"
            return PassthroughCheck(False, f"source pixel format {got} differs from the "
                                           f"output's {writer.pix_fmt}")
        if (ctx.width, ctx.height) != (writer.stream.width, writer.stream.height):
            return PassthroughCheck(False, "picture size differs")
        writer.open_encoder()
        # A codec whose encoder writes a global header (FFV1 v3: slices, quantisation tables)
        # needs the source's to be the same; one without (ProRes, DNxHR: every picture carries
        # its own) is not bothered by what a demuxer keeps as extradata.
        header = bytes(writer.stream.codec_context.extradata or b"")
        if header and header != bytes(ctx.extradata or b""):
            return PassthroughCheck(False, "the codec headers (extradata) differ")
        head = [p for p in islice(container.demux(stream), 4) if p.size]
        if not all(p.is_keyframe for p in head[:2]):
            return PassthroughCheck(False, "the source has pictures that depend on others "
                                           "(GOP longer than one)")
    return PassthroughCheck(True, "intra-only source in the output's codec and profile")


def iter_packets_and_frames(source: Path, wanted: set[int]
                            ) -> Iterator[tuple[int, av.Packet, av.VideoFrame | None]]:
    """(picture index, packet, decoded frame or None) for every picture of an intra-only file.

    Only pictures whose index is in ``wanted`` are decoded. Packets come in presentation order
    (intra-only streams have no reordering) and every one must be a keyframe.

    Raises:
        MediaError: a packet that is not a keyframe, or one that does not decode.
    """
    with open_media(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        decoder = stream.codec_context
        index = 0
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if not packet.is_keyframe:
                raise MediaError(f"{source}: picture {index} depends on others; packet copy "
                                 "needs an intra-only source (choose another output codec)")
            frame = None
            if index in wanted:
                try:
                    frames = decoder.decode(packet)
                except av.error.FFmpegError as exc:
                    raise MediaError(f"{source}: picture {index} does not decode ({exc})") from exc
                if len(frames) != 1:
                    raise MediaError(f"{source}: picture {index} decoded to {len(frames)} frames")
                frame = frames[0]
            yield index, packet, frame
            index += 1
