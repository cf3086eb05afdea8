"""Training checkpoints in the original Wav2Lip layout, written atomically, resumed exactly.

A checkpoint is the dict the reference training scripts save (spec §2.8)::

    {"state_dict": model weights, "optimizer": Adam state, "global_step": int, "global_epoch": int}

plus one extra key, ``"lipdub"``, that the original loaders ignore: the run's arguments, the
network width, the trainer's own state (e.g. the sync-loss weight after its switch) and the RNG
states, so that a resumed run continues bit for bit. Everything in it is tensors and plain
containers, so ``torch.load(weights_only=True)`` reads it, and the original code, which reads
``checkpoint["state_dict"]`` (stripping ``module.``) and ``checkpoint["optimizer"]``, loads it
too. File names are the original's: ``checkpoint_step{step:09d}.pth`` and, for the GAN's
discriminator, ``disc_checkpoint_step{step:09d}.pth``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from lipdub.models.narrow import width_divisor_of
from lipdub.models.weights import (
    FAMILIES,
    WeightsKeyError,
    detect_family,
    read_checkpoint,
    read_state_dict,
)
from lipdub.pipeline.partial_files import remove_stale_partials, writing
from lipdub.pipeline.weights_registry import resolve_weights_file

GENERATOR_PREFIX = "checkpoint_step"
DISC_PREFIX = "disc_checkpoint_step"
_STEP_RE = re.compile(r"^(?P<prefix>[a-z_]+?)(?P<step>\d{9})\.pth$")


def checkpoint_path(out_dir: str | Path, step: int, prefix: str = GENERATOR_PREFIX) -> Path:
    """``out_dir/checkpoint_step000003000.pth`` (or with the discriminator's prefix)."""
    return Path(out_dir) / f"{prefix}{step:09d}.pth"


def latest_checkpoint(out_dir: str | Path, prefix: str = GENERATOR_PREFIX) -> Path | None:
    """The checkpoint with the highest step in ``out_dir``, or None."""
    best, best_step = None, -1
    folder = Path(out_dir)
    if not folder.is_dir():
        return None
    for path in folder.iterdir():
        match = _STEP_RE.match(path.name)
        if match and match["prefix"] == prefix and int(match["step"]) > best_step:
            best, best_step = path, int(match["step"])
    return best


def _cpu(obj):
    """A copy of nested containers with every tensor on the CPU, contiguous (portable files)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu").contiguous()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def rng_state() -> dict:
    """torch's CPU (and CUDA) RNG states, as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict | None) -> None:
    """Put back what :func:`rng_state` saved (missing parts are left alone)."""
    if not state:
        return
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    global_step: int, global_epoch: int, extra: dict | None = None) -> Path:
    """Write a checkpoint in the original layout, atomically and durably (temporary name,
    flushed to the disk, then renamed: :func:`lipdub.pipeline.partial_files.writing`).

    A crash while writing leaves the previous checkpoint and at most a hidden partial file (the
    next save removes it), never a truncated ``.pth``; a power cut after the return cannot take
    the new one back.

    Arguments:
        path: target file.
        model, optimizer: what to save (``optimizer`` None writes ``"optimizer": None``).
        global_step, global_epoch: the counters the reference saves.
        extra: lipdub's own state, saved under ``"lipdub"`` (plain values and tensors only).

    Returns:
        ``path``.
    """
    path = Path(path)
    payload = {
        "state_dict": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()) if optimizer is not None else None,
        "global_step": int(global_step),
        "global_epoch": int(global_epoch),
    }
    if extra is not None:
        payload["lipdub"] = _cpu(extra)
    remove_stale_partials(path.parent)  # a killed run's partial checkpoint is hundreds of MB
    # Durable: a checkpoint is the one thing a crash of a days-long run must not lose.
    with writing(path, durable=True) as tmp:
        torch.save(payload, tmp)
    return path


