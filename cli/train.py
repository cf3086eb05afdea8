"""``lipdub train``: train the expert SyncNet or the Wav2Lip generator from a YAML preset.

Usage::

    lipdub train expert --data data/lrs2 --out runs/expert
    lipdub train generator --data data/lrs2 --expert runs/expert/checkpoint_step000200000.pth
    lipdub train generator --config generator_gan --data data/lrs2 --expert lipsync_expert
    lipdub train generator --config finetune --data data/actor --expert lipsync_expert \\
        --init wav2lip_gan --out runs/actor
    lipdub train expert --out runs/expert --resume last          # continue exactly
    lipdub train expert --set batch_size=32 --set data.num_workers=8

Presets live in configs/train/ (``--config NAME``) or anywhere (``--config FILE.yaml``); the
flags and ``--set key=value`` override their keys. The command lives in ``training/`` because
``pipeline/`` must not import the trainers; ``cli/main.py`` only names it.
"""

from __future__ import annotations

import argparse
import json

# flag dest -> preset key (flags are shortcuts for the most used --set overrides)
_FLAG_KEYS = {
    "data": "data.root",
    "out": "out_dir",
    "resume": "resume",
    "init": "init",
    "max_steps": "max_steps",
    "device": "device",
    "batch_size": "batch_size",
    "width_divisor": "width_divisor",
    "expert": "expert",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``train`` command group (``expert``, ``generator``)."""
    parser = subparsers.add_parser(
        "train",
        help="train the expert SyncNet or the Wav2Lip generator",
        description="Train on a dataset made by `lipdub prepare`. Checkpoints use the original "
        "Wav2Lip layout (the original code loads them); metrics.csv and metrics.png are written "
        "beside them.",
    )
    parser.set_defaults(train_parser=parser, train_target=None)
    targets = parser.add_subparsers(title="what to train", metavar="TARGET")
    for name, help_text in (
        ("expert", "the SyncNet expert lip-sync discriminator (spec §3)"),
        ("generator", "the Wav2Lip generator with a frozen expert, optionally the GAN (spec §5)"),
    ):
        p = targets.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(train_target=name)
        p.add_argument("--config", default=name,
                       help=f"preset name in configs/train/ or a YAML file (default {name})")
        p.add_argument("--data", metavar="DIR", help="dataset folder (data.root)")
        p.add_argument("--out", metavar="DIR", help="run folder (out_dir)")
        p.add_argument("--resume", metavar="CKPT",
                       help="checkpoint to continue exactly, or 'last' (newest in the run folder)")
        p.add_argument("--init", metavar="CKPT",
                       help="weights to start from: a file or a registry name")
        p.add_argument("--max-steps", type=int, help="stop after this global step")
        p.add_argument("--batch-size", type=int)
        p.add_argument("--width-divisor", type=int, choices=(1, 2, 4, 8, 16),
                       help="narrow the network (1 = the paper's widths)")
        p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
        if name == "generator":
            p.add_argument("--expert", metavar="CKPT",
                           help="the trained expert: a file or a registry name (lipsync_expert)")
            p.add_argument("--gan", action="store_true", default=None,
                           help="also train the visual quality discriminator")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override any preset key (dotted: data.fps=25)")
        p.add_argument("--print-config", action="store_true",
                       help="print the resolved arguments and exit")
    return parser


def overrides_from(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides the flags stand for, then the explicit ``--set`` ones."""
    items = []
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            items.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    if getattr(args, "gan", None):
        items.append("gan=true")
    return items + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    """Train the chosen target; prints the final summary as JSON."""
    if args.train_target is None:
        args.train_parser.print_help()
        return 2
    from lipdub.training.args import ExpertArgs, GeneratorArgs, load_args, to_dict

    cls = ExpertArgs if args.train_target == "expert" else GeneratorArgs
    config = load_args(cls, args.config, overrides_from(args))
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
    if args.train_target == "expert":
        from lipdub.training.train_expert import main
    else:
        from lipdub.training.train_generator import main
    summary = main(config)
    print(json.dumps(summary, indent=2, default=str))
    return 0
