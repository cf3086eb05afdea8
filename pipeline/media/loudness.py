"""Integrated loudness (ITU-R BS.1770-4) of a whole film's mix, streamed.

pyloudnorm's meter takes the whole signal as one array: two hours of 48 kHz stereo would be
5.5 GB of float64. The measure itself needs far less: the K-weighting filters run block by
block (their state carried across), and the gating works on the mean square of each 100 ms
(a 400 ms gating block is four of them, the standard's 75 % overlap). The filters are
pyloudnorm's own K-weighting stages; the result equals ``pyloudnorm.Meter.integrated_loudness``
on the same samples (tests/test_qc.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.signal import lfilter, lfilter_zi

ABSOLUTE_GATE = -70.0  # LUFS
RELATIVE_GATE = -10.0  # LU below the loudness of the blocks above the absolute gate
CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs (LFE and beyond: not counted)


def k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(b, a) of the two K-weighting stages at ``rate`` (pyloudnorm's definitions)."""
    from pyloudnorm.iirfilter import IIRfilter

    stages = [IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, rate, "high_shelf"),
              IIRfilter(0.0, 0.5, 38.0, rate, "high_pass")]
    return [(np.asarray(s.b, np.float64), np.asarray(s.a, np.float64)) for s in stages]


def integrated_loudness(blocks: Iterable[np.ndarray], rate: int) -> tuple[float, float]:
    """(integrated loudness in LUFS, sample peak) of (channels, n) float blocks.

    Returns ``-inf`` loudness for silence or audio shorter than one 400 ms gating block.
    """
    stages = k_weighting(rate)
    hop = int(round(0.1 * rate))
    states: list[list[np.ndarray]] | None = None
    carry: np.ndarray | None = None
    energies: list[np.ndarray] = []  # per 100 ms: sum of squares per channel
    peak = 0.0
    for block in blocks:
        block = np.asarray(block, np.float64)
        if block.size:
            peak = max(peak, float(np.abs(block).max()))
        if states is None:  # filters start at rest, as pyloudnorm's do
            states = [[lfilter_zi(b, a) * 0.0 for b, a in stages] for _ in block]
        weighted = np.empty_like(block)
        for ch, samples in enumerate(block):
            for k, (b, a) in enumerate(stages):
                samples, states[ch][k] = lfilter(b, a, samples, zi=states[ch][k])
            weighted[ch] = samples
        carry = weighted if carry is None else np.concatenate([carry, weighted], axis=1)
        whole = carry.shape[1] // hop
        if whole:
            energies.append(np.square(carry[:, : whole * hop]).reshape(len(carry), whole, hop)
                            .sum(axis=2))
            carry = carry[:, whole * hop:]
    if not energies:
        return float("-inf"), peak
    sub = np.concatenate(energies, axis=1)  # (channels, hundred-ms pieces)
    if sub.shape[1] < 4:
        return float("-inf"), peak
    window = 4 * hop  # one gating block
    z = (sub[:, :-3] + sub[:, 1:-2] + sub[:, 2:-1] + sub[:, 3:]) / window
    gains = np.asarray([CHANNEL_GAINS[i] if i < len(CHANNEL_GAINS) else 0.0
                        for i in range(len(z))])[:, None]
    power = (gains * z).sum(axis=0)
    with np.errstate(divide="ignore"):
        block_loudness = -0.691 + 10 * np.log10(power)
    above = block_loudness >= ABSOLUTE_GATE
    if not above.any():
        return float("-inf"), peak
    relative = -0.691 + 10 * np.log10(power[above].mean()) + RELATIVE_GATE
    gated = (block_loudness > ABSOLUTE_GATE) & (block_loudness > relative)
    return float(-0.691 + 10 * np.log10(power[gated].mean())), peak
