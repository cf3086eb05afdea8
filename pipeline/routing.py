"""Routing: which on-screen face speaks each piece of each character's dubbed dialogue.

Speech segments are split at cuts. Overrides from the job decide first. Otherwise the faces on
screen for most of a piece are scored by how well their mouth motion follows the stem's
loudness (Pearson correlation, smoothed over ~0.3 s, with a second of context around the piece):

- one face on screen: it is taken as the speaker unless its mouth clearly moves against the
  speech (score below ``-min_score``, a listener reacting); reaction shots where the speaker
  is off screen need an ``off_screen`` override;
- several faces: the best-scoring face, when it beats every other by ``margin`` (a speaker
  among listeners) or clears ``min_score``; otherwise the piece is ambiguous and left alone;
- no face, or a piece too short to judge: off-screen speech, the picture is left alone.

With an expert SyncNet checkpoint in the job, pieces with several faces are first judged by it
(:mod:`pipeline.expert_routing`: each face's lips against the film's original audio); the face
it ranks first by at least ``expert_margin`` is the speaker, and only when it cannot tell do the
mouth-motion rules above decide. A lone face keeps the rule above: the expert's confidence has
no scale that would tell a listener from a quiet speaker across checkpoints.

On short shots this correlation is a weak signal (a few tenths either way by chance), so the
rules only act on clear differences; overrides settle the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .film_scan import FilmScan, TrackInfo
from .job import Override
from .stems import ENVELOPE_RATE, SpeechSegment

SMOOTH_KEYFRAMES = 5
CONTEXT_SECONDS = 1.0  # silence around a piece shows a listener's mouth at rest too
MARGIN = 0.15
MIN_PIECE_FRAMES = 4
EXPERT_MARGIN = 0.05  # expert confidence (median minus zero-offset distance) between 1st and 2nd

# (candidate tracks, start frame, end frame) -> {track_id: expert confidence or None}
ExpertScorer = Callable[[list[TrackInfo], int, int], dict[int, float | None]]


@dataclass(frozen=True)
class Decision:
    """What happened to one piece of speech (for the run summary and the UI table)."""

    character: str
    shot: int
    start_frame: int
    end_frame: int  # exclusive
    track_id: int | None  # None: left alone
    reason: str
    score: float | None = None

    @property
    def synced(self) -> bool:
        return self.track_id is not None


def split_at_cuts(segment: SpeechSegment, scan: FilmScan) -> list[tuple[int, int, int]]:
    """(shot, start frame, end frame) pieces of a segment, one per shot it spans."""
    first, last = scan.frame_at(segment.start), scan.frame_at(segment.end)
    pieces = []
    for shot in scan.shots:
        a, b = max(first, shot.start), min(last, shot.end)
        if b > a:
            pieces.append((shot.index, a, b))
    return pieces


def motion_score(track: TrackInfo, envelope: np.ndarray, scan: FilmScan, start: int,
                 end: int) -> float | None:
    """Correlation of a track's mouth motion with the stem's loudness around frames [start, end)."""
    context = int(round(CONTEXT_SECONDS / scan.frame_duration))
    keep = (track.motion_frames >= start - context) & (track.motion_frames < end + context)
    frames, motion = track.motion_frames[keep], track.motion[keep]
    if len(frames) < 2 * SMOOTH_KEYFRAMES:
        return None
    t = scan.times[frames] - scan.times[0]
    # Loudness over the 50 ms before each keyframe, in dB-like (log) units.
    idx = np.clip((t * ENVELOPE_RATE).astype(int), 0, len(envelope) - 1)
    loud = np.array([np.log(envelope[max(0, i - 4) : i + 1].mean() + 1e-3) for i in idx])
    kernel = np.ones(SMOOTH_KEYFRAMES) / SMOOTH_KEYFRAMES
    m, e = np.convolve(motion, kernel, "same"), np.convolve(loud, kernel, "same")
    if m.std() < 1e-9 or e.std() < 1e-9:
        return None
    return float(np.corrcoef(m, e)[0, 1])


def _override_for(overrides: list[Override], character: str, shot: int, start_s: float,
                  end_s: float) -> Override | None:
    for o in overrides:
        if o.character != character:
            continue
        if o.shot is not None and o.shot != shot:
            continue
        if o.start is not None and end_s <= o.start:
            continue
        if o.end is not None and start_s >= o.end:
            continue
        return o
    return None


def _face_by_choice(tracks: list[TrackInfo], override: Override, frame: int) -> TrackInfo | None:
    if override.face is None:
        return None
    if override.face.index is not None:
        matches = [t for t in tracks if t.order == override.face.index]
    else:
        x, y = override.face.point
        matches = []
        for t in tracks:
            box = t.box_at(min(max(frame, t.first), t.last))
            if box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                matches.append(t)
    return max(matches, key=lambda t: t.last - t.first) if matches else None


def route(segments: list[SpeechSegment], envelopes: dict[str, np.ndarray], scan: FilmScan,
          tracks: dict[int, list[TrackInfo]], overrides: list[Override], *,
          min_score: float = 0.15, margin: float = MARGIN, expert: ExpertScorer | None = None,
          expert_margin: float = EXPERT_MARGIN) -> list[Decision]:
    """Decide, for every piece of every speech segment, the face it is synced on (or none).

    Arguments:
        segments: every character's speech segments.
        envelopes: each character's loudness envelope.
        scan: frame times and shots.
        tracks: face tracks by shot index.
        overrides: the job's routing overrides (checked first).
        expert: scores faces against the original audio (see the module docstring), or None.
    """
    decisions = []
    t0 = scan.times[0]
    for segment in segments:
        for shot, start, end in split_at_cuts(segment, scan):
            if end - start < MIN_PIECE_FRAMES:
                continue  # a segment's padding spilling over a cut: nothing to sync
            start_s, end_s = scan.times[start] - t0, scan.times[end - 1] - t0
            base = {"character": segment.character, "shot": shot, "start_frame": start,
                    "end_frame": end}
            override = _override_for(overrides, segment.character, shot, start_s, end_s)
            candidates = [t for t in tracks.get(shot, [])
                          if min(t.last + 1, end) - max(t.first, start) >= 0.5 * (end - start)]
            if override is not None:
                if override.off_screen:
                    decisions.append(Decision(**base, track_id=None, reason="override: off screen"))
                    continue
                chosen = _face_by_choice(tracks.get(shot, []), override, start)
                if chosen is not None:
                    decisions.append(Decision(**base, track_id=chosen.track_id,
                                              reason="override"))
                    continue
            if not candidates:
                decisions.append(Decision(**base, track_id=None, reason="no face on screen"))
                continue
            if expert is not None and len(candidates) > 1:
                decision = _expert_decision(expert, candidates, start, end, expert_margin)
                if decision is not None:
                    decisions.append(Decision(**base, **decision))
                    continue
            scored = [(motion_score(t, envelopes[segment.character], scan, start, end), t)
                      for t in candidates]
            scored = sorted(((s, t) for s, t in scored if s is not None), key=lambda p: -p[0])
            if not scored:
                decisions.append(Decision(**base, track_id=None, reason="too short to judge"))
                continue
            best, track = scored[0]
            second = scored[1][0] if len(scored) > 1 else None
            if second is None:
                speaks = best > -min_score
                reason = "the only face on screen" if speaks else "the only face listens"
            else:
                speaks = best >= min_score or (best > 0 and best - second >= margin)
                reason = ("mouth motion follows the speech" if speaks
                          else "no clear speaker among the faces (left alone)")
            decisions.append(Decision(**base, track_id=track.track_id if speaks else None,
                                      score=round(best, 3), reason=reason))
    return decisions


def _expert_decision(expert: ExpertScorer, candidates: list[TrackInfo], start: int, end: int,
                     expert_margin: float) -> dict | None:
    """The expert's pick among several faces, or None when it cannot tell them apart."""
    confidence = expert(candidates, start, end)
    ranked = sorted(((c, t) for t in candidates if (c := confidence.get(t.track_id)) is not None),
                    key=lambda p: -p[0])
    if len(ranked) < 2 or ranked[0][0] <= 0 or ranked[0][0] - ranked[1][0] < expert_margin:
        return None
    return {"track_id": ranked[0][1].track_id, "score": round(ranked[0][0], 3),
            "reason": "expert: lips in sync with the original audio"}


def route_film(info, scan: FilmScan, tracks: dict[int, list[TrackInfo]], stems: dict,
               overrides: list[Override], settings, work, *, expert_checkpoint: str | None = None,
               log=None) -> list[Decision]:
    """The film flow's routing step: every character's speech, decided (plain function)."""
    expert = None
    if expert_checkpoint:
        from .expert_routing import expert_scorer, film_audio_source
        from .qc_sync import load_sync_model

        audio = film_audio_source(info, work)
        if audio is None:
            if log:
                log.warning("the film has no audio: the expert cannot say who speaks; routing "
                            "by mouth motion alone")
        else:
            sync = load_sync_model(None, expert_checkpoint, device="cpu")
            expert = expert_scorer(sync, info, scan, audio, settings.pads)
    segments = [seg for st in stems.values() for seg in st.segments]
    return route(segments, {c: st.envelope for c, st in stems.items()}, scan, tracks,
                 overrides, min_score=settings.min_route_score, expert=expert,
                 expert_margin=settings.expert_margin)
