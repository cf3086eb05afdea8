"""``lipdub evaluate``: LSE-D / LSE-C over (video, audio) pairs, the expert's accuracy, and the
synthetic dataset's mouth-sync correlation.

Usage::

    lipdub evaluate pairs test_videos/ -o pairs.txt        # audio from another utterance
    lipdub evaluate lse pairs.txt -o eval/ --generator wav2lip_gan --lse-model syncnet_v2
    lipdub evaluate lse real_pairs.txt -o eval_real/       # score the videos as they are
    lipdub evaluate expert runs/expert/checkpoint_step000200000.pth --data data/lrs2
    lipdub evaluate mouth runs/gen/checkpoint_step000003000.pth --data data/synthetic
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` command group."""
    parser = subparsers.add_parser(
        "evaluate",
        help="LSE-D / LSE-C of a generator, the expert's off-sync accuracy",
        description="Evaluate lip sync the way the Wav2Lip paper does.",
    )
    parser.set_defaults(evaluate_parser=parser, evaluate_action=None)
    actions = parser.add_subparsers(title="evaluations", metavar="WHAT")

    pairs = actions.add_parser("pairs", help="write a pairs filelist: each video with the "
                               "audio of another one")
    pairs.add_argument("videos", nargs="+", type=Path, help="video files or folders of videos")
    pairs.add_argument("-o", "--output", type=Path, required=True, help="pairs file to write")
    pairs.add_argument("--seed", type=int, default=0)
    pairs.set_defaults(evaluate_action=run_pairs)

    lse = actions.add_parser("lse", help="LSE-D / LSE-C over a pairs filelist")
    lse.add_argument("pairs", type=Path, help="filelist: 'VIDEO AUDIO' per line")
    lse.add_argument("-o", "--output", type=Path, required=True,
                     help="folder for the generated videos and lse_results.csv")
    lse.add_argument("--generator", help="generator checkpoint or registry name; without it "
                     "the videos are scored as they are against the paired audio")
    lse.add_argument("--lse-model", default="syncnet_v2",
                     help="syncnet_python weights: file or registry name (default syncnet_v2)")
    lse.add_argument("--detector", help="face detector: registry name or file")
    lse.add_argument("--root", type=Path, help="folder relative paths start from")
    lse.add_argument("--audio-first", action="store_true",
                     help="the filelist has 'AUDIO VIDEO' lines (the paper's own lists)")
    lse.add_argument("--keep-short", action="store_true",
                     help="also score pairs whose video is shorter than the audio")
    lse.add_argument("--device", default="auto")
    lse.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core)")
    lse.set_defaults(evaluate_action=run_lse)

    expert = actions.add_parser("expert", help="eval loss and off-sync accuracy of an expert")
    expert.add_argument("checkpoint", help="expert checkpoint (any width) or registry name")
    expert.add_argument("--data", type=Path, required=True, help="dataset folder")
    expert.add_argument("--list", default="val.txt", help="filelist (default val.txt)")
    expert.add_argument("--batches", type=int, default=50)
    expert.add_argument("--batch-size", type=int, default=64)
    expert.add_argument("--seed", type=int, default=1337)
    expert.add_argument("--device", default="auto")
    expert.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core)")
    expert.set_defaults(evaluate_action=run_expert)

    mouth = actions.add_parser("mouth", help="synthetic dataset: how well generated mouths "
                               "follow held-out audio (Pearson r)")
    mouth.add_argument("checkpoint", help="generator checkpoint (any width)")
    mouth.add_argument("--data", type=Path, required=True, help="synthetic dataset folder")
    mouth.add_argument("--list", default="val.txt")
    mouth.add_argument("--device", default="auto")
    mouth.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core)")
    mouth.set_defaults(evaluate_action=run_mouth)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the chosen evaluation."""
    if args.evaluate_action is None:
        args.evaluate_parser.print_help()
        return 2
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return args.evaluate_action(args)


def run_pairs(args: argparse.Namespace) -> int:
    from lipdub.training.evaluate import make_pairs
    from lipdub.training.prepare import find_videos

    videos = []
    for item in args.videos:
        videos += [path for path, _ in find_videos(item)]
    pairs = make_pairs(videos, args.seed)
    args.output.write_text("".join(f"{v} {a}\n" for v, a in pairs))
    print(f"{len(pairs)} pairs written to {args.output}")
    return 0


def run_lse(args: argparse.Namespace) -> int:
    from lipdub.training.evaluate import evaluate_lse, read_pairs

    pairs = read_pairs(args.pairs, args.root)
    if args.audio_first:
        pairs = [(v, a) for a, v in pairs]
    summary = evaluate_lse(pairs, args.output, lse_model=args.lse_model,
                           generator=args.generator, detector=args.detector,
                           device=args.device,
                           skip_short=not args.keep_short, progress=None)
    print(json.dumps(summary, indent=2))
    return 0 if summary["scored"] else 1


def run_expert(args: argparse.Namespace) -> int:
    from lipdub.training.evaluate import evaluate_expert

    metrics = evaluate_expert(args.checkpoint, args.data, args.list, batches=args.batches,
                              batch_size=args.batch_size, seed=args.seed, device=args.device)
    print(json.dumps(metrics, indent=2))
    return 0


def run_mouth(args: argparse.Namespace) -> int:
    from lipdub.pipeline.generator import resolve_device
    from lipdub.training.checkpoints import read_weights_for
    from lipdub.training.networks import build_generator
    from lipdub.training.synthetic import mouth_sync_correlation

    device = resolve_device(args.device)
    model, _ = read_weights_for(build_generator, args.checkpoint, "generator")
    result = mouth_sync_correlation(model.to(device), args.data, args.list, device=device)
    print(json.dumps(result, indent=2))
    return 0
