"""Typed training arguments: dataclasses are the schema, YAML files in configs/train/ are presets.

A preset mirrors the dataclass: top-level keys are fields, ``data:`` is the :class:`DataArgs`
section. Unknown keys and values of the wrong type are rejected with the file and the key named;
command-line overrides use dotted keys (``data.root=/x``, ``lr=5e-5``) and follow the same rules.

Usage::

    args = load_args(GeneratorArgs, "generator", ["data.root=data/lrs2", "expert=expert.pth"])
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lipdub.pipeline.errors import LipdubError

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "train"
AMP_MODES = ("auto", "off", "bf16", "fp16")
EXPERT_BN_MODES = ("train", "eval")


class ArgsError(LipdubError):
    """A preset or override is invalid; the message names the file (or flag) and the key."""


@dataclass
class DataArgs:
    """Where a prepared dataset is and how its windows are cut (spec §1.5, §3.3, §5.2)."""

    root: str = ""  # dataset folder written by `lipdub prepare`
    train_list: str = "train.txt"  # filelist, relative to root unless absolute
    val_list: str = "val.txt"
    fps: float | None = None  # None: the dataset's own (dataset.json), 25 when it says nothing
    img_size: int = 96  # crops are resized to this (the paper's networks need 96)
    num_workers: int = 2  # DataLoader worker processes (0: load in the training process)


@dataclass
class _RunArgs:
    """Fields every trainer has."""

    data: DataArgs = field(default_factory=DataArgs)
    out_dir: str = "runs/train"  # checkpoints, metrics.csv, metrics.png, sample collages
    width_divisor: int = 1  # 1 = the paper's widths; 2/4/8/16 narrow the networks (CPU runs)
    batch_size: int = 16
    lr: float = 1e-4
    max_steps: int = 1_000_000  # the original trains until stopped by hand
    eval_interval: int = 3000
    eval_batches: int = 701
    eval_at_start: bool = True  # also evaluate after the first step
    checkpoint_interval: int = 3000
    checkpoint_at_start: bool = True  # also save after the first step (as the original)
    log_interval: int = 50  # steps between train-loss rows in metrics.csv
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # CPU threads for torch (None: its default, one per core)
    amp: str = "auto"  # auto (bf16/fp16 on a GPU, off on a CPU) | off | bf16 | fp16
    channels_last: bool | None = None  # None: on for CUDA
    init: str | None = None  # weights to start from (any layout `lipdub weights verify` reads)
    resume: str | None = None  # checkpoint to resume exactly, or "last" (newest in out_dir)

    def problems(self) -> list[str]:
        found = []
        for name in ("batch_size", "max_steps", "eval_interval", "eval_batches",
                     "checkpoint_interval", "log_interval"):
            if getattr(self, name) < 1:
                found.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.threads is not None and self.threads < 1:
            found.append(f"threads must be >= 1 (got {self.threads})")
        if self.lr <= 0:
            found.append(f"lr must be > 0 (got {self.lr})")
        if self.width_divisor not in (1, 2, 4, 8, 16):
            found.append(f"width_divisor must be 1, 2, 4, 8 or 16 (got {self.width_divisor})")
        if self.amp not in AMP_MODES:
            found.append(f"amp must be one of {', '.join(AMP_MODES)} (got {self.amp!r})")
        if not self.data.root:
            found.append("data.root is not set (the folder `lipdub prepare` wrote)")
        if self.data.img_size != 96:
            found.append("data.img_size must be 96: the networks' 1x1 bottleneck needs 96x96 crops")
        if self.data.fps is not None and self.data.fps <= 0:
            found.append(f"data.fps must be > 0 (got {self.data.fps})")
        if self.init and self.resume:
            found.append("init and resume are exclusive: resume restores the weights itself")
        return found


@dataclass
class ExpertArgs(_RunArgs):
    """`lipdub train expert`: the SyncNet expert (spec §3; color_syncnet_train.py)."""

    out_dir: str = "runs/expert"
    batch_size: int = 64
    eval_interval: int = 10_000
    eval_batches: int = 1402
    eval_at_start: bool = False
    checkpoint_interval: int = 10_000


@dataclass
class GeneratorArgs(_RunArgs):
    """`lipdub train generator`: Wav2Lip with the frozen expert, optionally the GAN (spec §5)."""

    out_dir: str = "runs/generator"
    expert: str = ""  # the trained expert checkpoint (required); its width is read from the file
    expert_bn: str = "train"  # train: BatchNorm on batch statistics, as the original; eval
    betas: tuple[float, float] = (0.9, 0.999)
    syncnet_wt_initial: float = 0.0  # sync-loss weight until the eval sync loss drops
    syncnet_wt: float = 0.01  # ... below sync_threshold, then this, permanently
    sync_threshold: float = 0.75
    gan: bool = False  # train the visual quality discriminator as well (hq_wav2lip_train.py)
    disc_wt: float = 0.07
    disc_lr: float = 1e-4
    disc_betas: tuple[float, float] = (0.5, 0.999)
    disc_init: str | None = None  # discriminator weights to start from (GAN only)
    sample_count: int = 4  # batch items written per sample collage (0: none)

    def problems(self) -> list[str]:
        found = super().problems()
        if not self.expert:
            found.append("expert is not set: the generator needs a trained expert checkpoint")
        if self.expert_bn not in EXPERT_BN_MODES:
            found.append(f"expert_bn must be train or eval (got {self.expert_bn!r})")
        if not 0 < self.sync_threshold:
            found.append(f"sync_threshold must be > 0 (got {self.sync_threshold})")
        weights = {"syncnet_wt": self.syncnet_wt, "syncnet_wt_initial": self.syncnet_wt_initial}
        if self.gan:
            weights["disc_wt"] = self.disc_wt
        for name, value in weights.items():
            if not 0 <= value < 1:
                found.append(f"{name} must be in [0, 1) (got {value})")
        top = max(self.syncnet_wt, self.syncnet_wt_initial) + (self.disc_wt if self.gan else 0)
        if top >= 1:
            found.append(f"sync + GAN weights reach {top:g}: the L1 weight 1 - sum must stay > 0")
        if self.disc_init and not self.gan:
            found.append("disc_init is set but gan is false")
        return found


def preset_path(name_or_path: str | Path) -> Path:
    """A preset file: an existing path, or a name in configs/train/ (``expert``, ``finetune``...).

    Raises:
        ArgsError: neither exists; the message lists the presets.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))) or "none"
    raise ArgsError(f"{name_or_path}: no such preset file or name (presets: {names})")


