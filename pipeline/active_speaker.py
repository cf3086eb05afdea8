"""Who speaks on screen, judged against the film's ORIGINAL audio, without learned weights.

A dubbed stem is another language recorded later: it says *when* a character speaks, never how
the lips move. The original dialogue is what the on-screen speaker's lips follow. So for a face
and a stretch of the film, the evidence that this face speaks there is how well its mouth motion
(:mod:`lipdub.pipeline.faces.mouth_activity`, one value per keyframe) follows the original's
loudness:

- ``sync``: the Pearson correlation of the two, lightly smoothed, at the best of a few small lags
  (lips lead the sound they make by 0 to 200 ms);
- ``z``: that correlation measured against the same face with the original audio *shifted* by
  0.6 to 4 seconds (where it cannot be in sync): how many standard deviations above those it
  stands. Short windows make chance correlations of a few tenths common (two unrelated speech
  envelopes over 5 s reach 0.35), so only ``z`` is compared with thresholds;
- ``activity``: the median mouth motion (a still mouth, a photo, a listener who nods: near 0).

These signals are weak on short pieces and on faces that move their lips while someone else is
heard; the router (:mod:`lipdub.pipeline.routing`) acts only on clear evidence and leaves the rest
alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipdub.pipeline.stems import ENVELOPE_RATE

LAGS = np.arange(0.0, 0.21, 0.04)  # seconds by which the sound may follow the lips
NULL_SHIFTS = np.r_[-np.arange(60, 401, 17), np.arange(60, 401, 17)]  # 10 ms steps
SMOOTH = 3  # keyframes
MIN_KEYFRAMES = 12  # fewer than this (about a second at every 2nd frame): not judged
SILENCE_DB = -50.0


@dataclass(frozen=True)
class OriginalSpeech:
    """The original audio's loudness per 10 ms, index 0 at the film's first picture.

    Attributes:
        db: smoothed level in dBFS.
        audible: True where the original is louder than ``SILENCE_DB`` and its own quiet floor.
    """

    db: np.ndarray
    audible: np.ndarray

    @classmethod
    def from_envelope(cls, envelope: np.ndarray, lead: float) -> OriginalSpeech:
        """``envelope``: RMS per 10 ms from the audio's first sample; ``lead``: seconds of audio
        before the first picture (negative when the picture starts first)."""
        skip = int(round(lead * ENVELOPE_RATE))
        env = envelope[skip:] if skip >= 0 else np.r_[np.zeros(-skip, envelope.dtype), envelope]
        db = 20 * np.log10(np.maximum(env.astype(np.float64), 1e-5))
        db = np.convolve(db, np.ones(3) / 3, "same")
        floor = max(SILENCE_DB, float(np.percentile(db, 95)) - 35.0) if len(db) else SILENCE_DB
        return cls(db, db > floor)

    def audible_share(self, start: float, end: float) -> float:
        """Share of ``[start, end)`` (seconds from the first picture) where the original is
        heard."""
        a, b = int(start * ENVELOPE_RATE), int(end * ENVELOPE_RATE)
        part = self.audible[max(a, 0) : max(b, 0)]
        return float(part.mean()) if len(part) else 0.0

    def levels(self, seconds: np.ndarray, lags: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """(shifts, lags, len(seconds)) levels at ``seconds + lag``, moved by ``shift`` 10 ms
        steps (wrapping around the film's ends)."""
        idx = ((seconds[None, :] + lags[:, None]) * ENVELOPE_RATE).astype(int)
        idx = np.clip(idx, 0, len(self.db) - 1)
        return self.db[(idx[None] + shifts[:, None, None]) % len(self.db)]


@dataclass(frozen=True)
class FaceEvidence:
    """What the original audio says of one face over some stretch of a shot."""

    track_id: int
    keyframes: int
    activity: float
    sync: float | None
    z: float | None

    def describe(self) -> str:
        if self.z is None:
            return f"face {self.track_id}: {self.keyframes} keyframes, too few to judge"
        return (f"face {self.track_id}: z {self.z:.1f}, sync {self.sync:.2f}, "
                f"mouth motion {self.activity:.2f}")


def _correlations(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` with each row (0 where either is constant)."""
    x = x - x.mean()
    rows = rows - rows.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum() * (rows * rows).sum(axis=1))
    return np.where(denominator > 1e-12, rows @ x / np.maximum(denominator, 1e-12), 0.0)


def face_evidence(track_id: int, motion_frames: np.ndarray, motion: np.ndarray,
                  seconds: np.ndarray, ranges: list[tuple[int, int]],
                  speech: OriginalSpeech) -> FaceEvidence:
    """The evidence that a face speaks in the original over frame ``ranges``.

    Arguments:
        track_id: the face.
        motion_frames, motion: its mouth motion per keyframe (film frame indices).
        seconds: every film frame's time from the first picture.
        ranges: [start, end) film frame ranges judged together (a character's pieces of a shot).
        speech: the original audio.
    """
    keep = np.zeros(len(motion_frames), bool)
    for start, end in ranges:
        keep |= (motion_frames >= start) & (motion_frames < end)
    frames, values = motion_frames[keep], motion[keep]
    if len(frames) < MIN_KEYFRAMES:
        return FaceEvidence(track_id, len(frames), float(np.median(values)) if len(values) else 0.0,
                            None, None)
    kernel = np.ones(SMOOTH) / SMOOTH
    m = np.convolve(values, kernel, "same")
    t = seconds[frames]
    # Every (shift, lag) at once: rows of the original's level, correlated with the mouth.
    shifts = np.r_[0, NULL_SHIFTS]
    levels = speech.levels(t, LAGS, shifts).reshape(len(shifts) * len(LAGS), len(t))
    correlation = _correlations(m, levels).reshape(len(shifts), len(LAGS)).max(axis=1)
    sync, null = float(correlation[0]), correlation[1:]
    z = (sync - null.mean()) / max(null.std(), 1e-3)
    return FaceEvidence(track_id, len(frames), float(np.median(values)), sync, float(z))
