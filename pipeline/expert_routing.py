"""Which face speaks, judged by the expert SyncNet against the film's ORIGINAL audio.

The dub replaces what the original actor said where the original actor said it, so the face
whose lips are in sync with the original dialogue is the one the dubbed line belongs to. For a
piece of speech with several faces on screen, each candidate face is cut out of every picture
(the generator's crop: its track box with the job's pads), and the expert compares each 5-picture
window of its lower half with the original audio's mel at that time and at shifted times (the
offset search of :func:`lipdub.pipeline.lse_metric.sync_score`). A face's score is its confidence at
zero offset: the median distance over the offsets minus the distance at offset 0, in the
expert's own units. A speaker's lips match the audio best where it is, a listener's nowhere.

Only the ranking of faces within a piece is used (the scale differs between checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lipdub.pipeline.film_scan import FilmScan, TrackInfo
from lipdub.pipeline.generator import crop_face, padded_box
from lipdub.pipeline.lse_metric import VSHIFT, sync_score
from lipdub.pipeline.lse_segment import AudioSource, SyncModel, expert_features
from lipdub.pipeline.media.decode import VideoInfo
from lipdub.pipeline.media.frames import to_bgr

# Seconds of picture around a piece that are scored too: a short line still gets enough
# windows, and lips at rest before and after it belong to the evidence.
CONTEXT_SECONDS = 0.5
MIN_WINDOWS = 2 * VSHIFT + 1  # the offset search needs this many windows to mean anything


def zero_offset_confidence(video_feat, audio_feat) -> float | None:
    """Median distance over the searched offsets minus the distance at offset 0."""
    if len(video_feat) < MIN_WINDOWS:
        return None
    score = sync_score(video_feat, audio_feat)
    return float(np.median(score.mean_dists) - score.mean_dists[VSHIFT])


def score_faces(sync: SyncModel, info: VideoInfo, scan: FilmScan, candidates: list[TrackInfo],
                start: int, end: int, audio: AudioSource,
                pads: tuple[int, int, int, int]) -> dict[int, float | None]:
    """Expert confidence of each candidate track over frames [start, end) (plus context).

    Arguments:
        sync: the loaded expert (``kind == "expert"``).
        info, scan: the film.
        candidates: the faces on screen during the piece.
        audio: the film's own audio, as the expert hears it.
        pads: the job's crop pads (top, bottom, left, right), as lip sync crops.

    Returns:
        ``{track_id: confidence}``; None for a face seen in too few pictures to judge.
    """
    context = int(round(CONTEXT_SECONDS / scan.frame_duration))
    shot_first = min(t.first for t in candidates)
    shot_last = max(t.last for t in candidates)
    lo, hi = max(start - context, shot_first), min(end + context, shot_last + 1)
    crops: dict[int, list[np.ndarray]] = {t.track_id: [] for t in candidates}
    times: dict[int, list[float]] = {t.track_id: [] for t in candidates}
    end_time = float(scan.times[hi]) if hi < len(scan.times) else None
    frames = info.frames(start_time=float(scan.times[lo]), end_time=end_time)
    for index, frame in enumerate(frames, start=lo):
        if index >= hi:
            break
        bgr = None
        for track in candidates:
            box = track.box_at(index)
            box = None if box is None else padded_box(box, pads, info.width, info.height)
            if box is None:
                continue
            bgr = to_bgr(frame) if bgr is None else bgr
            crops[track.track_id].append(crop_face(bgr, box))
            times[track.track_id].append(float(scan.times[index]))
    t0 = float(scan.times[0])
    scores: dict[int, float | None] = {}
    for track in candidates:
        # The longest run of consecutive pictures: windows must not jump over a gap.
        run = _longest_run(times[track.track_id], scan.frame_duration)
        if len(run) < MIN_WINDOWS + 4:
            scores[track.track_id] = None
            continue
        picked = [crops[track.track_id][i] for i in run]
        video_feat, audio_feat = expert_features(
            sync.model, picked, np.asarray([times[track.track_id][i] for i in run]), audio, t0)
        scores[track.track_id] = (None if video_feat is None
                                  else zero_offset_confidence(video_feat, audio_feat))
    return scores


def _longest_run(times: list[float], step: float) -> list[int]:
    if not times:
        return []
    gaps = np.flatnonzero(np.diff(times) > 1.5 * step) + 1
    bounds = np.r_[0, gaps, len(times)]
    k = int(np.argmax(np.diff(bounds)))
    return list(range(int(bounds[k]), int(bounds[k + 1])))


def expert_scorer(sync: SyncModel, info: VideoInfo, scan: FilmScan, audio: AudioSource,
                  pads: tuple[int, int, int, int]) -> Callable:
    """``(candidates, start, end) -> {track_id: confidence}`` for
    :func:`lipdub.pipeline.routing.route`."""

    def score(candidates: list[TrackInfo], start: int, end: int) -> dict[int, float | None]:
        return score_faces(sync, info, scan, candidates, start, end, audio, pads)

    return score
