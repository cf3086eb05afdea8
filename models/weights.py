"""Weights I/O: read official and our own checkpoints safely, check them, load them strictly.

Every reader here is weights-only: pickled checkpoints go through
``torch.load(weights_only=True)``, TorchScript archives through ``torch.jit.load`` (whose unpickler
only rebuilds TorchScript types) and safetensors through ``safetensors.torch.load_file``. A file
that pickles arbitrary Python objects is refused, never executed.

Four on-disk formats are recognised by their first bytes (``sniff_format``):

- ``torch-zip``: ``torch.save`` since PyTorch 1.6 (a zip archive with ``data.pkl``);
- ``torchscript``: ``torch.jit.save`` (a zip archive with ``code/`` and ``constants.pkl``), e.g. the
  current official ``Wav2Lip-SD-GAN.pt`` / ``Wav2Lip-SD-NOGAN.pt``;
- ``torch-legacy``: the pre-1.6 pickle stream that starts with PyTorch's magic number, e.g. the
  biubug6 RetinaFace MobileNet-0.25 file and (probably) the 2020 Wav2Lip ``.pth`` files;
- ``safetensors``.

Every error message names the file and says how to fix the problem. The exceptions derive from
``WeightsError``, a :class:`lipdub.models.errors.UserError` as
``lipdub.pipeline.errors.LipdubError`` is (``models`` must not import ``pipeline``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from lipdub.models.errors import UserError

__all__ = [
    "FAMILIES",
    "WeightsChecksumError",
    "WeightsError",
    "WeightsFormatError",
    "WeightsKeyError",
    "detect_family",
    "load_weights",
    "looks_like_html",
    "read_checkpoint",
    "read_state_dict",
    "sha256_file",
    "sniff_format",
    "strip_module_prefix",
    "verify_sha256",
]

FORMATS = ("torch-zip", "torchscript", "torch-legacy", "safetensors")

# Pickle protocol 2 header followed by PyTorch's legacy magic number 0x1950a86a20f9469cfc6c as a
# LONG1 opcode; every file written with _use_new_zipfile_serialization=False starts with it.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGIC = b"PK\x03\x04"
# A safetensors header is JSON; anything above this is a misread length, not a real header.
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_LIST_LIMIT = 10

# family -> (what the file holds, which official files carry it), for "wrong model family" errors.
FAMILIES: dict[str, tuple[str, str]] = {
    "wav2lip": ("a Wav2Lip generator", "wav2lip / wav2lip_gan / Wav2Lip-SD-*"),
    "syncnet_expert": ("a SyncNet expert", "lipsync_expert"),
    "quality_disc": ("a visual quality discriminator", "visual_quality_disc"),
    "syncnet_python": ("a syncnet_python SyncNet", "syncnet_v2"),
    "retinaface": ("a RetinaFace face detector", "retinaface_mobilenet0.25"),
}

# Fallback when a model's own keys do not reveal its family (e.g. a model built without one part).
_CLASS_FAMILY = {
    "Wav2Lip": "wav2lip",
    "SyncNetExpert": "syncnet_expert",
    "QualityDiscriminator": "quality_disc",
    "SyncNetLSE": "syncnet_python",
    "RetinaFace": "retinaface",
}

_DOWNLOAD_FIX = (
    "download it again from the official link (`lipdub weights list` shows them) and check it "
    "with `lipdub weights verify`"
)


class WeightsError(UserError):
    """Base class for every weights problem a user can act on; the message names the file."""


class WeightsFormatError(WeightsError):
    """The file is not a readable weights file: an HTML page, truncated, unsafe or unknown."""


class WeightsKeyError(WeightsError):
    """The file's keys or shapes do not match the model (strict load), or it is another model."""


class WeightsChecksumError(WeightsError):
    """The file's sha256 differs from the expected one."""


# --- format detection -------------------------------------------------------------------------


