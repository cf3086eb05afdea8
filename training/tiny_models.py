"""Narrow variants of the paper's networks, for training on a CPU (tests, synthetic benchmark).

A narrowed model is the paper's own class (``Wav2Lip``, ``SyncNetExpert``, ``QualityDiscriminator``)
with every hidden channel count divided by ``width_divisor``: the same layers, the same forward
code and the same state_dict keys, only smaller tensors. Input and output channels (the 6 face
channels, the 15 expert channels, the mel's 1, the 3 colours, the discriminator's 1) are kept.
``width_divisor=1`` returns the model untouched, so the default is always the paper's
architecture, and ``models/`` stays the single definition of each network.
"""

from __future__ import annotations

import torch
from torch import nn

from models.discriminator import QualityDiscriminator
from models.syncnet import SyncNetExpert
from models.wav2lip import Wav2Lip

# Every hidden width of the three networks is a multiple of 16, and no input or output width is.
_MIN_HIDDEN = 16
ALLOWED_DIVISORS = (1, 2, 4, 8, 16)


def _narrow_width(channels: int, divisor: int) -> int:
    return channels // divisor if channels >= _MIN_HIDDEN else channels


def narrowed(model: nn.Module, width_divisor: int) -> nn.Module:
    """Divide the hidden widths of ``model`` by ``width_divisor``, in place.

    Every ``Conv2d``, ``ConvTranspose2d`` and ``BatchNorm2d`` is replaced by a freshly initialised
    one of the narrower width (same kernel, stride, padding, bias); nothing else changes.

    Arguments:
        model: one of the Wav2Lip-family networks, freshly built (it may be on the meta device:
            every tensor it holds is replaced).
        width_divisor: 1 (unchanged), 2, 4, 8 or 16.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: an unsupported divisor.
    """
    if width_divisor not in ALLOWED_DIVISORS:
        raise ValueError(f"width_divisor must be one of {ALLOWED_DIVISORS}, got {width_divisor}")
    if width_divisor == 1:
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _narrow_layer(child, width_divisor)
            if replacement is not None:
                setattr(parent, name, replacement)
    left = [k for k, v in model.state_dict().items() if v.is_meta]
    if left:
        raise ValueError(f"{type(model).__name__}: layers that cannot be narrowed: {left[:3]}")
    return model


def _narrow_layer(layer: nn.Module, d: int) -> nn.Module | None:
    if isinstance(layer, nn.ConvTranspose2d):
        return nn.ConvTranspose2d(
            _narrow_width(layer.in_channels, d), _narrow_width(layer.out_channels, d),
            layer.kernel_size, layer.stride, layer.padding, layer.output_padding,
            bias=layer.bias is not None,
        )
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(
            _narrow_width(layer.in_channels, d), _narrow_width(layer.out_channels, d),
            layer.kernel_size, layer.stride, layer.padding, bias=layer.bias is not None,
        )
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            _narrow_width(layer.num_features, d), eps=layer.eps, momentum=layer.momentum
        )
    return None


def _build(cls, width_divisor: int) -> nn.Module:
    if width_divisor == 1:
        return cls()
    # Lay out the full network on the meta device (no memory, no initialisation): every layer
    # that holds tensors is replaced by a real, narrower one anyway.
    with torch.device("meta"):
        model = cls()
    return narrowed(model, width_divisor)


def build_generator(width_divisor: int = 1) -> Wav2Lip:
    """The Wav2Lip generator, optionally narrowed (1 = the paper's)."""
    return _build(Wav2Lip, width_divisor)


def build_expert(width_divisor: int = 1) -> SyncNetExpert:
    """The SyncNet expert, optionally narrowed (1 = the paper's)."""
    return _build(SyncNetExpert, width_divisor)


def build_discriminator(width_divisor: int = 1) -> QualityDiscriminator:
    """The visual quality discriminator, optionally narrowed (1 = the paper's)."""
    return _build(QualityDiscriminator, width_divisor)
