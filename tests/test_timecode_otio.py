"""Timecode: SMPTE maths (drop-frame too), read from sources, carried to outputs; the OTIO
timeline loads and its clips sit at source timecode."""

from __future__ import annotations

from fractions import Fraction

import opentimelineio as otio
import pytest
from mastering_media import TALKING_HEAD, encode_clip

from lipdub.pipeline.media.otio_export import Span, build_timeline, write_timeline
from lipdub.pipeline.media.timecode import (
    TimecodeError,
    frames_to_timecode,
    parse_timecode,
    read_timecode,
    timecode_to_frames,
)

NTSC = Fraction(30000, 1001)


@pytest.mark.parametrize("text, rate, frames", [
    ("01:00:00:00", 25, 90000), ("00:00:01:23", 24, 47), ("01:00:00:00", Fraction(24000, 1001),
                                                          86400),
    ("00:01:00;02", NTSC, 1800), ("00:10:00;00", NTSC, 17982), ("01:00:00;00", NTSC, 107892),
    ("00:01:00;04", Fraction(60000, 1001), 3600),
])
def test_timecode_to_frames_and_back(text, rate, frames):
    assert timecode_to_frames(text, rate) == frames
    assert frames_to_timecode(frames, rate, ";" in text) == text
    assert otio.opentime.from_timecode(text, float(rate)).value == frames


def test_drop_frame_counting_matches_opentimelineio():
    for n in range(0, 40000, 37):
        assert frames_to_timecode(n, NTSC, True) == otio.opentime.to_timecode(
            otio.opentime.RationalTime(n, float(NTSC)), float(NTSC), True)
        assert timecode_to_frames(frames_to_timecode(n, NTSC, True), NTSC) == n


def test_bad_timecodes_name_the_fix():
    with pytest.raises(TimecodeError, match="HH:MM:SS:FF"):
        timecode_to_frames("1:00", 25)
    with pytest.raises(TimecodeError, match="only at 29.97"):
        timecode_to_frames("01:00:00;00", 25)
    with pytest.raises(TimecodeError, match="dropped"):
        timecode_to_frames("00:01:00;00", NTSC)
    with pytest.raises(TimecodeError, match="out of range"):
        timecode_to_frames("00:00:00:25", 25)


@pytest.mark.parametrize("suffix, encoder, pix_fmt", [(".mov", "prores_ks", "yuv422p10le"),
                                                      (".mkv", "ffv1", "yuv420p")])
def test_timecode_is_read_from_mov_and_matroska(media_dir, tmp_path, suffix, encoder, pix_fmt):
    clip = media_dir / "video" / TALKING_HEAD
    made = encode_clip(tmp_path / f"tc{suffix}", clip, 3, encoder, pix_fmt, rate=NTSC,
                       timecode="00:59:59;28", size=64)
    tc = read_timecode(made)
    assert (tc.text, tc.rate, tc.drop_frame, tc.frames) == ("00:59:59;28", NTSC, True, 107890)
    assert tc.shifted(2) == "01:00:00;00"  # minute 60: a tenth minute, nothing dropped
    plain = encode_clip(tmp_path / f"plain{suffix}", clip, 2, encoder, pix_fmt, size=64)
    assert read_timecode(plain) is None


def test_otio_timeline_places_shots_and_segments_at_source_timecode(tmp_path):
    start = parse_timecode("00:59:59;28", NTSC)
    media = tmp_path / "dub.mov"
    shots = [Span("shot 0", 0, 40), Span("shot 1", 40, 100)]
    segments = [Span("anna", 5, 30, {"character": "anna"}),
                Span("ben", 10, 20, {"character": "ben"}),  # overlaps anna: another track
                Span("anna 2", 50, 90, {"character": "anna"})]
    path = write_timeline(build_timeline("dub", media, NTSC, 100, start, shots, segments,
                                         {"consent": "ok"}), tmp_path / "dub.otio")
    timeline = otio.adapters.read_from_file(str(path))
    rate = float(NTSC)
    assert timeline.global_start_time.to_timecode(rate, True) == "00:59:59;28"
    assert timeline.metadata["lipdub"]["consent"] == "ok"
    v1, v2, v3 = timeline.tracks
    clips = list(v1.find_clips())
    assert [c.source_range.start_time.to_timecode(rate, True) for c in clips] == [
        "00:59:59;28", "01:00:01;08"]
    assert all(c.media_reference.target_url == media.resolve().as_uri() for c in clips)
    # In the timeline, each dubbed clip starts where its frames are in the film.
    placed = {c.name: (c.range_in_parent().start_time.value, c.source_range)
              for track in (v2, v3) for c in track.find_clips()}
    assert placed["anna"][0] == 5 and placed["anna 2"][0] == 50 and placed["ben"][0] == 10
    assert placed["anna 2"][1].start_time.to_timecode(rate, True) == "01:00:01;18"
    assert placed["anna 2"][1].duration.value == 40
    assert [c.name for c in v3.find_clips()] == ["ben"]
