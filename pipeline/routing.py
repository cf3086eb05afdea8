"""Routing: which on-screen face speaks each piece of each character's dubbed dialogue.

Stems say *who* speaks and *when* (each character's speech segments); the picture and the film's
ORIGINAL audio say *where*: the face whose lips follow the original dialogue at those times.
Segments are split at cuts into pieces; a character's pieces in one shot are decided together
(a character keeps one face across a shot), in this order:

1. overrides from the job (a face, or ``off_screen``);
2. no face on screen for most of the pieces: off-screen speech, the picture is left alone;
3. with an expert SyncNet checkpoint, each piece is judged by it
(:mod:`lipdub.pipeline.expert_routing`):
   among several faces the one it ranks first by ``expert_margin``, a lone face when its
   confidence reaches ``expert_lone_min``;
4. otherwise, without weights (:mod:`lipdub.pipeline.active_speaker`): each face's mouth motion
against
   the original audio's loudness, as a z-score against the same face with the audio shifted.
   Several faces: the best, if its z reaches ``route_min_z`` and beats the next face by
   ``route_margin_z``. A lone face: synced only when its z reaches ``route_min_z`` (it speaks in
   the original at that time); a still mouth is a listener. The original silent there, no
   original audio at all, or too little picture to judge: left alone.

Pieces left alone are listed with their reason, for an override. A face speaks for one character
per shot: if two characters land on the same face, the stronger evidence keeps it. Every decision
carries its evidence (each face's scores, the margin, the rule that decided).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from lipdub.pipeline.active_speaker import FaceEvidence, OriginalSpeech, face_evidence
from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.job import Override
from lipdub.pipeline.stems import ENVELOPE_RATE, SpeechSegment

MIN_PIECE_FRAMES = 4
CONTEXT_SECONDS = 0.5  # picture either side of a piece that is judged with it (lips at rest)
MIN_AUDIBLE = 0.3  # share of a piece where the original must be heard for anyone to speak it
MIN_ACTIVITY = 0.3  # median mouth motion below this (% of the mouth's width a step): still
EXPERT_MARGIN = 0.05  # expert confidence (median minus zero-offset distance) between 1st and 2nd

# (candidate tracks, start frame, end frame) -> {track_id: expert confidence or None}
ExpertScorer = Callable[[list[TrackInfo], int, int], dict[int, float | None]]


@dataclass(frozen=True)
class RoutingRules:
    """Thresholds of the decision (the job's ``settings``)."""

    min_z: float = 2.0
    margin_z: float = 1.5
    expert_margin: float = EXPERT_MARGIN
    expert_lone_min: float = 0.1


@dataclass(frozen=True)
class Decision:
    """What happened to one piece of speech (for the run summary, the UI table and QC).

    Attributes:
        rule: which rule decided (``override``, ``off_screen``, ``no_face``, ``expert``,
            ``speaker``, ``lone_speaker``, ``listener``, ``unclear``, ``silent_original``,
            ``no_original_audio``, ``too_short``, ``face_taken``).
        evidence: every candidate face's scores against the original audio.
        margin: how far the chosen face led the next (z or expert units).
    """

    character: str
    shot: int
    start_frame: int
    end_frame: int  # exclusive
    track_id: int | None  # None: left alone
    reason: str
    score: float | None = None
    rule: str = ""
    evidence: tuple[FaceEvidence, ...] = ()
    margin: float | None = None

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


def route(segments: list[SpeechSegment], scan: FilmScan, tracks: dict[int, list[TrackInfo]],
          overrides: list[Override], *, speech: OriginalSpeech | None,
          rules: RoutingRules = RoutingRules(), expert: ExpertScorer | None = None
          ) -> list[Decision]:
    """Decide, for every piece of every speech segment, the face it is synced on (or none).

    Arguments:
        segments: every character's speech segments (from the stems).
        scan: frame times and shots.
        tracks: face tracks by shot index.
        overrides: the job's routing overrides (checked first).
        speech: the film's original audio (None: the film has none).
        rules: the thresholds.
        expert: scores faces against the original audio with a SyncNet (see above), or None.
    """
    t0 = scan.times[0]
    pieces: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for segment in segments:
        for shot, start, end in split_at_cuts(segment, scan):
            if end - start >= MIN_PIECE_FRAMES:  # shorter: padding spilling over a cut
                pieces[(segment.character, shot)].append((start, end))
    decisions: list[Decision] = []
    for (character, shot), spans in pieces.items():
        shot_tracks = tracks.get(shot, [])
        automatic = []
        for start, end in spans:
            override = _override_for(overrides, character, shot, scan.times[start] - t0,
                                     scan.times[end - 1] - t0)
            base = Decision(character, shot, start, end, None, "", rule="override")
            if override is not None and override.off_screen:
                decisions.append(replace(base, reason="override: off screen", rule="off_screen"))
                continue
            chosen = None if override is None else _face_by_choice(shot_tracks, override, start)
            if chosen is not None:
                decisions.append(replace(base, track_id=chosen.track_id, reason="override"))
            else:
                automatic.append((start, end))
        if automatic:
            decisions += _decide(character, shot, automatic, shot_tracks, scan, speech, rules,
                                 expert)
    return sorted(_one_character_per_face(decisions), key=lambda d: (d.start_frame, d.character))


def _decide(character: str, shot: int, spans: list[tuple[int, int]], shot_tracks, scan,
            speech: OriginalSpeech | None, rules: RoutingRules,
            expert: ExpertScorer | None) -> list[Decision]:
    """One character's pieces in one shot, decided together."""
    total = sum(end - start for start, end in spans)
    candidates = [t for t in shot_tracks
                  if sum(max(0, min(t.last + 1, e) - max(t.first, s)) for s, e in spans)
                  >= 0.5 * total]

    def each(**fields) -> list[Decision]:
        return [Decision(character, shot, s, e, **fields) for s, e in spans]

    if not candidates:
        return each(track_id=None, reason="no face on screen", rule="no_face")
    out, undecided = [], []
    for start, end in spans:
        verdict = _expert_verdict(expert, candidates, start, end, rules) if expert else None
        if verdict is not None:
            out.append(Decision(character, shot, start, end, **verdict))
        else:
            undecided.append((start, end))
    if not undecided:
        return out
    spans = undecided
    if speech is None:
        return out + each(track_id=None, rule="no_original_audio",
                          reason="the film has no original audio to judge who speaks: left "
                                 "alone (add an override)")
    seconds = scan.times - scan.times[0]
    heard = sum(speech.audible_share(seconds[s], seconds[e - 1]) * (e - s) for s, e in spans)
    if heard < MIN_AUDIBLE * total:
        return out + each(track_id=None, rule="silent_original",
                          reason="nobody speaks here in the original audio: left alone")
    shot_obj = scan.shots[shot]
    context = int(round(CONTEXT_SECONDS / scan.frame_duration))
    ranges = [(max(s - context, shot_obj.start), min(e + context, shot_obj.end)) for s, e in spans]
    evidence = tuple(face_evidence(t.track_id, t.motion_frames, t.motion, seconds, ranges, speech)
                     for t in candidates)
    verdict = _speaker_verdict(evidence, rules)
    return out + each(**verdict, evidence=evidence)


def _speaker_verdict(evidence: tuple[FaceEvidence, ...], rules: RoutingRules) -> dict:
    """The weight-free decision among the faces on screen (see the module docstring)."""
    if any(e.z is None for e in evidence):
        return {"track_id": None, "rule": "too_short",
                "reason": "too little picture of the face(s) to judge: left alone"}
    ranked = sorted(evidence, key=lambda e: -e.z)
    best = ranked[0]
    if len(ranked) == 1:
        if best.activity < MIN_ACTIVITY:
            return {"track_id": None, "rule": "listener", "score": round(best.z, 2),
                    "reason": "the only face on screen keeps its mouth still: a listener"}
        if best.z >= rules.min_z:
            return {"track_id": best.track_id, "rule": "lone_speaker", "score": round(best.z, 2),
                    "reason": "the only face on screen; its lips follow the original audio"}
        return {"track_id": None, "rule": "unclear", "score": round(best.z, 2),
                "reason": "the only face on screen does not clearly follow the original "
                          "audio: left alone"}
    margin = best.z - ranked[1].z
    if best.z >= rules.min_z and margin >= rules.margin_z and best.activity >= MIN_ACTIVITY:
        return {"track_id": best.track_id, "rule": "speaker", "score": round(best.z, 2),
                "margin": round(margin, 2),
                "reason": "its lips follow the original audio, the other faces' do not"}
    return {"track_id": None, "rule": "unclear", "score": round(best.z, 2),
            "margin": round(margin, 2),
            "reason": "no clear speaker among the faces: left alone"}


def _expert_verdict(expert: ExpertScorer, candidates: list[TrackInfo], start: int, end: int,
                    rules: RoutingRules) -> dict | None:
    """The expert's pick, or None when it cannot tell."""
    confidence = expert(candidates, start, end)
    ranked = sorted(((c, t) for t in candidates if (c := confidence.get(t.track_id)) is not None),
                    key=lambda p: -p[0])
    if not ranked:
        return None
    if len(candidates) == 1:
        if ranked[0][0] < rules.expert_lone_min:
            return None
        return {"track_id": ranked[0][1].track_id, "score": round(ranked[0][0], 3),
                "rule": "expert", "reason": "expert: the only face; its lips are in sync with "
                                            "the original audio"}
    if len(ranked) < 2 or ranked[0][0] <= 0 or ranked[0][0] - ranked[1][0] < rules.expert_margin:
        return None
    return {"track_id": ranked[0][1].track_id, "score": round(ranked[0][0], 3), "rule": "expert",
            "margin": round(ranked[0][0] - ranked[1][0], 3),
            "reason": "expert: lips in sync with the original audio"}


def _one_character_per_face(decisions: list[Decision]) -> list[Decision]:
    """A face speaks for one character per shot: the strongest evidence keeps it."""
    holders: dict[tuple[int, int], list[Decision]] = defaultdict(list)
    for d in decisions:
        if d.synced:
            holders[(d.shot, d.track_id)].append(d)
    keep: dict[tuple[int, int], str] = {}
    for key, claims in holders.items():
        if len({d.character for d in claims}) > 1:
            ranked = sorted(claims, key=lambda d: (d.rule == "override",
                                                   d.score if d.score is not None else -1e9),
                            reverse=True)
            keep[key] = ranked[0].character
    out = []
    for d in decisions:
        owner = keep.get((d.shot, d.track_id)) if d.synced else None
        if owner is not None and owner != d.character and d.rule != "override":
            d = replace(d, track_id=None, rule="face_taken",
                        reason=f"the face speaks for {owner} in this shot: left alone")
        out.append(d)
    return out


def original_speech(info, work, dialogue=None, film_id: str | None = None):
    """The original audio as routing hears it, and its decoded samples (for the expert).

    ``dialogue``: a clean original-dialogue stem (aligned to the first picture), preferred over
    the film's own mix when given. ``film_id``: the film's fingerprint when the caller has
    it (:func:`lipdub.pipeline.film_units.film_fingerprint`). Returns (None, None) for a film
    without audio.
    """
    from lipdub.pipeline.errors import AudioError
    from lipdub.pipeline.film_units import film_fingerprint
    from lipdub.pipeline.media.decode import audio_lead
    from lipdub.pipeline.stems import stem_analysis

    source, lead = (dialogue, 0.0) if dialogue else (info.path, audio_lead(info.path))
    try:  # a master is not hashed whole: the film's fingerprint names its audio
        decoded = stem_analysis("original_audio", source, work / "stems",
                                identity=None if dialogue
                                else film_id or film_fingerprint(info.path))
    except AudioError:
        return None, None
    return OriginalSpeech.from_envelope(decoded.envelope, lead), (decoded, lead)


@dataclass
class FilmRouting:
    """The routing of a film: the decisions, and where the original audio is heard.

    Attributes:
        decisions: every piece of every character's speech, in film order.
        heard: per film frame, True where the original audio is heard (None: it has none).
    """

    decisions: list[Decision]
    heard: np.ndarray | None


def route_film(info, scan: FilmScan, tracks: dict[int, list[TrackInfo]], stems: dict,
               overrides: list[Override], settings, work, *, expert_checkpoint: str | None = None,
               dialogue=None, film_id: str | None = None, log=None) -> FilmRouting:
    """The film flow's routing step: every character's speech, decided (plain function)."""
    speech, decoded = original_speech(info, work, dialogue, film_id)
    if speech is None and log:
        log.warning("the film has no audio: nobody can be heard speaking in it, so no piece is "
                    "synced without an override (give the original dialogue as "
                    "original_dialogue in the job)")
    expert = None
    if expert_checkpoint and decoded is not None:
        from lipdub.pipeline.expert_routing import expert_scorer
        from lipdub.pipeline.lse_segment import AudioSource, load_sync_model

        original, lead = decoded
        audio = AudioSource.from_samples(original.samples(), "expert", lead)
        sync = load_sync_model(None, expert_checkpoint, device="cpu")
        expert = expert_scorer(sync, info, scan, audio, settings.pads)
    rules = RoutingRules(settings.route_min_z, settings.route_margin_z, settings.expert_margin,
                         settings.expert_lone_min)
    segments = [seg for st in stems.values() for seg in st.segments]
    decisions = route(segments, scan, tracks, overrides, speech=speech, rules=rules,
                      expert=expert)
    heard = None
    if speech is not None:
        at = np.clip(((scan.times - scan.times[0]) * ENVELOPE_RATE).astype(int), 0,
                     len(speech.audible) - 1)
        heard = speech.audible[at]
    return FilmRouting(decisions, heard)
