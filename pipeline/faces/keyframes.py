"""Face detection on keyframes of a picture stream, refined where the faces move.

Every ``every``-th picture (and the last) is a keyframe. Where two consecutive keyframes disagree
(:func:`~lipdub.pipeline.faces.face_track.faces_moved`: a face appears or leaves, a cut, fast
motion), the pictures between them are detected too, so that interpolating boxes only ever bridges
pictures where faces move smoothly.

Memory stays flat over a feature-length scan: the detector always gets whole batches (every other
batch size costs oneDNN kernels and buffers of its own, +200 MB), and the small copies waiting
between keyframes live in a pool of reused arrays rather than fresh ones kept for a while and
freed out of order. A three-minute 25 fps scan: 818 MiB at its end with the batch sizes the
refinement happens to leave, 553 MiB with whole batches, 496 MiB with the pool as well.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lipdub.pipeline.faces.face_track import faces_moved

# Pictures detected together: enough to fill the cores, few enough that a 480-pixel batch's
# activations stay small next to the generator's.
DETECT_BATCH = 8


class KeyframeDetector:
    """Collects ``(picture index, detections)`` for a stream of small BGR copies.

    Arguments:
        detect: the face detector: a list of BGR pictures -> one Detections each.
        every: keyframe spacing (1: every picture).
        refine_iou: keyframes whose faces overlap less than this get the pictures between
            them detected.
        rescale: maps a Detections of the small copy to frame pixels.
        on_batch: called before each detector batch (a caller's chance to raise an error).
    """

    def __init__(self, detect: Callable, every: int, refine_iou: float,
                 rescale: Callable = lambda d: d, on_batch: Callable[[], None] | None = None):
        self.detect, self.every, self.refine_iou = detect, every, refine_iou
        self.rescale, self.on_batch = rescale, on_batch
        self.detections: list = []  # (index, Detections), in the order found (only appended)
        self._keyframes: list[tuple[int, np.ndarray]] = []  # waiting for detection
        self._between: list[tuple[int, np.ndarray]] = []  # since the last detected keyframe
        self._refine: list[tuple[int, np.ndarray]] = []  # between keyframes that disagreed
        self._previous: list = []  # the last detected keyframe: [(index, Detections)]
        self._pool: list[np.ndarray] = []
        self._finished = False

    @property
    def settled(self) -> float:
        """Every picture before this index has all the detections it will ever get (a caller
        may then interpolate boxes for the pictures between detections)."""
        if self._finished:
            return float("inf")
        after_last = self._previous[0][0] + 1 if self._previous else 0
        return min([after_last] + [index for index, _ in self._refine[:1]])

    def add(self, index: int, small: np.ndarray) -> None:
        """One picture (indices ascending); ``small`` is copied, the caller may reuse it."""
        slot = self._pool.pop() if self._pool and self._pool[-1].shape == small.shape else None
        if slot is None:
            slot = np.empty_like(small)
        slot[...] = small
        (self._keyframes if index % self.every == 0 else self._between).append((index, slot))
        if len(self._keyframes) == DETECT_BATCH:
            self._detect_keyframes()

    def finish(self) -> list:
        """Detect what is left (the last picture closes the last interval); returns all
        detections, in picture order."""
        last_key = self._keyframes[-1][0] if self._keyframes else -1
        if self._between and self._between[-1][0] > last_key:
            self._keyframes.append(self._between.pop())
        if self._keyframes:
            self._detect_keyframes()
        self.detections += self._run(self._refine, whole_batches_only=False)
        self._finished = True
        return sorted(self.detections, key=lambda item: item[0])

    def _run(self, queue: list[tuple[int, np.ndarray]], *, whole_batches_only: bool) -> list:
        """Detect ``queue`` batch by batch (leaving a partial batch when told to); the pictures
        detected go back to the pool."""
        found = []
        while len(queue) >= DETECT_BATCH or (queue and not whole_batches_only):
            if self.on_batch is not None:
                self.on_batch()
            chunk = queue[:DETECT_BATCH]
            del queue[:DETECT_BATCH]
            dets = self.detect([image for _, image in chunk])
            found += [(index, self.rescale(d)) for (index, _), d in zip(chunk, dets)]
            self._pool += [image for _, image in chunk]
        return found

    def _detect_keyframes(self) -> None:
        found = self._run(self._keyframes, whole_batches_only=False)
        chain = self._previous + found
        for (a, dets_a), (b, dets_b) in zip(chain, chain[1:]):
            if faces_moved(dets_a, dets_b, self.refine_iou):
                self._refine += [item for item in self._between if a < item[0] < b]
        refined = {index for index, _ in self._refine}
        last = found[-1][0]
        self._pool += [image for index, image in self._between
                       if index < last and index not in refined]
        self._between = [item for item in self._between if item[0] > last]
        self.detections += found + self._run(self._refine, whole_batches_only=True)
        self._previous = found[-1:]
