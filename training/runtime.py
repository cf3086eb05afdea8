"""What both trainers set up the same way: device, mixed precision, channels-last, seeding."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch import nn

from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.generator import resolve_device


class Precision:
    """Mixed precision for one run.

    ``auto`` is bf16 on a GPU that supports it, else fp16 with a gradient scaler on a GPU, and
    full precision on a CPU. The models run under autocast; losses are computed in float32
    outside it (BCE is unsafe under autocast).

    Arguments:
        mode: auto | off | bf16 | fp16.
        device: the training device.
    """

    def __init__(self, mode: str, device: torch.device):
        if mode == "auto":
            if device.type == "cuda":
                mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                mode = "off"
        if mode == "fp16" and device.type != "cuda":
            raise LipdubError("amp fp16 needs a CUDA device; use amp: off (or bf16) on a CPU")
        self.mode = mode
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler: active for fp16 only (a pass-through otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.mode == "fp16")

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` running under autocast and returning float32 (itself when AMP is off)."""
        return _Autocasted(module, self) if self.enabled else module


class _Autocasted(nn.Module):
    """Runs the wrapped module under autocast and casts its tensor outputs back to float32."""

    def __init__(self, module: nn.Module, precision: Precision):
        super().__init__()
        self.module = module
        self.precision = precision

    def forward(self, *args):
        with self.precision.autocast():
            out = self.module(*args)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def setup_device(device: str, channels_last: bool | None,
                 threads: int | None = None) -> tuple[torch.device, bool]:
    """The training device and whether to use channels-last memory (default: on CUDA).

    ``threads`` caps torch's CPU threads: on a busy CPU, fewer threads than cores avoids the
    collapse of OpenMP's spinning barriers when other processes take the cores.
    """
    if threads:
        torch.set_num_threads(threads)
    resolved = resolve_device(device)
    if channels_last is None:
        channels_last = resolved.type == "cuda"
    if resolved.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return resolved, channels_last


def prepare_module(module: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    module = module.to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (model initialisation; data draws have their own seeds)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def frozen(module: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter (the expert guiding the generator)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module
