"""The run's tables speak one vocabulary: half-open frames with timecodes beside, faces by
their place, overlapping routes said (expected values worked out by hand)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.media.timecode import FrameClock as Clock
from lipdub.pipeline.media.timecode import parse_timecode
from lipdub.pipeline.routing import Decision
from lipdub.pipeline.run_tables import describe_faces, routing_rows, shot_rows, track_rows
from lipdub.pipeline.shots import Shot


def track(shot: int, track_id: int, order: int, first: int, last: int) -> TrackInfo:
    return TrackInfo(shot, track_id, order, first, last, np.zeros((last - first + 1, 4)))


def test_frames_are_half_open_with_the_last_frame_shown_as_timecode_out():
    clock = Clock(25)
    assert clock.span(4, 12) == {"first frame": 4, "end frame": 12,
                                 "timecode in": "00:00:00:04", "timecode out": "00:00:00:11"}
    own = Clock(Fraction(25), parse_timecode("10:00:00:00", 25))
    assert own.span(25, 50)["timecode out"] == "10:00:01:24"


def test_faces_are_named_by_their_place_among_the_shots_faces():
    tracks = [track(3, 7, 2, 0, 9), track(3, 4, 0, 0, 9), track(3, 5, 1, 5, 9),
              track(4, 1, 0, 0, 3)]
    names = describe_faces(tracks)
    assert names[(3, 4)] == "face 1 of 3 from the left"
    assert names[(3, 5)] == "face 2 of 3 from the left"
    assert names[(3, 7)] == "face 3 of 3 from the left"
    assert names[(4, 1)] == "face 1 of 1 from the left"
    rows = track_rows(tracks[:1], Clock(25))
    assert rows == [{"shot": 3, "face": "face 1 of 1 from the left", "track": 7,
                     "first frame": 0, "end frame": 10, "timecode in": "00:00:00:00",
                     "timecode out": "00:00:00:09"}]


def test_shots_end_where_the_next_begins():
    times = np.arange(50) / 25
    scan = FilmScan(times, [Shot(0, 0, 20, 0.0, 0.8), Shot(1, 20, 50, 0.8, 2.0)])
    rows = shot_rows(scan, Clock(25))
    assert [(r["first frame"], r["end frame"]) for r in rows] == [(0, 20), (20, 50)]
    assert rows[1]["timecode in"] == "00:00:00:20" and rows[1]["start (s)"] == 0.8


def test_two_characters_on_overlapping_frames_of_different_faces_are_said_so():
    tracks = [track(2, 1, 0, 0, 99), track(2, 2, 1, 0, 99)]
    decisions = [Decision("anna", 2, 10, 20, 1, "she speaks", rule="speaker"),
                 Decision("ben", 2, 15, 30, 2, "he speaks", rule="speaker"),
                 Decision("carl", 2, 12, 18, None, "off screen", rule="off_screen")]
    rows = routing_rows(decisions, tracks, Clock(25))
    assert rows[0]["face"] == "face 1 of 2 from the left (track 1)"
    assert rows[0]["overlap"] == ("overlaps ben on face 2 of 2 from the left (track 2) at "
                                  "frames [15, 20)")
    assert rows[1]["overlap"] == ("overlaps anna on face 1 of 2 from the left (track 1) at "
                                  "frames [15, 20)")
    assert rows[2]["face"] == "left alone" and rows[2]["overlap"] == "none"
    assert (rows[1]["first frame"], rows[1]["end frame"], rows[1]["timecode out"]) == (
        15, 30, "00:00:01:04")
