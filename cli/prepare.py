"""``lipdub prepare``: build a training dataset from videos, or a synthetic one.

Usage::

    lipdub prepare videos ~/LRS2/main data/lrs2            # LRS2-style tree or any folder
    lipdub prepare videos footage/actor data/actor --val-fraction 0.1 --split-by video
    lipdub prepare synthetic data/synthetic --audio-dir ../shared/media/audio

Both write the layout ``lipdub train`` reads (face crops, audio.wav, mel.npy, train.txt,
val.txt, dataset.json). ``videos`` resumes: finished videos are skipped on a second run.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from lipdub.cli.arguments import numbers
from lipdub.pipeline import defaults


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``prepare`` command group (``videos``, ``synthetic``)."""
    parser = subparsers.add_parser(
        "prepare",
        help="build a training dataset (face crops + audio) from videos, or a synthetic one",
        description="Build a dataset for `lipdub train`.",
    )
    parser.set_defaults(prepare_parser=parser, prepare_action=None)
    actions = parser.add_subparsers(title="sources", metavar="SOURCE")

    v = actions.add_parser("videos", help="face crops and audio of every video in a folder",
                           description="Detect, track and crop the face of every video under "
                           "INPUT (LRS2-style tree or any folder) into OUTPUT. Resumable.")
    v.add_argument("input", type=Path, help="a folder of videos (searched recursively) or one")
    v.add_argument("output", type=Path, help="dataset folder")
    v.add_argument("--fps", type=float, default=25.0,
                   help="frame rate of the dataset; sources are resampled to it (default 25)")
    v.add_argument("--crop-size", type=int, default=96,
                   help="crops are stored at this size; 0 keeps the box size (default 96)")
    v.add_argument("--pads", type=int, nargs=4, default=(0, 0, 0, 0),
                   metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="pixels added to the detected box (default 0 0 0 0, as preprocess.py)")
    v.add_argument("--val-fraction", type=float, default=0.05,
                   help="share of groups held out in val.txt (default 0.05)")
    v.add_argument("--split-by", choices=["group", "video"], default="group",
                   help="hold out whole parent folders (identities/shows) or single videos")
    v.add_argument("--face", choices=["largest", "index", "point", "box"], default="largest")
    v.add_argument("--face-index", type=int, default=0)
    v.add_argument("--point", type=lambda t: numbers(t, 2), metavar="X,Y")
    v.add_argument("--box", type=lambda t: numbers(t, 4, int), metavar="X1,Y1,X2,Y2",
                   help="fixed face box (pre-cropped footage): no detection")
    v.add_argument("--detector", help="face detector: registry name or file")
    v.add_argument("--detect-every", type=int, default=defaults.PREPARE_DETECT_EVERY)
    v.add_argument("--detect-size", type=int, default=480)
    v.add_argument("--nosmooth", action="store_true")
    v.add_argument("--device", default="auto")
    v.add_argument("--overwrite", action="store_true", help="prepare finished videos again")
    v.add_argument("--no-progress", action="store_true")
    v.set_defaults(prepare_action=run_videos)

    s = actions.add_parser("synthetic", help="drawn talking faces driven by real speech",
                           description="Write a synthetic talking-mouth dataset: random drawn "
                           "identities whose mouth opening follows the speech envelope.")
    s.add_argument("output", type=Path, help="dataset folder")
    s.add_argument("--audio-dir", help="speech recordings (default: synthetic babble)")
    s.add_argument("--train-identities", type=int, default=64)
    s.add_argument("--val-identities", type=int, default=16)
    s.add_argument("--videos-per-identity", type=int, default=3)
    s.add_argument("--val-audio", type=int, default=2,
                   help="recordings held out for the val identities (default 2)")
    s.add_argument("--jitter", type=float, default=1.0, help="head motion in pixels")
    s.add_argument("--noise", type=float, default=2.0, help="pixel noise std")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(prepare_action=run_synthetic)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``prepare`` action."""
    if args.prepare_action is None:
        args.prepare_parser.print_help()
        return 2
    return args.prepare_action(args)


def run_videos(args: argparse.Namespace) -> int:
    """Prepare a folder of videos; prints the report as JSON."""
    from lipdub.training.prepare import PrepareOptions, prepare_dataset

    face = args.face
    if args.box is not None:
        face = "box"
    elif args.point is not None:
        face = "point"
    options = PrepareOptions(
        fps=args.fps, crop_size=args.crop_size, pads=tuple(args.pads), face=face,
        face_index=args.face_index, face_point=args.point, face_box=args.box,
        detector=args.detector, detect_every=args.detect_every,
        detect_max_side=args.detect_size, smooth=not args.nosmooth,
        val_fraction=args.val_fraction, split_by=args.split_by, device=args.device,
        overwrite=args.overwrite, progress=False if args.no_progress else None,
    )
    report = prepare_dataset(args.input, args.output, options)
    print(json.dumps(asdict(report), indent=2))
    return 0 if report.train + report.val > 0 else 1


def run_synthetic(args: argparse.Namespace) -> int:
    """Write the synthetic dataset; prints its summary as JSON."""
    from lipdub.training.synthetic import SyntheticOptions, build_synthetic_dataset

    options = SyntheticOptions(
        train_identities=args.train_identities, val_identities=args.val_identities,
        videos_per_identity=args.videos_per_identity, audio_dir=args.audio_dir,
        val_audio=args.val_audio, jitter=args.jitter, noise=args.noise, seed=args.seed,
    )
    summary = build_synthetic_dataset(args.output, options)
    print(json.dumps({k: v for k, v in summary.items() if k != "options"}, indent=2))
    return 0
