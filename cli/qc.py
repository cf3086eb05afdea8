"""``lipdub qc``: the QC report of any video + audio pair, on its own.

Usage::

    lipdub qc dubbed.mov dub_mix.wav -o qc/ --source original.mov --lse syncnet_v2
    lipdub qc film_dub.mov film_dub.mov --summary film_dub.mov.json --expert wav2lip_expert

Which faces are measured: the boxes of a run (``--summary``, the JSON that ``lipdub dub`` or
``lipdub sync`` wrote beside its output), else the largest face of every shot, found with the
face detector. AUDIO may be the video itself (its own soundtrack).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``qc`` command."""
    p = subparsers.add_parser(
        "qc", help="QC report (sync, seams, flicker, contact sheets) of a video + audio pair",
        description="Measure lip sync (LSE-D, LSE-C, A/V offset), seams across the mouth mask "
        "and mouth flicker per shot and segment; write qc.json, qc.html and PNGs.")
    p.add_argument("video", type=Path, help="the (dubbed) video")
    p.add_argument("audio", type=Path, help="the audio it should be in sync with")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="report folder (default: VIDEO's name + _qc beside it)")
    p.add_argument("--source", type=Path, default=None,
                   help="the undubbed video: before/after sheets, source-relative seam/flicker")
    p.add_argument("--summary", type=Path, default=None,
                   help="run summary JSON of lipdub dub/sync: measure its segments and boxes")
    p.add_argument("--lse", default=None, help="syncnet_v2 weights (registry name or file)")
    p.add_argument("--expert", default=None,
                   help="Wav2Lip expert weights, used when --lse is not given")
    p.add_argument("--detector", default=None, help="face detector weights (name or file)")
    p.add_argument("--device", default="cpu", help="torch device for the sync network")
    p.add_argument("--no-loudness", action="store_true", help="skip the BS.1770 measurement")
    return p


def segments_from_summary(path: Path):
    """(segments, shots) from a ``lipdub dub`` or ``lipdub sync`` run summary."""
    import numpy as np

    from lipdub.pipeline.errors import LipdubError
    from lipdub.pipeline.qc.checks import QCSegment

    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LipdubError(f"{path}: not a readable run summary ({exc}); give the .json that "
                          "lipdub dub or lipdub sync wrote") from exc
    if "units" in summary:  # lipdub dub
        segments = []
        for unit in summary["units"]:
            with np.load(unit["result"]) as data:
                boxes = {int(f): tuple(int(v) for v in b)
                         for f, b in zip(data["frames"], data["boxes"])}
            name = f"shot{unit['shot']:04d}_track{unit['track_id']}_{unit['start']}-{unit['end']}"
            segments.append(QCSegment(name, unit["shot"], unit["start"], unit["end"], boxes,
                                      unit.get("character")))
        shots = [(s["index"], s["start"], s["end"]) for s in summary["shots"]]
        return segments, shots
    if "face_boxes" in summary:  # lipdub sync
        boxes = {int(b[0]): tuple(int(v) for v in b[1:]) for b in summary["face_boxes"]}
        return _runs(boxes, [(0, 0, int(summary["frames"]))]), [(0, 0, int(summary["frames"]))]
    raise LipdubError(f"{path}: has neither 'units' (lipdub dub) nor 'face_boxes' (lipdub sync)")


def _runs(boxes: dict, shots: list[tuple[int, int, int]]):
    """One segment per unbroken run of boxed frames inside each shot."""
    from lipdub.pipeline.qc.checks import QCSegment

    segments = []
    for index, start, end in shots:
        run: list[int] = []
        for frame in [*range(start, end), None]:
            if frame is not None and frame in boxes:
                run.append(frame)
                continue
            if run:
                segments.append(QCSegment(f"shot{index:04d}_{run[0]}-{run[-1] + 1}", index,
                                          run[0], run[-1] + 1, {f: boxes[f] for f in run}))
            run = []
    return segments


def segments_by_detection(video: Path, detector_name: str | None):
    """The largest face of every shot (shots and faces found as ``lipdub dub`` finds them)."""
    import numpy as np

    from lipdub.pipeline.faces.detector import load_face_detector
    from lipdub.pipeline.film_scan import scan_film, track_shot
    from lipdub.pipeline.generator import padded_box
    from lipdub.pipeline.media.decode import probe_video

    info = probe_video(video)
    scan = scan_film(info)
    detector = load_face_detector(detector_name, device="cpu")
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for shot in scan.shots:
        tracks = track_shot(info, scan, shot, detector.detect)
        if not tracks:
            continue
        best = max(tracks, key=lambda t: float(np.nansum(
            (t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1]))))
        for frame in range(best.first, best.last + 1):
            box = best.box_at(frame)
            padded = None if box is None else padded_box(box, (0, 10, 0, 0), info.width,
                                                         info.height)
            if padded is not None:
                boxes[frame] = padded
    shots = [(s.index, s.start, s.end) for s in scan.shots]
    return _runs(boxes, shots), shots


def run(args: argparse.Namespace) -> int:
    from lipdub.pipeline.media.decode import require_file
    from lipdub.pipeline.qc.checks import run_qc

    for path in (args.video, args.audio, args.source):
        if path is not None:
            require_file(path)
    if args.summary:
        segments, shots = segments_from_summary(args.summary)
    else:
        segments, shots = segments_by_detection(args.video, args.detector)
    out = args.out or args.video.with_name(args.video.stem + "_qc")
    report = run_qc(args.video, args.audio, segments, shots, out, source=args.source,
                    lse=args.lse, expert=args.expert, device=args.device,
                    loudness=not args.no_loudness)
    print(f"{report['shots_flagged']} of {len(report['shots'])} shots flagged; "
          f"report: {report['html']}")
    return 0
