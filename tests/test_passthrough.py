"""Untouched pictures of an intra-only source are copied packet for packet."""

from __future__ import annotations

from fractions import Fraction

from mastering_media import TALKING_HEAD, encode_clip, fake_unit, film_of, video_packets

from lipdub.pipeline.assemble import assemble_film
from lipdub.pipeline.media.encode import VideoWriter
from lipdub.pipeline.media.passthrough import check_passthrough

EDITED = range(5, 9)


def _writer(tmp_path, info, codec, name):
    return VideoWriter(tmp_path / name, width=info.width, height=info.height,
                       time_base=info.time_base, average_rate=info.average_rate, codec=codec,
                       source_pix_fmt=info.pix_fmt)


def test_untouched_packets_are_copied_bit_exact(media_dir, tmp_path):
    source = encode_clip(tmp_path / "src.mov", media_dir / "video" / TALKING_HEAD, 16,
                         "prores_ks", "yuv422p10le", options={"profile": "hq"})
    info, scan = film_of(source)
    unit = fake_unit(tmp_path / "unit.npz", EDITED)
    done = assemble_film(info, scan, [(5, 9, unit)], tmp_path / "out.mov", audio=None,
                         codec="prores_hq")
    assert done.passthrough.startswith("packets copied")
    assert (done.packets_copied, done.frames_encoded, done.changed) == (12, 4, 4)
    src, out = video_packets(source), video_packets(tmp_path / "out.mov")
    assert len(src) == len(out) == 16
    for i, (a, b) in enumerate(zip(src, out)):
        assert (a == b) == (i not in EDITED), f"packet {i}"

    # Switched off, or into another profile, every picture is encoded once.
    again = assemble_film(info, scan, [(5, 9, unit)], tmp_path / "enc.mov", audio=None,
                          codec="prores_hq", passthrough=False)
    assert (again.packets_copied, again.frames_encoded) == (0, 16)
    writer = _writer(tmp_path, info, "prores_4444", "x.mov")
    try:
        check = check_passthrough(source, writer)
    finally:
        writer.abort()
    assert not check.ok and "profile" in check.reason


def test_long_gop_and_other_codecs_are_encoded(media_dir, tmp_path):
    h264 = encode_clip(tmp_path / "src.mp4", media_dir / "video" / TALKING_HEAD, 6, "libx264",
                       "yuv420p")
    info, _ = film_of(h264)
    writer = _writer(tmp_path, info, "h264", "y.mp4")
    try:
        check = check_passthrough(h264, writer)
    finally:
        writer.abort()
    assert not check.ok and "not intra-only" in check.reason
    # FFV1 with a GOP longer than one: its pictures depend on each other.
    ffv1 = encode_clip(tmp_path / "gop.mkv", media_dir / "video" / TALKING_HEAD, 6, "ffv1",
                       "yuv420p", options={"level": "3", "g": "3"})
    info, _ = film_of(ffv1)
    writer = _writer(tmp_path, info, "ffv1", "z.mkv")
    try:
        check = check_passthrough(ffv1, writer)
    finally:
        writer.abort()
    assert not check.ok


def _prores_packet(bgr, **options) -> bytes:
    import av

    codec = av.CodecContext.create("prores_ks", "w")
    codec.width, codec.height, codec.pix_fmt = bgr.shape[1], bgr.shape[0], "yuv422p10le"
    codec.time_base = Fraction(1, 25)
    codec.options = {"profile": "hq", **options}
    frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv422p10le")
    frame.pts = 0
    (packet,) = codec.encode(frame) + codec.encode(None)
    return bytes(packet)


def test_splices_only_what_lines_up():
    import numpy as np

    from lipdub.pipeline.media.splice import splice_dnxhd, splice_prores

    rng = np.random.default_rng(3)
    picture = rng.integers(0, 255, (64, 320, 3), np.uint8)
    edited = picture.copy()
    edited[20:40, 140:180] = 255
    src, new = _prores_packet(picture), _prores_packet(edited)
    # 320 px = 20 macroblocks: slices of 8, 8 and 4 per row, 4 rows; the box (140..180,
    # 20..40) touches the second slice of rows 1 and 2 only.
    result = splice_prores(src, new, [(140, 20, 180, 40)])
    assert (result.pieces_from_source, result.pieces_total, result.reason) == (10, 12, "")
    # Other quantisation matrices in the source: its slices cannot be mixed in.
    other = _prores_packet(picture, quant_mat="proxy")
    whole = splice_prores(other, new, [(140, 20, 180, 40)])
    assert whole.data == new and whole.pieces_from_source == 0 and "header" in whole.reason
    assert splice_prores(b"nonsense" * 8, new, []).reason == "not a ProRes frame"
    assert splice_dnxhd(src, new, []).reason == "not a DNxHD/HR frame"


def test_lipdub_sync_splices_edited_prores_pictures(media_dir, synthetic_generator, tmp_path):
    import numpy as np
    from mastering_media import BOX, video_planes

    from lipdub.pipeline.clip_sync import SyncOptions, sync_clip

    source = encode_clip(tmp_path / "src.mov", media_dir / "video" / TALKING_HEAD, 10,
                         "prores_ks", "yuv422p10le", options={"profile": "hq"})
    audio = media_dir / "audio" / "speech_44k_stereo__vretalk_audio1.wav"
    summary = sync_clip(source, audio, tmp_path / "out.mov",
                        SyncOptions(checkpoint=synthetic_generator, face="box", face_box=BOX,
                                    codec="prores_hq", progress=False))
    assert summary.passthrough.startswith("packets copied")
    assert summary.frames_synced == summary.frames_encoded == 10
    assert summary.pieces_from_source > 0 and summary.pieces_encoded > 0
    x0, y0, x1, y1 = BOX
    top, bottom = y0 // 16 * 16, -(-y1 // 16) * 16
    left, right = x0 // 128 * 128, -(-x1 // 128) * 128  # ProRes slices: 8 macroblocks wide
    for src, out in zip(video_planes(source), video_planes(tmp_path / "out.mov")):
        for p, q in zip(src, out):
            sx = src[0].shape[1] // p.shape[1]
            away = np.ones(p.shape, bool)
            away[top:bottom, left // sx: right // sx] = False
            assert np.array_equal(p[away], q[away])
            assert not np.array_equal(p, q)
