"""Routing without weights: each face's mouth motion against the film's ORIGINAL audio.

- ``face_evidence``: a mouth that follows the original's loudness stands out against the same
  mouth with the audio shifted (z), one that follows another recording does not.
- The decision rules on set inputs: the speaker among several faces, a still lone face is a
  listener, a silent original leaves the piece alone, a face speaks for one character per shot,
  every decision carries each face's evidence.
- Real footage: cases of the routing benchmark (benchmarks/routing_cases.py, films built from
  ../shared/media with known speakers) through the flow's own analysis and routing: never a
  word in a wrong mouth, never a sync where nobody on screen speaks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lipdub.pipeline.active_speaker import OriginalSpeech, face_evidence
from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.routing import route
from lipdub.pipeline.shots import Shot
from lipdub.pipeline.stems import ENVELOPE_RATE, SpeechSegment

FPS = 25
N = 200  # 8 s


def _syllables(seed: int) -> np.ndarray:
    """A speech-like loudness per 10 ms: bursts at about 4 per second, pauses between."""
    rng = np.random.default_rng(seed)
    steps = N * 4  # 10 ms steps over N frames
    level = np.zeros(steps + 40)
    at = 0
    while at < steps:
        length = int(rng.integers(12, 30))
        level[at : at + length] = rng.uniform(0.3, 1.0) * np.hanning(length)
        at += length + int(rng.integers(3, 20))
    return level[:steps]


def _speech(level: np.ndarray) -> OriginalSpeech:
    return OriginalSpeech(20 * np.log10(1e-3 + level), level > 0.05)


def _mouth(level: np.ndarray, seed: int, lead: float = 0.08) -> np.ndarray:
    """A mouth's motion at keyframes (every 2nd frame) following ``level``, with noise."""
    rng = np.random.default_rng(seed)
    frames = np.arange(0, N, 2)
    at = np.clip(((frames / FPS + lead) * ENVELOPE_RATE).astype(int), 0, len(level) - 1)
    return 0.2 + level[at] + 0.15 * rng.random(len(frames))


def _track(track_id: int, motion: np.ndarray) -> TrackInfo:
    boxes = np.tile(np.array([100.0 * track_id, 0, 100.0 * track_id + 90, 90]), (N, 1))
    return TrackInfo(0, track_id, track_id, 0, N - 1, boxes, np.arange(0, N, 2), motion)


def _scan() -> FilmScan:
    return FilmScan(np.arange(N) / FPS, [Shot(0, 0, N, 0.0, N / FPS)])


def _route(tracks, level, segments=None):
    segments = segments or [SpeechSegment("ben", 0.5, 7.5)]
    return route(segments, _scan(), {0: tracks}, [], speech=_speech(level))


def test_a_mouth_in_sync_with_the_original_stands_out():
    heard, other = _syllables(1), _syllables(2)
    seconds = np.arange(N) / FPS
    frames = np.arange(0, N, 2)
    speaker = face_evidence(0, frames, _mouth(heard, 3), seconds, [(0, N)], _speech(heard))
    mouther = face_evidence(1, frames, _mouth(other, 4), seconds, [(0, N)], _speech(heard))
    assert speaker.z > 4 and speaker.sync > 0.5
    assert mouther.z < 2 and mouther.sync < 0.3
    short = face_evidence(0, frames, _mouth(heard, 3), seconds, [(0, 16)], _speech(heard))
    assert short.z is None and "too few" in short.describe()


def test_the_speaker_among_several_faces_and_its_evidence():
    heard, other = _syllables(1), _syllables(2)
    tracks = [_track(0, _mouth(other, 5)), _track(1, _mouth(heard, 6))]
    (decision,) = _route(tracks, heard)
    assert decision.track_id == 1 and decision.rule == "speaker"
    assert [e.track_id for e in decision.evidence] == [0, 1]
    z = {e.track_id: e.z for e in decision.evidence}
    assert decision.margin == pytest.approx(z[1] - z[0], abs=0.01)
    # The other recording heard instead: the other face speaks.
    (decision,) = _route(tracks, other)
    assert decision.track_id == 0


