"""``lipdub sync``: lip-sync one clip or still picture to a dub audio track.

Usage::

    lipdub sync VIDEO_OR_IMAGE AUDIO -o OUT.mp4 --checkpoint wav2lip_gan.pth
    lipdub sync two_people.mp4 dub.wav -o out.mkv --checkpoint CKPT --face index --face-index 1
    lipdub sync shot.mov dub.wav -o out.mov --checkpoint CKPT --box 420,180,700,520

A JSON run summary is written beside the output (``OUT.mp4.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lipdub.cli.arguments import numbers
from lipdub.pipeline import defaults
from lipdub.pipeline.media.profiles import PROFILES


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``sync`` command."""
    p = subparsers.add_parser(
        "sync",
        help="lip-sync one clip or still picture to a dub audio track",
        description="Lip-sync one clip (or a still picture) to AUDIO. Frames without a face "
        "pass through untouched and are listed in the JSON run summary written beside OUT.",
    )
    p.add_argument("video", type=Path, help="video file, or a still picture (jpg/png)")
    p.add_argument("audio", type=Path, help="dub audio (any format PyAV reads; a video's audio)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file; .mp4/.mov (H.264 + AAC) or .mkv (FFV1 + FLAC)")
    p.add_argument("--checkpoint", required=True,
                   help="generator weights: a file, or a registry name (lipdub weights list)")
    face = p.add_argument_group("face choice")
    face.add_argument("--face", choices=["largest", "index", "point", "box"], default=None,
                      help="which face to sync (default largest; set by --point/--box too)")
    face.add_argument("--face-index", type=int, default=0,
                      help="with --face index: the N-th face from the left, from 0")
    face.add_argument("--point", type=lambda t: numbers(t, 2), metavar="X,Y",
                      help="sync the face whose box contains this pixel")
    face.add_argument("--box", type=lambda t: numbers(t, 4, int), metavar="X1,Y1,X2,Y2",
                      help="fixed face box for every frame (no detection)")
    face.add_argument("--pads", type=int, nargs=4, default=defaults.PADS,
                      metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                      help="pixels added to the detected box (default "
                      f"{' '.join(map(str, defaults.PADS))}, as Wav2Lip)")
    face.add_argument("--nosmooth", action="store_true", help="do not smooth boxes over time")
    face.add_argument("--detect-every", type=int, default=defaults.DETECT_EVERY,
                      help="run the detector on every N-th frame and interpolate between, "
                      "detecting the frames between too where faces appear, leave or move "
                      "fast (default %(default)s)")
    face.add_argument("--detect-size", type=int, default=defaults.DETECT_SIZE,
                      help="long side of the picture copy the detector sees (default %(default)s)")
    face.add_argument("--detector", default=None,
                      help="RetinaFace weights: a file or registry name (default "
                      "retinaface_mobilenet0.25)")
    run = p.add_argument_group("processing")
    run.add_argument("--batch-size", type=int, default=None,
                     help=f"generator batch (default {defaults.GPU_BATCH} on a GPU, "
                     f"{defaults.CPU_BATCH} on a CPU)")
    run.add_argument("--device", default=defaults.DEVICE,
                     help="auto (cuda if present), cpu, cuda:0...")
    run.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                     help="default fp16 on GPU, fp32 on CPU; bf16 is faster on recent CPUs")
    run.add_argument("--codec", choices=list(PROFILES), default=None,
                     help="output profile: prores_hq/prores_4444/dnxhr_hq/dnxhr_hqx (.mov), "
                          "ffv1 (.mkv), h264/h265 review copies (default: h264 for mp4/mov, "
                          "ffv1 for mkv)")
    run.add_argument("--fps", type=float, default=defaults.STILL_FPS,
                     help="frame rate for a still picture (default %(default)s)")
    run.add_argument("--accept-damaged", action="store_true",
                     help="go on past a damaged video (pictures the decoder had to conceal, a "
                     "file shorter than it announces) instead of refusing it; every affected "
                     "frame is listed on stderr and in the summary")
    run.add_argument("--no-colour-match", action="store_true",
                     help="do not match the mouth's colour to the face at the mask edge")
    run.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    # Nothing is left to flush once the output is renamed: skip the interpreter's teardown.
    p.set_defaults(_exit_when_done=True)
    return p


def options_from_args(args: argparse.Namespace):
    """The :class:`~lipdub.pipeline.clip_sync.SyncOptions` a command line asks for."""
    from lipdub.pipeline.clip_sync import SyncOptions
    from lipdub.pipeline.errors import LipdubError

    mode = args.face or ("box" if args.box else "point" if args.point else "largest")
    if mode == "box" and not args.box:
        raise LipdubError("--face box needs --box X1,Y1,X2,Y2")
    if mode == "point" and not args.point:
        raise LipdubError("--face point needs --point X,Y")
    for name in ("batch_size", "detect_every", "detect_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise LipdubError(f"--{name.replace('_', '-')} must be at least 1")
    if args.fps <= 0:
        raise LipdubError("--fps must be positive")
    return SyncOptions(
        checkpoint=args.checkpoint, face=mode, face_index=args.face_index,
        face_point=args.point, face_box=args.box, pads=tuple(args.pads),
        batch_size=args.batch_size, device=args.device, precision=args.precision,
        smooth=not args.nosmooth, detect_every=args.detect_every,
        detect_max_side=args.detect_size, detector=args.detector, codec=args.codec,
        still_fps=args.fps, match_colour=not args.no_colour_match,
        accept_damaged=args.accept_damaged, overwrite=args.overwrite,
        progress=False if args.no_progress else None,
    )


def run(args: argparse.Namespace) -> int:
    """Run one sync and print a short report (the full one is the JSON summary)."""
    import contextlib

    from lipdub.pipeline.dub_process import DubInChildProcess

    # Forked first, before anything imports torch (options_from_args does).
    in_child = DubInChildProcess.available() and Path(args.audio).is_file()
    with DubInChildProcess(args.audio) if in_child else contextlib.nullcontext() as child:
        options = options_from_args(args)
        from lipdub.pipeline.clip_sync import sync_clip

        summary = sync_clip(args.video, args.audio, args.output, options,
                            dub=child.future if child else None)
    report = {
        "output": summary.output,
        "frames": summary.frames,
        "synced": summary.frames_synced,
        "passed_through": summary.frames_passed_through,
        "frames_per_second": summary.frames_per_second,
        "audio_cut_s": round(summary.audio_report.get("cut_seconds", 0.0), 3),
        "audio_padded_s": round(summary.audio_report.get("padded_seconds", 0.0), 3),
        "summary": summary.output + ".json",
        "dub_mel_taken_in": "child process" if in_child else "this process",
    }
    print(json.dumps(report, indent=2), file=sys.stdout)
    if summary.size_note:  # recorded in the summary; said here too
        print(f"warning: {summary.size_note}", file=sys.stderr)
    for damage in summary.damage:  # accepted with --accept-damaged; said, never silent
        at = f" ({damage['time']:.3f} s)" if damage["time"] is not None else ""
        print(f"warning: damaged input: frame {damage['frame']}{at}: {damage['what']}",
              file=sys.stderr)
    audio = summary.audio_report
    padded = audio.get("padded_seconds", 0.0)
    picture = audio.get("source_duration", 0.0) - audio.get("cut_seconds", 0.0) + padded
    if picture and padded > picture / 2:  # recorded in the summary; said here too
        print(f"warning: {args.audio} covers only {picture - padded:.2f} s of the picture's "
              f"{picture:.2f} s; the rest was padded with silence (mouths closed there)",
              file=sys.stderr)
    return 0