def load_model_state(model: nn.Module, state: dict, path: str | Path, what: str) -> nn.Module:
    """Load ``state`` strictly into ``model``, with an error that says what does not fit.

    Raises:
        WeightsKeyError: missing or unexpected keys, or shapes that differ (typically a
            checkpoint trained with another ``width_divisor``).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{path}: does not fit the {what} ({type(model).__name__})"]
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]}")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shapes differ, e.g. {k}: file {tuple(state[k].shape)} vs "
                f"model {tuple(expected[k].shape)}"
            )
            divisor = width_divisor_of(state, type(model))
            if divisor is not None:
                parts.append(f"the file holds a width_divisor {divisor} network: set "
                             f"width_divisor to {divisor}")
        raise WeightsKeyError("; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


def read_weights_for(builder, path: str | Path, what: str, width_divisor: int | None = None):
    """Read any weights file and build the matching network at the width the file has.

    Arguments:
        builder: ``build_expert`` / ``build_generator`` / ``build_discriminator`` (width -> model).
        path: checkpoint (any layout ``lipdub.models.weights.read_state_dict`` reads) or a name in
        the
            weights registry (``lipsync_expert``, ``wav2lip_gan``...).
        what: its role, for error messages ("expert", ...).
        width_divisor: the width the run expects, or None to take the file's.

    Returns:
        (model with the weights loaded, its width divisor).

    Raises:
        lipdub.models.weights.WeightsError: unreadable file, another model family, keys that fit no
            width of this network, or another width than ``width_divisor``.
        lipdub.pipeline.errors.RegistryError: neither a file nor a downloaded registry name.
    """
    state = read_state_dict(resolve_weights_file(path))
    with torch.device("meta"):
        reference = builder(1)
    file_family, family = detect_family(state), detect_family(reference.state_dict())
    if file_family and family and file_family != family:
        raise WeightsKeyError(
            f"{path}: holds {FAMILIES[file_family][0]}, not {FAMILIES[family][0]} as the "
            f"{what} needs; pass the {what}'s checkpoint"
        )
    divisor = width_divisor_of(state, type(reference)) or 1
    if width_divisor is not None and divisor != width_divisor:
        raise WeightsKeyError(
            f"{path}: holds a width_divisor {divisor} {what} but the run is configured with "
            f"width_divisor {width_divisor}; set width_divisor: {divisor}"
        )
    try:
        model = builder(divisor)
    except ValueError as exc:
        raise WeightsKeyError(f"{path}: the {what} has an unsupported width ({exc})") from exc
    return load_model_state(model, state, path, what), divisor


def load_training_checkpoint(path: str | Path, model: nn.Module,
                             optimizer: torch.optim.Optimizer | None, what: str) -> dict:
    """Restore ``model`` (and ``optimizer``) from a checkpoint to resume a run.

    Arguments:
        path: a checkpoint in the original layout (ours or the reference scripts').
        model: the network, built at the run's width.
        optimizer: its optimizer, or None to skip the optimizer state.
        what: the network's role, for error messages.

    Returns:
        The checkpoint dict (``global_step``, ``global_epoch``, ``lipdub``...).

    Raises:
        lipdub.models.weights.WeightsFormatError: not a training checkpoint (weights only,
        unreadable). lipdub.models.weights.WeightsKeyError: the weights or optimizer state do not
        fit.
    """
    checkpoint = read_checkpoint(path)
    load_model_state(model, checkpoint["state_dict"], path, what)
    if optimizer is not None:
        state = checkpoint.get("optimizer")
        if state is None:
            raise WeightsKeyError(
                f"{path}: has no optimizer state, so the run cannot resume exactly; start a new "
                "run from it with init instead"
            )
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError) as exc:
            raise WeightsKeyError(f"{path}: its optimizer state does not fit ({exc})") from exc
    checkpoint["global_step"] = int(checkpoint.get("global_step") or 0)
    checkpoint["global_epoch"] = int(checkpoint.get("global_epoch") or 0)
    return checkpoint