def load_args(cls, preset: str | Path | None = None, overrides: list[str] | None = None):
    """Build ``cls`` from a preset and ``key=value`` overrides, then check it.

    Arguments:
        cls: :class:`ExpertArgs` or :class:`GeneratorArgs`.
        preset: a YAML file or preset name; None starts from the dataclass defaults.
        overrides: ``"key=value"`` strings; dotted keys reach sections, values are YAML.

    Returns:
        The checked arguments.

    Raises:
        ArgsError: unreadable preset, unknown key, wrong type, or inconsistent values (all
            problems at once).
    """
    values: dict = {}
    source = "defaults"
    if preset is not None:
        path = preset_path(preset)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ArgsError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ArgsError(f"{path}: a preset must be a mapping of keys to values")
        values = loaded
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ArgsError(f"override {item!r}: expected key=value (e.g. data.root=/data/lrs2)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ArgsError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        _set_dotted(values, key.strip(), value, item)
    args = from_dict(cls, values, source)
    problems = args.problems()
    if problems:
        raise ArgsError(f"{source}: " + "; ".join(problems))
    return args


def _set_dotted(values: dict, key: str, value, item: str) -> None:
    parts = key.split(".")
    target = values
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ArgsError(f"override {item!r}: {part} is not a section")
    target[parts[-1]] = value


def from_dict(cls, values: dict, source: str = "arguments", prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict, converting and checking every value's type.

    Raises:
        ArgsError: unknown key or wrong type; the message names ``source`` and the dotted key.
    """
    if not isinstance(values, dict):
        raise ArgsError(f"{source}: {prefix.rstrip('.') or 'the preset'} must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ArgsError(
            f"{source}: unknown key {prefix + unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; known keys{' in ' + prefix.rstrip('.') if prefix else ''}: {known}"
        )
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _convert(hints[name], value, source, f"{prefix}{name}")
    return cls(**kwargs)


def _convert(hint, value, source: str, key: str):
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value if value is not None else {}, source, f"{key}.")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, key)
            except ArgsError:
                continue
        raise _type_error(source, key, hint, value)
    if origin is tuple:
        inner = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(inner):
            raise _type_error(source, key, hint, value)
        return tuple(_convert(t, v, source, key) for t, v in zip(inner, value))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # a path such as 2024 or an override like device=0 typed bare
    raise _type_error(source, key, hint, value)


def _type_error(source: str, key: str, hint, value) -> ArgsError:
    wanted = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return ArgsError(f"{source}: key {key!r} must be {wanted}, got {value!r}")


def to_dict(args) -> dict:
    """The arguments as plain YAML-ready values (tuples as lists), for logs and checkpoints."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(args))