def test_lone_faces_listeners_and_silence():
    heard, other = _syllables(1), _syllables(2)
    (speaker,) = _route([_track(0, _mouth(heard, 7))], heard)
    assert speaker.track_id == 0 and speaker.rule == "lone_speaker"
    still = np.full(N // 2, 0.02) + 0.01 * np.random.default_rng(8).random(N // 2)
    (listener,) = _route([_track(0, still)], heard)
    assert listener.track_id is None and listener.rule == "listener"
    (mouther,) = _route([_track(0, _mouth(other, 9))], heard)  # lips move, someone else heard
    assert mouther.track_id is None and mouther.rule == "unclear"
    (silent,) = _route([_track(0, _mouth(heard, 7))], np.zeros_like(heard))
    assert silent.track_id is None and silent.rule == "silent_original"


def test_a_face_speaks_for_one_character_per_shot():
    heard = _syllables(1)
    tracks = [_track(0, _mouth(heard, 10)), _track(1, _mouth(_syllables(2), 11))]
    both = [SpeechSegment("anna", 0.5, 3.5), SpeechSegment("ben", 4.0, 7.5)]
    decisions = _route(tracks, heard, both)
    synced = [d for d in decisions if d.synced]
    assert len(synced) == 1 and synced[0].track_id == 0
    taken = [d for d in decisions if not d.synced]
    assert len(taken) == 1 and taken[0].rule == "face_taken"
    assert synced[0].character in taken[0].reason


@pytest.fixture(scope="module")
def benchmark(media_dir, detector_weights):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import routing_accuracy
    import routing_cases

    from lipdub.pipeline.faces.detector import load_face_detector

    return routing_accuracy, routing_cases, load_face_detector(detector_weights)


@pytest.mark.parametrize("name", ["nodding_listener", "narrator", "three_faces"])
def test_real_footage_never_puts_words_in_the_wrong_mouth(benchmark, media_dir, name, tmp_path,
                                                         one_torch_thread):
    accuracy, cases, detector = benchmark
    case = next(c for c in cases.CASES if c.name == name)
    counts = accuracy.run_case(case, media_dir, detector, tmp_path)
    assert counts["decisions"], counts  # speech was routed at all (else every check is vacuous)
    assert counts["wrong"] == 0 and counts["false"] == 0, counts["decisions"]
    if name == "nodding_listener":  # the speaker beside a nodding listener is found
        assert counts["should"] > 0 and counts["hits"] >= 0.9 * counts["should"], counts
    if name == "narrator":  # nobody on screen speaks: every piece left alone, with a reason
        assert all(d["track"] is None and d["rule"] in ("listener", "unclear")
                   for d in counts["decisions"]), counts["decisions"]


def _face(mouth_open: float, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A grey 'face' picture (box 100..260 x 60..260) with a dark mouth ``mouth_open`` high."""
    import cv2

    picture = np.full((360, 480), 90, np.uint8)
    cv2.rectangle(picture, (100, 60), (260, 260), 170, -1)
    rng = np.random.default_rng(0)
    picture[60:260, 100:260] += rng.integers(0, 20, (200, 160), dtype=np.uint8)  # skin texture
    cv2.ellipse(picture, (180, 220), (40, max(1, int(mouth_open))), 0, 0, 360, 30, -1)
    return np.roll(picture, shift, axis=(0, 1))


def test_mouth_motion_is_the_mouth_not_the_head():
    from lipdub.pipeline.faces.mouth_activity import (
        face_square,
        mouth_deformation,
        mouth_from_square,
    )

    box = np.array([100.0, 60.0, 260.0, 260.0])

    def mouth(picture, at=box):
        return mouth_from_square(*face_square(picture, at), at)

    closed = mouth(_face(3))
    assert closed.min() < 60  # the dark mouth is inside the crop
    opened = mouth_deformation(closed, mouth(_face(14)))
    # The head moves 3 px down and 2 right; the smoothed box follows it, exactly or 1 px behind.
    followed = mouth_deformation(closed, mouth(_face(3, (3, 2)), box + [2, 3, 2, 3]))
    lagging = mouth_deformation(closed, mouth(_face(3, (3, 2)), box + [1, 3, 1, 3]))
    still = mouth_deformation(closed, mouth(_face(3)))
    assert still < 0.05 and followed < 0.05, (still, followed)
    assert opened > 1.0 and opened > 3 * lagging, (opened, lagging)


def test_job_settings_for_routing():
    from lipdub.pipeline.job import JobSpecError, parse_job

    root = Path(__file__).resolve().parents[1]
    example = parse_job(root / "configs" / "pipeline" / "example_job.yaml")
    assert example.settings.route_min_z == 2.0 and example.settings.route_margin_z == 1.5
    old = {"film": "a.mp4", "stems": {"anna": "a.wav"}, "output": {"path": "o.mp4"},
           "checkpoints": {"generator": "g.pth"}, "settings": {"min_route_score": 0.2}}
    with pytest.raises(JobSpecError, match="min_route_score is gone.*route_min_z"):
        parse_job(old)
    spec = parse_job({**old, "settings": {}, "original_dialogue": "dialogue.wav"},
                     base=Path("/studio/reel1"))
    assert spec.original_dialogue == Path("/studio/reel1/dialogue.wav")