def sniff_format(path: str | os.PathLike) -> str:
    """Tell the on-disk format of a weights file from its first bytes.

    Arguments:
        path: the file to inspect.

    Returns:
        One of ``"torch-zip"``, ``"torchscript"``, ``"torch-legacy"``, ``"safetensors"``.

    Raises:
        WeightsError: the file does not exist.
        WeightsFormatError: the file is empty, an HTML page or a Git LFS pointer, a truncated zip
            archive, or of an unknown format.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; check the path or run `lipdub weights download`")
    size = path.stat().st_size
    if size == 0:
        raise WeightsFormatError(f"{path} is empty (0 bytes); {_DOWNLOAD_FIX}")
    with path.open("rb") as f:
        head = f.read(512)

    if head.startswith(_ZIP_MAGIC):
        return _sniff_zip(path, size)
    if head.startswith(_LEGACY_MAGIC):
        return "torch-legacy"
    if _looks_like_safetensors(head):
        return "safetensors"
    raise _not_weights_error(path, head, size)


def _sniff_zip(path: Path, size: int) -> str:
    # Both torch.save (>= 1.6) and torch.jit.save write zip archives; the TorchScript one carries
    # the module's code. The central directory sits at the end, so a cut file fails to open here.
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise WeightsFormatError(
            f"{path} is truncated or corrupt ({size} bytes; its zip directory is unreadable: "
            f"{exc}); {_DOWNLOAD_FIX}"
        ) from exc
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    shown = ", ".join(names[:5]) or "nothing"
    raise WeightsFormatError(
        f"{path} is a zip archive but not a PyTorch file (it holds {shown}); "
        "unpack it and pass the .pth/.pt file inside"
    )


def looks_like_html(head: bytes) -> bool:
    """Tell whether the first bytes of a file are a web page rather than weights.

    Arguments:
        head: the first few hundred bytes of the file (or of a download).

    Returns:
        True for ``<!DOCTYPE html>``, ``<html>`` or an XML error document; False for anything that
        starts like one of the four weights formats (a safetensors header length may start with
        the byte ``<``).
    """
    if head.startswith((_ZIP_MAGIC, _LEGACY_MAGIC)) or _looks_like_safetensors(head):
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _looks_like_safetensors(head: bytes) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON object.
    if len(head) < 10:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


def _not_weights_error(path: Path, head: bytes, size: int) -> WeightsFormatError:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if looks_like_html(head):
        return WeightsFormatError(
            f"{path} is an HTML page ({size} bytes), not a weights file: the share link has "
            "probably expired or answered with a sign-in / confirmation page instead of the file; "
            f"{_DOWNLOAD_FIX} (open the link in a browser if a script only gets the page)"
        )
    if text.startswith(b"version https://git-lfs"):
        return WeightsFormatError(
            f"{path} is a Git LFS pointer ({size} bytes), not the weights; fetch the real file "
            "with `git lfs pull` or from the repository's media download link"
        )
    if head.startswith(b"\x80") and len(head) > 1 and head[1] in (2, 3, 4, 5):
        return WeightsFormatError(
            f"{path} is a plain Python pickle, not a PyTorch checkpoint; it is not read because "
            "unpickling can run arbitrary code: re-save the tensors with torch.save(state_dict) "
            "or safetensors"
        )
    snippet = ""
    if head[:32].isascii() and head[:32].strip():
        snippet = f" (it starts with text {head[:32].decode('ascii', 'replace')!r})"
    return WeightsFormatError(
        f"{path} is not a weights file of a known format ({size} bytes){snippet}; expected a "
        "PyTorch .pth/.pt (zip or legacy), a TorchScript .pt or a .safetensors file; "
        f"{_DOWNLOAD_FIX}"
    )


# --- reading ----------------------------------------------------------------------------------


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove every ``"module."`` substring from the keys, as the original Wav2Lip loader does.

    The released checkpoints were saved from ``nn.DataParallel`` wrappers. The original code uses
    ``str.replace`` (every occurrence, not only a leading one), so this does the same to accept
    exactly the files it accepts.

    Arguments:
        state_dict: mapping of key to tensor.

    Returns:
        A new dict with the cleaned keys, in the same order.
    """
    return {key.replace("module.", ""): value for key, value in state_dict.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the tensors of a weights file in any of the four formats, as a CPU state_dict.

    Training checkpoints (``{"state_dict": ..., "optimizer": ..., ...}``) are unwrapped, TorchScript
    modules give their ``state_dict()``, and every ``"module."`` substring is removed from the keys.

    Arguments:
        path: the weights file.

    Returns:
        Key to CPU tensor, in file order.

    Raises:
        WeightsFormatError: not a weights file (HTML page, truncated, unknown format), a pickle of
            arbitrary Python objects (refused), or a dict that holds no state_dict.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        state = _load_safetensors(path)
    elif fmt == "torchscript":
        state = _load_torchscript(path)
    else:
        state = _unwrap_state_dict(path, _torch_load(path))
    return strip_module_prefix(state)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint (for resuming), weights-only.

    The layout is the Wav2Lip training scripts' one: ``state_dict``, ``optimizer`` (the optimizer's
    state_dict), ``global_step`` and ``global_epoch``. Other keys are kept as they are.

    Arguments:
        path: a ``.pth`` written by torch.save (zip or legacy format).

    Returns:
        The checkpoint dict, with ``state_dict`` keys cleaned of ``"module."`` and ``optimizer``,
        ``global_step``, ``global_epoch`` present (``None`` where the file lacks them).

    Raises:
        WeightsFormatError: unreadable or unsafe file, or a file that holds only weights (a bare
            state_dict, TorchScript or safetensors) and so cannot resume a run.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt in ("torchscript", "safetensors"):
        raise WeightsFormatError(
            f"{path} is a {fmt} file: it holds weights only, no optimizer state or step counter, "
            "so it cannot resume a run; use it to initialise a new run instead"
        )
    obj = _torch_load(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise WeightsFormatError(
            f"{path} is a bare state_dict, not a training checkpoint (no 'state_dict' / "
            "'optimizer' / 'global_step'); it cannot resume a run: use it to initialise a new run"
        )
    checkpoint = dict(obj)
    checkpoint["state_dict"] = strip_module_prefix(_unwrap_state_dict(path, obj))
    for key in ("optimizer", "global_step", "global_epoch"):
        checkpoint.setdefault(key, None)
    return checkpoint


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise WeightsFormatError(
                f"{path} pickles Python objects other than tensors and plain containers (for "
                "example a whole model saved with torch.save(model)); it is refused because "
                "unpickling them could run arbitrary code. Re-save it from trusted code with "
                "torch.save(model.state_dict(), ...)"
            ) from exc
        raise _truncated(path, exc) from exc
    except Exception as exc:
        # A cut or damaged stream fails in many ways (EOFError, IndexError or struct.error in the
        # legacy storage table, RuntimeError from the zip reader, ...); all mean the same to a user.
        raise _truncated(path, exc) from exc


def _truncated(path: Path, exc: BaseException) -> WeightsFormatError:
    size = path.stat().st_size
    return WeightsFormatError(
        f"{path} is truncated or corrupt ({size} bytes; reading it failed with "
        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
        f"{_DOWNLOAD_FIX}"
    )


def _unwrap_state_dict(path: Path, obj: object) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsFormatError(
            f"{path} holds a {type(obj).__name__}, not a state_dict or training checkpoint"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsFormatError(
            f"{path} holds a dict that is not a state_dict: {len(bad)} entries are not tensors "
            f"({', '.join(bad[:_LIST_LIMIT])}) and there is no 'state_dict' entry"
        )
    return dict(obj)


def _load_torchscript(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated in recent PyTorch, but the official Wav2Lip-SD-*.pt files are
            # TorchScript archives; we only take their state_dict, never run their code.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a cut archive fails inside the TorchScript reader in several ways
        raise _truncated(path, exc) from exc
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError for a cut file
        raise _truncated(path, exc) from exc


# --- checksums --------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Compute the sha256 of a file without reading it into memory at once.

    Arguments:
        path: the file.
        chunk: bytes read per step.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> str:
    """Check a file's sha256 against the expected digest.

    Arguments:
        path: the file.
        expected: hex digest (case-insensitive).

    Returns:
        The actual digest (equal to ``expected``).

    Raises:
        WeightsChecksumError: the digests differ.
    """
    actual = sha256_file(path)
    if actual != expected.strip().lower():
        size = Path(path).stat().st_size
        raise WeightsChecksumError(
            f"{path} ({Path(path).name}, {size} bytes) has sha256 {actual}, expected {expected}: "
            "the file is corrupt, incomplete or a different release; delete it and download it "
            "again (`lipdub weights download NAME`)"
        )
    return actual


# --- families and strict loading --------------------------------------------------------------


def detect_family(keys: Iterable[str]) -> str | None:
    """Tell which model family a set of state_dict keys belongs to, from its signature keys.

    Arguments:
        keys: state_dict keys ("module." already removed or not).

    Returns:
        A key of ``FAMILIES`` (``"wav2lip"``, ``"syncnet_expert"``, ``"quality_disc"``,
        ``"syncnet_python"``, ``"retinaface"``), or ``None`` when no signature matches.
    """
    keys = [k.replace("module.", "") for k in keys]
    top = {k.split(".", 1)[0] for k in keys}
    # Order matters: the generator also has audio_encoder, but its face side is face_encoder_blocks.
    if "face_decoder_blocks" in top:
        return "wav2lip"
    if "binary_pred" in top:
        return "quality_disc"
    if {"face_encoder", "audio_encoder"} <= top:
        return "syncnet_expert"
    if "netcnnaud" in top:
        return "syncnet_python"
    if any(k.startswith("body.stage1.") for k in keys):
        return "retinaface"
    return None


def load_weights(
    model: torch.nn.Module, path: str | os.PathLike, *, sha256: str | None = None
) -> torch.nn.Module:
    """Read a weights file and load it strictly into ``model``.

    Arguments:
        model: the module to fill (its keys and shapes must match the file exactly).
        path: the weights file, in any format ``read_state_dict`` reads.
        sha256: when given, the file must have this digest (checked before reading).

    Returns:
        ``model`` itself, with the weights loaded.

    Raises:
        WeightsChecksumError: ``sha256`` given and different.
        WeightsFormatError: unreadable, unsafe or unknown file.
        WeightsKeyError: the file holds another model family, or keys / shapes differ.
    """
    path = Path(path)
    if sha256 is not None:
        verify_sha256(path, sha256)
    state = read_state_dict(path)
    expected = model.state_dict()
    model_name = type(model).__name__
    model_family = detect_family(expected) or _CLASS_FAMILY.get(model_name)
    file_family = detect_family(state)
    if model_family and file_family and model_family != file_family:
        raise WeightsKeyError(_family_message(path, file_family, model_family, model_name))
    problems = _compare(expected, state)
    if problems:
        raise WeightsKeyError(_key_message(path, model_name, file_family, model_family, *problems))
    model.load_state_dict(state, strict=True)
    return model


def _family_message(path: Path, file_family: str, model_family: str, model_name: str) -> str:
    held, held_files = FAMILIES[file_family]
    wanted, wanted_files = FAMILIES[model_family]
    return (
        f"{path}: this file holds {held} ({held_files}), not {wanted} as {model_name} needs; "
        f"pass the {wanted_files} checkpoint instead (`lipdub weights list`)"
    )


def _compare(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]] | None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        return missing, unexpected, shapes
    return None


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f", ... (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return f"{label} ({len(items)}): {shown}{more}"


def _key_message(
    path: Path,
    model_name: str,
    file_family: str | None,
    model_family: str | None,
    missing: list[str],
    unexpected: list[str],
    shapes: list[str],
) -> str:
    # One line on purpose: the CLI prints errors as a single "lipdub: error: ..." line.
    parts = [f"{path} does not match {model_name} (strict load)"]
    if missing:
        parts.append(_listing("missing keys", missing))
    if unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if shapes:
        parts.append(_listing("shape mismatches", shapes))
    if file_family and file_family != model_family:
        held, held_files = FAMILIES[file_family]
        parts.append(f"the file looks like {held} ({held_files})")
    parts.append(
        f"fix: pass the checkpoint made for {model_name} (`lipdub weights list`), or build the "
        "model with the configuration the checkpoint was trained with"
    )
    return "; ".join(parts)
