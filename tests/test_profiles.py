"""Output profiles on real shared footage: ProRes and DNxHR round trips, 10-bit kept, audio kept
sample for sample, timecode and provenance carried."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from mastering_media import (
    BOX,
    TALKING_HEAD,
    decoded_audio,
    encode_clip,
    fake_unit,
    film_of,
    video_planes,
    write_pcm24,
)

from lipdub.pipeline.assemble import assemble_film
from lipdub.pipeline.composite import composite_face, lower_face_mask, paste_faces
from lipdub.pipeline.media.profiles import PROFILES, ProfileError, audio_codec, resolve_profile
from lipdub.pipeline.media.provenance import provenance_metadata
from lipdub.pipeline.media.timecode import parse_timecode, read_timecode

EDITED = range(8, 20)


def _probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return {"codec": v.codec_context.name, "profile": v.codec_context.profile,
                "pix_fmt": v.codec_context.format.name, "rate": v.average_rate,
                "metadata": dict(c.metadata)}


def _master(tmp_path, media_dir, name, encoder, pix_fmt, options, codec, *, rate=Fraction(25),
            timecode="01:00:00:00", frames=28):
    source = encode_clip(tmp_path / f"src_{name}.mov", media_dir / "video" / TALKING_HEAD,
                         frames, encoder, pix_fmt, options=options, rate=rate, timecode=timecode)
    samples = write_pcm24(tmp_path / "mix.wav", frames / float(rate) + 0.5)
    info, scan = film_of(source)
    unit = fake_unit(tmp_path / "unit.npz", EDITED)
    start = read_timecode(source)
    tags = provenance_metadata([{"start": 8, "end": 20, "character": "anna"}],
                               rate=info.average_rate, timecode=start)
    out = tmp_path / f"dub_{name}.mov"
    done = assemble_film(info, scan, [(8, 20, unit)], out, audio=tmp_path / "mix.wav",
                         codec=codec, timecode=start.text, metadata=tags)
    return source, out, done, samples


def _check_round_trip(source, out, done, samples, want, piece_width=None):
    """``piece_width``: the pixel width of the codec's independent pieces (ProRes slices of 8
    macroblocks; None: whole macroblock rows, DNxHR)."""
    got = _probe(out)
    assert {k: got[k] for k in want} == want
    src, dst = video_planes(source), video_planes(out)
    assert len(src) == len(dst)
    for i, (a, b) in enumerate(zip(src, dst)):
        same = all(np.array_equal(x, y) for x, y in zip(a, b))
        assert same == (i not in EDITED), f"picture {i}"
    # Inside an edited picture the mouth changed; every coded piece that touches no face box
    # comes from the source, so decoded it is the source's, sample for sample (every plane:
    # 4:2:2 chroma has the luma's rows and half its columns).
    x0, y0, x1, y1 = BOX
    a, b = src[12][0].astype(int), dst[12][0].astype(int)
    assert np.abs(a - b)[y0 + (y1 - y0) // 2: y1, x0 + 20: x1 - 20].mean() > 5
    top, bottom = y0 // 16 * 16, -(-y1 // 16) * 16
    if piece_width:
        left, right = x0 // piece_width * piece_width, -(-x1 // piece_width) * piece_width
    else:
        left, right = 0, a.shape[1]
    for i in EDITED:
        for plane, (p, q) in enumerate(zip(src[i], dst[i])):
            sx = a.shape[1] // p.shape[1]
            away = np.ones(p.shape, bool)
            away[top:bottom, left // sx: right // sx] = False
            assert np.array_equal(p[away], q[away]), f"picture {i} plane {plane}"
    assert done.pieces_from_source > 0 and done.pieces_encoded > 0 and not done.splice
    assert done.packets_copied == len(src) - len(EDITED)
    assert done.frames_encoded == len(EDITED)
    # 24-bit 48 kHz PCM, sample for sample, cut to the picture's length.
    audio = decoded_audio(out)
    assert done.audio.codec == "pcm_s24le" and done.audio.sample_rate == 48000
    assert np.array_equal(audio >> 8, samples[:, : audio.shape[1]])
    assert audio.shape[1] == round(len(src) / float(_probe(source)["rate"]) * 48000)
    tags = got["metadata"]
    assert tags["lipdub_altered"] == "lip-sync" and "lip sync" in tags["comment"]
    return json.loads(tags["lipdub_segments"])


def test_prores_hq_round_trip_keeps_10_bits_timecode_and_audio(media_dir, tmp_path):
    source, out, done, samples = _master(tmp_path, media_dir, "prores", "prores_ks",
                                         "yuv422p10le", {"profile": "hq"}, "prores_hq")
    segments = _check_round_trip(source, out, done, samples, {
        "codec": "prores", "profile": "HQ", "pix_fmt": "yuv422p10le", "rate": 25},
        piece_width=128)
    assert read_timecode(out) == parse_timecode("01:00:00:00", 25)
    assert segments == [{"start": 8, "end": 20, "character": "anna", "tc_in": "01:00:00:08",
                         "tc_out": "01:00:00:20"}]


def test_dnxhr_hq_round_trip_at_2997_drop_frame(media_dir, tmp_path):
    source, out, done, samples = _master(
        tmp_path, media_dir, "dnxhr", "dnxhd", "yuv422p", {"profile": "dnxhr_hq"}, "dnxhr_hq",
        rate=Fraction(30000, 1001), timecode="00:59:59;28")
    segments = _check_round_trip(source, out, done, samples, {
        "codec": "dnxhd", "profile": "DNXHR HQ", "pix_fmt": "yuv422p",
        "rate": Fraction(30000, 1001)})
    tc = read_timecode(out)
    assert tc.text == "00:59:59;28" and tc.drop_frame and tc.rate == Fraction(30000, 1001)
    assert segments[0]["tc_in"] == "01:00:00;06"  # 00:59:59;28 + 8 frames


def test_10_bit_source_to_ffv1_is_composited_at_10_bits_and_lossless(media_dir, tmp_path):
    source = encode_clip(tmp_path / "src.mov", media_dir / "video" / TALKING_HEAD, 12,
                         "prores_ks", "yuv422p10le", options={"profile": "hq"})
    samples = write_pcm24(tmp_path / "mix.wav", 1.0)
    info, scan = film_of(source)
    unit = fake_unit(tmp_path / "unit.npz", range(4, 8))
    out = tmp_path / "dub.mkv"
    done = assemble_film(info, scan, [(4, 8, unit)], out, audio=tmp_path / "mix.wav",
                         codec="ffv1", timecode="10:00:00:00")
    assert done.pix_fmt == "yuv422p10le" and done.packets_copied == 0
    assert read_timecode(out).text == "10:00:00:00"
    audio = decoded_audio(out)
    assert done.audio.codec == "flac" and np.array_equal(audio >> 8, samples[:, :audio.shape[1]])
    with av.open(str(source)) as c:
        src_frames = list(c.decode(video=0))
    preds = np.load(unit)["preds"]
    for i, (frame, planes) in enumerate(zip(src_frames, video_planes(out))):
        want = frame if i not in range(4, 8) else paste_faces(frame, [(BOX, preds[i - 4])])
        want_planes = video_planes_of(want)
        assert all(np.array_equal(a, b) for a, b in zip(want_planes, planes)), f"picture {i}"


def video_planes_of(frame) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint16).reshape(p.height, -1)[:, : p.width]
            for p in frame.planes]


def test_composite_at_16_bits_matches_8_bits_scaled():
    rng = np.random.default_rng(3)
    box8 = rng.integers(0, 256, (60, 50, 3)).astype(np.uint8)
    generated = rng.uniform(0, 255, (96, 96, 3)).astype(np.float32)
    out8, mask = composite_face(box8, generated)
    out16, mask16 = composite_face(box8.astype(np.uint16) * 257, generated)
    assert out16.dtype == np.uint16 and np.array_equal(mask, mask16)
    assert np.abs(out16 / 257.0 - out8).max() <= 0.51  # the same blend, finer steps
    # Samples outside the mask keep every bit, the low ones too.
    deep = rng.integers(0, 65536, (60, 50, 3)).astype(np.uint16)
    out, _ = composite_face(deep, generated)
    untouched = lower_face_mask(60, 50) == 0
    assert np.array_equal(out[untouched], deep[untouched])
    assert not np.array_equal(out, deep)


def test_profiles_refuse_what_they_cannot_deliver():
    assert resolve_profile(None, ".mov").name == "h264"
    assert resolve_profile(None, ".mkv").name == "ffv1"
    with pytest.raises(ProfileError, match="prores_hq.*mov"):
        resolve_profile("prores_hq", ".mkv")
    with pytest.raises(ProfileError, match="dnxhr_hqx"):
        PROFILES["dnxhr_hq"].pix_fmt_for("yuv422p10le")
    with pytest.raises(ProfileError, match="unknown"):
        resolve_profile("divx", ".mov")
    assert PROFILES["h264"].pix_fmt_for("yuv422p10le") == "yuv420p10le"
    assert PROFILES["ffv1"].pix_fmt_for("yuv444p12le") == "yuv444p12le"
    master, review = PROFILES["prores_hq"], PROFILES["h264"]
    assert audio_codec(master, ".mov", "s32", "pcm_s24le") == ("pcm_s24le", "s32")
    assert audio_codec(master, ".mov", "s16", "pcm_s16le") == ("pcm_s16le", "s16")
    assert audio_codec(master, ".mov", "fltp", "aac") == ("pcm_f32le", "flt")
    assert audio_codec(PROFILES["ffv1"], ".mkv", "s32p", "flac") == ("flac", "s32")
    assert audio_codec(review, ".mp4", "s32", "pcm_s24le") == ("aac", None)


def test_odd_sizes_are_padded_only_where_the_chroma_cannot_hold_them():
    from lipdub.pipeline.media.frames import pad_frame, plane_arrays

    assert PROFILES["h264"].fit_size(911, 1137, "yuv444p") == (912, 1138)  # 4:2:0: both
    assert PROFILES["prores_hq"].fit_size(911, 1137, "yuv422p10le") == (912, 1137)  # width
    assert PROFILES["prores_4444"].fit_size(911, 1137, "yuv444p10le") == (911, 1137)
    assert PROFILES["ffv1"].fit_size(911, 1137, "yuv444p") == (911, 1137)
    # A 10-bit 4:4:4 picture padded to 4:2:0-able size: edge samples repeated, nothing else
    # changed, depth kept.
    rng = np.random.default_rng(0)
    frame = av.VideoFrame(7, 5, "yuv444p10le")
    source = [rng.integers(0, 1024, (5, 7)).astype(np.uint16) for _ in range(3)]
    for plane, data in zip(frame.planes, source):
        buf = np.zeros((plane.height, plane.line_size // 2), np.uint16)
        buf[:, :7] = data
        plane.update(buf)
    frame.pts, frame.time_base = 3, Fraction(1, 25)
    padded = pad_frame(frame, 8, 6)
    assert (padded.width, padded.height, padded.format.name, padded.pts) == (
        8, 6, "yuv444p10le", 3)
    for got, want in zip(plane_arrays(padded), source):
        np.testing.assert_array_equal(got[:5, :7], want)
        np.testing.assert_array_equal(got[5, :7], want[4])
        np.testing.assert_array_equal(got[:5, 7], want[:, 6])
