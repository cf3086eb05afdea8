"""Output profiles: which encoder, codec profile, pixel format and audio a delivery gets.

A *master* keeps the source's bit depth (10-bit stays 10-bit), is intra-only where the codec is,
and carries the delivered audio as PCM (``.mov``) or FLAC/PCM (``.mkv``) at its own sample
rate, channel count and sample width: never resampled, never lossy. A *review* copy is H.264 or
H.265 with AAC audio (MP4/MOV; FLAC in Matroska).

| name        | codec                | container | pixel format (8-bit / 10-bit source) |
|-------------|----------------------|-----------|--------------------------------------|
| prores_hq   | Apple ProRes 422 HQ  | .mov      | yuv422p10le / yuv422p10le            |
| prores_4444 | Apple ProRes 4444    | .mov      | yuv444p10le / yuv444p10le            |
| dnxhr_hq    | Avid DNxHR HQ        | .mov      | yuv422p (8-bit only)                 |
| dnxhr_hqx   | Avid DNxHR HQX       | .mov      | yuv422p10le / yuv422p10le            |
| ffv1        | FFV1 v3 (lossless)   | .mkv      | the source's own                     |
| h264, h265  | review copy          | .mp4 .mov .mkv | yuv420p / yuv420p10le           |

libavcodec's ProRes decoder reports 4444 pictures as ``yuv444p12le`` whatever was encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lipdub.pipeline.errors import LipdubError


class ProfileError(LipdubError):
    """An output profile that does not exist or does not fit the container or the source."""


@dataclass(frozen=True)
class OutputProfile:
    """One delivery format.

    Attributes:
        name: the key users give (``output.codec`` in a job, ``--codec`` of ``lipdub sync``).
        encoder: libavcodec encoder.
        codec: the codec name a decoder reports for the result (to compare with a source).
        containers: file extensions it may be written to.
        pix_fmts: source bit depth (8, 10) -> pixel format; empty: keep the source's format.
        options: encoder options (codec profile, quality).
        master: mastering audio policy (PCM/FLAC at the source's sample format) when true,
            review policy (AAC in MP4/MOV) when false.
        decoded_profile: the profile name a decoder reports (``codec_context.profile``).
        description: a line for help texts and reports.
    """

    name: str
    encoder: str
    codec: str
    containers: tuple[str, ...]
    pix_fmts: dict[int, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    master: bool = True
    decoded_profile: str | None = None
    description: str = ""

    @property
    def intra_only(self) -> bool:
        """Whether every picture is coded on its own (packets can be copied one by one)."""
        import av

        return av.Codec(self.encoder, "w").intra_only

    def pix_fmt_for(self, source_pix_fmt: str) -> str:
        """The pixel format to encode a source of ``source_pix_fmt`` in (its bit depth kept).

        Raises:
            ProfileError: the profile cannot hold the source's bit depth.
        """
        if not self.pix_fmts:
            return source_pix_fmt
        bits = bit_depth(source_pix_fmt)
        depth = 10 if bits > 8 else 8
        if depth not in self.pix_fmts:
            deeper = [p.name for p in PROFILES.values() if 10 in p.pix_fmts and p.master]
            raise ProfileError(
                f"output codec {self.name!r} is {max(self.pix_fmts)}-bit but the source "
                f"({source_pix_fmt}) is {bits}-bit; choose one of {', '.join(deeper)} to keep "
                "its bit depth")
        return self.pix_fmts[depth]

    def fit_size(self, width: int, height: int, source_pix_fmt: str) -> tuple[int, int]:
        """The picture size to encode a ``width`` x ``height`` source at: its own, or one
        pixel wider or taller where the profile's chroma subsampling cannot hold an odd size
        (4:2:0 halves both, 4:2:2 the width). FFV1 and ProRes 4444 keep any size."""
        import av

        if not self.pix_fmts:
            return width, height  # the source's own format: its decoder held the size
        pix_fmt = self.pix_fmt_for(source_pix_fmt)
        # Chroma planes of a 2x2 picture: 1 sample wide (high) where chroma is subsampled.
        chroma = av.VideoFormat(pix_fmt, 2, 2).components[1:]
        halves_width = any(c.width < 2 for c in chroma)
        halves_height = any(c.height < 2 for c in chroma)
        return width + (width % 2 if halves_width else 0), height + (
            height % 2 if halves_height else 0)


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of a pixel format's first component (8 for unknown formats)."""
    import av

    try:
        return av.VideoFormat(pix_fmt).components[0].bits
    except (ValueError, av.error.FFmpegError):
        return 8


_REVIEW_PIX = {8: "yuv420p", 10: "yuv420p10le"}
PROFILES: dict[str, OutputProfile] = {p.name: p for p in (
    OutputProfile("prores_hq", "prores_ks", "prores", (".mov",),
                  {8: "yuv422p10le", 10: "yuv422p10le"}, {"profile": "hq", "vendor": "apl0"},
                  decoded_profile="HQ", description="Apple ProRes 422 HQ, 10-bit 4:2:2"),
    OutputProfile("prores_4444", "prores_ks", "prores", (".mov",),
                  {8: "yuv444p10le", 10: "yuv444p10le"}, {"profile": "4444", "vendor": "apl0"},
                  decoded_profile="4444", description="Apple ProRes 4444, 10-bit 4:4:4"),
    OutputProfile("dnxhr_hq", "dnxhd", "dnxhd", (".mov",), {8: "yuv422p"},
                  {"profile": "dnxhr_hq"}, decoded_profile="DNXHR HQ",
                  description="Avid DNxHR HQ, 8-bit 4:2:2"),
    OutputProfile("dnxhr_hqx", "dnxhd", "dnxhd", (".mov",),
                  {8: "yuv422p10le", 10: "yuv422p10le"}, {"profile": "dnxhr_hqx"},
                  decoded_profile="DNXHR HQX", description="Avid DNxHR HQX, 10-bit 4:2:2"),
    # g=1: every frame a keyframe, so each can be decoded (and copied) on its own.
    OutputProfile("ffv1", "ffv1", "ffv1", (".mkv",), {},
                  {"level": "3", "slicecrc": "1", "g": "1"},
                  description="FFV1 v3, lossless, the source's pixel format (archival)"),
    OutputProfile("h264", "libx264", "h264", (".mp4", ".mov", ".mkv", ".m4v"), _REVIEW_PIX,
                  # veryfast: a third of medium's time at about the same size at crf 16
                  # (590x590 talking head: 0.53 s vs 1.68 s for 125 frames, 533 vs 526 KiB).
                  {"crf": "16", "preset": "veryfast"}, master=False,
                  description="H.264 review copy"),
    OutputProfile("h265", "libx265", "hevc", (".mp4", ".mov", ".mkv", ".m4v"), _REVIEW_PIX,
                  {"crf": "18", "preset": "medium", "x265-params": "log-level=1"}, master=False,
                  description="H.265 review copy"),
)}
DEFAULT_PROFILE = {".mkv": "ffv1", ".mp4": "h264", ".mov": "h264", ".m4v": "h264"}


def resolve_profile(name: str | None, suffix: str, *, where: str = "output codec") -> OutputProfile:
    """The profile called ``name`` (default: by container) for a file ending in ``suffix``.

    Raises:
        ProfileError: unknown container or profile, or one the container cannot hold.
    """
    suffix = suffix.lower()
    if suffix not in DEFAULT_PROFILE:
        raise ProfileError(f"unsupported output container {suffix or '(none)'!r}; "
                           "use .mov, .mkv or .mp4")
    name = name or DEFAULT_PROFILE[suffix]
    if name not in PROFILES:
        raise ProfileError(f"{where} {name!r} is unknown; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if suffix not in profile.containers:
        raise ProfileError(f"{where} {name!r} goes in {' or '.join(profile.containers)} files, "
                           f"not {suffix}; rename the output")
    return profile


def audio_codec(profile: OutputProfile, suffix: str, source_format: str,
                source_codec: str) -> tuple[str, str | None]:
    """(encoder, sample format or None for the encoder's default) for the delivered audio.

    Masters keep the samples exactly: 16-bit as ``pcm_s16le``, 24-bit (decoded as s32 by
    libavcodec) as ``pcm_s24le``, true 32-bit as ``pcm_s32le``, float as ``pcm_f32le``
    (``pcm_f64le`` for double); in Matroska 16/24-bit integer audio is FLAC (lossless).
    Review copies get AAC in MP4/MOV and FLAC in Matroska.
    """
    suffix = suffix.lower()
    packed = source_format.rstrip("p") if source_format.endswith("p") else source_format
    if not profile.master:
        if suffix == ".mkv":
            return "flac", "s32" if packed == "s32" else None
        return "aac", None
    if packed in ("u8", "s16"):
        return ("flac", "s16") if suffix == ".mkv" else ("pcm_s16le", "s16")
    if packed == "s32":
        if source_codec.startswith("pcm_s32"):
            return "pcm_s32le", "s32"
        return ("flac", "s32") if suffix == ".mkv" else ("pcm_s24le", "s32")
    if packed == "dbl":
        return "pcm_f64le", "dbl"
    return "pcm_f32le", "flt"
