"""Routing with an expert SyncNet: who speaks, judged against the film's original audio.

- The decision rules (expert first, for several faces and lone ones; margin; fall-back to the
  weight-free judgement of the original audio; overrides) with a scorer whose answers the test
  sets.
- The scoring plumbing on the real split-screen clip (its own audio, detected faces) with
  synthetic full-size expert weights: each face's score equals the one computed in the test
  from the definition (its crops, the film's audio at their times, the offset search).
- The scoring itself with the synthetic talking-mouth expert (``synthetic_expert`` in
  conftest.py): two drawn faces side by side, one speaking the film's audio and one another
  recording; the speaker wins, and swapping the audio swaps the winner.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from lipdub.pipeline.active_speaker import OriginalSpeech
from lipdub.pipeline.audio import SAMPLE_RATE
from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.job import FaceChoice, Override
from lipdub.pipeline.routing import RoutingRules, route
from lipdub.pipeline.shots import Shot
from lipdub.pipeline.stems import ENVELOPE_RATE, SpeechSegment

FPS = 25
N = 150  # frames (6 s)


def _scan() -> FilmScan:
    return FilmScan(np.arange(N) / FPS, [Shot(0, 0, N, 0.0, N / FPS)])


def _track(track_id: int, x0: float, motion: np.ndarray | None = None) -> TrackInfo:
    boxes = np.tile(np.array([x0, 0.0, x0 + 96.0, 96.0]), (N, 1))
    frames = np.arange(0, N, 2)
    return TrackInfo(0, track_id, track_id, 0, N - 1, boxes, frames,
                     np.zeros(len(frames)) if motion is None else motion)


class Scorer:
    """An expert stand-in with set answers; it records what it was asked."""

    def __init__(self, answers: dict[int, float | None]):
        self.answers, self.calls = answers, []

    def __call__(self, candidates, start, end):
        self.calls.append(([t.track_id for t in candidates], start, end))
        return {t.track_id: self.answers.get(t.track_id) for t in candidates}


def _route(tracks, scorer, overrides=(), margin=0.05, speech=None):
    segment = SpeechSegment("ben", 0.4, 5.6)
    return route([segment], _scan(), {0: tracks}, list(overrides), speech=speech,
                 rules=RoutingRules(expert_margin=margin), expert=scorer)


def _speech_following(motion: np.ndarray) -> OriginalSpeech:
    """An original audio whose loudness rises and falls with ``motion`` (per keyframe)."""
    t = np.arange(int(N / FPS * ENVELOPE_RATE)) / ENVELOPE_RATE
    level = np.interp(t, np.arange(0, N, 2) / FPS, motion)
    return OriginalSpeech(20 * np.log10(0.01 + level), np.ones(len(t), bool))


def _talking(seed: int) -> np.ndarray:
    """Mouth motion per keyframe of a face that talks (smoothed random syllables)."""
    rng = np.random.default_rng(seed)
    return np.convolve(rng.random(N // 2), np.ones(3) / 3, "same") + 0.2


def test_the_experts_clear_pick_decides_among_several_faces():
    # Without the expert, the original audio would pick face 0 (its mouth follows it).
    tracks = [_track(0, 0, motion=_talking(1)), _track(1, 100, motion=_talking(2))]
    scorer = Scorer({0: 0.02, 1: 0.4})
    (decision,) = _route(tracks, scorer, speech=_speech_following(_talking(1)))
    assert decision.track_id == 1 and decision.reason.startswith("expert")
    assert decision.score == 0.4 and decision.rule == "expert" and decision.margin == 0.38
    assert scorer.calls == [([0, 1], decision.start_frame, decision.end_frame)]


@pytest.mark.parametrize("answers", [{0: 0.30, 1: 0.32}, {0: -0.1, 1: -0.02}, {0: None, 1: 0.5}])
def test_an_undecided_expert_leaves_it_to_the_original_audio(answers):
    tracks = [_track(0, 0, motion=_talking(1)), _track(1, 100, motion=_talking(2))]
    (decision,) = _route(tracks, Scorer(answers), speech=_speech_following(_talking(1)))
    assert decision.rule == "speaker" and decision.track_id == 0
    # ...and without original audio nothing else can tell: left alone, never guessed.
    (decision,) = _route(tracks, Scorer(answers))
    assert decision.track_id is None and decision.rule == "no_original_audio"


def test_a_lone_face_asks_the_expert_overrides_do_not():
    scorer = Scorer({0: 0.3})
    (lone,) = _route([_track(0, 0, motion=_talking(3))], scorer)
    assert len(scorer.calls) == 1 and lone.track_id == 0 and lone.rule == "expert"
    (doubtful,) = _route([_track(0, 0, motion=_talking(3))], Scorer({0: 0.05}))
    assert doubtful.track_id is None  # under expert_lone_min, and no original audio to ask
    scorer = Scorer({0: 0.0})
    override = Override(character="ben", face=FaceChoice(index=0))
    (chosen,) = _route([_track(0, 0), _track(1, 100)], scorer, overrides=[override])
    assert scorer.calls == [] and chosen.track_id == 0 and chosen.reason == "override"


def test_split_screen_faces_are_scored_against_the_films_audio(
        media_dir, detector_weights, expert_weights, tmp_path):
    from lipdub.pipeline.expert_routing import CONTEXT_SECONDS, expert_scorer
    from lipdub.pipeline.faces.detector import load_face_detector
    from lipdub.pipeline.film_scan import scan_film, track_shot
    from lipdub.pipeline.lse_segment import AudioSource, load_sync_model
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.routing import original_speech

    info = probe_video(media_dir / "video" / "two_people_splitscreen__ghost_2person.mp4")
    scan = scan_film(info, cut_times=[])
    tracks = track_shot(info, scan, scan.shots[0], load_face_detector(detector_weights).detect)
    assert len(tracks) >= 2
    speech, (original, lead) = original_speech(info, tmp_path)
    audio = AudioSource.from_samples(original.samples(), "expert", lead)
    assert len(speech.db) == pytest.approx(scan.duration * ENVELOPE_RATE, rel=0.05)
    assert len(audio.samples) == pytest.approx(
        scan.duration * SAMPLE_RATE, rel=0.05)
    sync = load_sync_model(None, str(expert_weights))
    pads = (0, 10, 0, 0)
    score = expert_scorer(sync, info, scan, audio, pads)
    scores = score(tracks[:2], 10, 100)
    assert set(scores) == {tracks[0].track_id, tracks[1].track_id}
    # Synthetic weights judge nothing, so which face wins means nothing here; what is
    # deterministic is the plumbing. Each score must be the one computed below from the
    # definition, with the same network: the face's own padded crops over the piece and its
    # context, the film's audio at the pictures' times, the offset search at offset 0. A wrong
    # crop, pad, context, audio lead or mel position moves a score by 1e-5 or more (tried);
    # the two ways of computing it agree to ~2e-7 (float32 embeddings).
    context = int(round(CONTEXT_SECONDS * float(info.average_rate)))
    lo, hi = max(10 - context, 0), min(100 + context, len(scan.times))
    with av.open(str(info.path)) as container:
        pictures = [f.to_ndarray(format="bgr24")
                    for _, f in zip(range(hi), container.decode(video=0))][lo:]
    for track in tracks[:2]:
        assert track.first <= lo and hi - 1 <= track.last  # no gap: every picture scored
        want = _expert_confidence(sync.model, info, track, pictures, lo, pads,
                                  scan.times[lo:hi] - scan.times[0], original.samples(), lead)
        assert scores[track.track_id] == pytest.approx(want, abs=1e-6), (track.track_id, scores)
    assert abs(scores[tracks[0].track_id] - scores[tracks[1].track_id]) > 1e-4  # own crops


def _expert_confidence(model, info, track, pictures, lo, pads, times, samples, lead) -> float:
    """The zero-offset confidence of one face from the definitions (spec §3.1, §1.4, §7.3),
    written out with numpy: 5-picture windows of the lower halves of the face's crops, the
    16-column mel chunk at each window's first picture, distances at offsets -15..15 with
    zeros beyond the ends, and the median over offsets minus the mean distance at offset 0."""
    import torch

    from lipdub.pipeline.audio import melspectrogram
    from lipdub.pipeline.generator import crop_face, padded_box

    lower = [crop_face(pic, padded_box(track.boxes[k - track.first], pads, info.width,
                                       info.height))[48:].astype(np.float32) / 255
             for k, pic in enumerate(pictures, start=lo)]
    first = int(round((times[0] + lead) * SAMPLE_RATE))
    seconds = times[-1] - times[0] + 0.5
    mel = melspectrogram(samples[first: first + int(np.ceil(seconds * SAMPLE_RATE))])
    n = len(lower) - 4
    faces = np.stack([np.concatenate(lower[v: v + 5], axis=2) for v in range(n)])
    columns = [int(np.floor((times[v] - times[0]) * 80 + 1e-9)) for v in range(n)]
    assert columns[-1] + 16 <= mel.shape[1]  # no chunk clamped at the end
    mels = np.stack([mel[:, c: c + 16] for c in columns])[:, None]
    with torch.inference_mode():
        audio_emb, face_emb = model(torch.from_numpy(mels), torch.from_numpy(faces)
                                    .permute(0, 3, 1, 2))
    a, f = audio_emb.double().numpy(), face_emb.double().numpy()
    shift = 15
    padded = np.concatenate([np.zeros((shift, a.shape[1])), a, np.zeros((shift, a.shape[1]))])
    mean_dist = np.array([
        np.mean([np.linalg.norm(f[v] - padded[v + shift + k] + 1e-6) for v in range(n)])
        for k in range(-shift, shift + 1)])
    return float(np.median(mean_dist) - mean_dist[shift])


def test_a_film_without_audio_has_no_original_speech(media_dir, tmp_path):
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.routing import original_speech

    silent = next((media_dir / "video").glob("*NO_AUDIO_STREAM*"))
    assert original_speech(probe_video(silent), tmp_path) == (None, None)


TRAIN_AUDIO = "en_ljspeech_LJ001-0001__coqui.wav"
HELD_OUT_AUDIO = "speech_48k_stereo__vretalk_audio2.wav"


@pytest.mark.slow  # the session trains its expert once (about two minutes)
def test_the_synthetic_expert_finds_the_speaker(media_dir, synthetic_expert, tmp_path):
    import av

    from lipdub.pipeline.audio import read_audio
    from lipdub.pipeline.expert_routing import score_faces
    from lipdub.pipeline.lse_segment import AudioSource, load_sync_model
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.training.synthetic import (
        normalise_level,
        openings_from_audio,
        random_identity,
        render_face,
        shapes_from_audio,
    )

    voices = [normalise_level(read_audio(media_dir / "audio" / name).samples)[: N * 640]
              for name in (HELD_OUT_AUDIO, TRAIN_AUDIO)]
    rng = np.random.default_rng(7)
    people = [random_identity(rng), random_identity(rng)]
    mouths = [(openings_from_audio(v, N, FPS), shapes_from_audio(v, N, FPS)) for v in voices]
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 192, 96, "bgr0"
        for k in range(N):
            halves = [render_face(p, o[k], noise=2.0, rng=rng, shape=s[k])
                      for p, (o, s) in zip(people, mouths)]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.hstack(halves)), "bgr24")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    info = probe_video(path)
    scan = FilmScan(np.arange(N) / FPS, [Shot(0, 0, N, 0.0, N / FPS)])
    tracks = [_track(0, 0), _track(1, 96)]
    sync = load_sync_model(None, str(synthetic_expert))
    for speaker, voice in enumerate(voices):
        audio = AudioSource.from_samples(voice, "expert")
        scores = score_faces(sync, info, scan, tracks, 10, 140, audio, (0, 0, 0, 0))
        listener = 1 - speaker
        assert scores[speaker] - scores[listener] >= 0.05, scores
