"""The paper's networks at a chosen width, for training on a CPU (tests, synthetic benchmark).

Narrowing itself lives in :mod:`lipdub.models.narrow` (inference and QC load narrowed checkpoints
too); ``width_divisor=1`` is always the paper's architecture.
"""

from __future__ import annotations

from lipdub.models.discriminator import QualityDiscriminator
from lipdub.models.narrow import ALLOWED_DIVISORS, build_narrowed, narrowed
from lipdub.models.syncnet import SyncNetExpert
from lipdub.models.wav2lip import Wav2Lip

__all__ = ["ALLOWED_DIVISORS", "build_discriminator", "build_expert", "build_generator",
           "narrowed"]


def build_generator(width_divisor: int = 1) -> Wav2Lip:
    """The Wav2Lip generator, optionally narrowed (1 = the paper's)."""
    return build_narrowed(Wav2Lip, width_divisor)


def build_expert(width_divisor: int = 1) -> SyncNetExpert:
    """The SyncNet expert, optionally narrowed (1 = the paper's)."""
    return build_narrowed(SyncNetExpert, width_divisor)


def build_discriminator(width_divisor: int = 1) -> QualityDiscriminator:
    """The visual quality discriminator, optionally narrowed (1 = the paper's)."""
    return build_narrowed(QualityDiscriminator, width_divisor)
