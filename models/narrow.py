"""Narrowed variants of the Wav2Lip-family networks: the same layers at a fraction of the width.

A narrowed model is the paper's own class (``Wav2Lip``, ``SyncNetExpert``, ``QualityDiscriminator``)
with every hidden channel count divided by ``width_divisor``: the same layers, the same forward
code and the same state_dict keys, only smaller tensors. Input and output channels (the 6 face
channels, the 15 expert channels, the mel's 1, the 3 colours, the discriminator's 1) are kept.
``width_divisor=1`` is the model untouched, so the paper's architecture stays the single
definition of each network. Training uses them on a CPU; inference and QC load whichever width
a checkpoint holds (:func:`width_divisor_of`).
"""

from __future__ import annotations

import torch
from torch import nn

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


def build_narrowed(cls: type[nn.Module], width_divisor: int) -> nn.Module:
    """A fresh ``cls()`` with its hidden widths divided by ``width_divisor``."""
    if width_divisor == 1:
        return cls()
    # Lay out the full network on the meta device (no memory, no initialisation): every layer
    # that holds tensors is replaced by a real, narrower one anyway.
    with torch.device("meta"):
        model = cls()
    return narrowed(model, width_divisor)



def width_divisor_of(state: dict, cls: type[nn.Module]) -> int | None:
    """The width divisor of the ``cls`` network whose weights are ``state``.

    Compares the output width of the first convolution (the same key at every width) with the
    paper's; returns None when the key is missing or the ratio is not a whole number.
    """
    # Built on the meta device: shapes only, no memory, no initialisation.
    with torch.device("meta"):
        reference = {k: tuple(v.shape) for k, v in cls().state_dict().items()}
    for key, shape in reference.items():
        if key in state and len(shape) == 4 and state[key].dim() == 4:
            full, narrow = shape[0], state[key].shape[0]
            if narrow and full % narrow == 0:
                return full // narrow
            return None
    return None
