"""Inference-time rewrite: fold each BatchNorm into the convolution before it.

In eval mode a BatchNorm is a per-channel affine map, so ``BN(conv(x))`` equals a convolution with
rescaled weights and a shifted bias. Folding removes a full pass over every activation tensor
(about a quarter of the generator's memory traffic on a CPU). Only for eval mode: the folded
model has no batch statistics to train with.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    # Output channels are dim 0 of a Conv2d weight but dim 1 of a ConvTranspose2d weight.
    shape = [1, -1, 1, 1] if isinstance(conv, nn.ConvTranspose2d) else [-1, 1, 1, 1]
    conv.weight.mul_(scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    conv.bias = nn.Parameter(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every (Conv2d | ConvTranspose2d, BatchNorm2d) pair inside a Sequential, in place.

    Returns:
        ``model`` in eval mode, with the folded BatchNorms replaced by ``nn.Identity``.
    """
    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq.named_children())
        for (_, first), (name, second) in zip(children, children[1:]):
            if isinstance(first, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(
                second, nn.BatchNorm2d
            ):
                _fold_pair(first, second)
                setattr(seq, name, nn.Identity())
    return model
