"""Routing accuracy: which face each character's dubbed lines go to, on films with known answers.

Usage::

    python benchmarks/routing_accuracy.py --media ../shared/media \\
        --detector ../shared/weights/retinaface_mobilenet0.25_pytorch_retinaface.pth \\
        [--cases side_by_side,overlap] [--work /tmp/lipdub_routing] [--json out.json]

Each case of ``routing_cases.py`` is built (film with its original mix, one dub stem per
character), analysed as the ``dub_film`` flow analyses a film (shots, face tracks, stems: the
same stage functions and default settings) and routed by :func:`lipdub.pipeline.routing.route_film`,
the flow's own routing step. Every (character, frame) is then scored against the truth:

- hit: synced on the face that speaks the line in the original;
- wrong: synced on another face (the worst error: words in the wrong mouth);
- miss: left alone though the character's face speaks on screen and the stem is active;
- false: synced where the character does not speak on screen (off screen, or not at all).

Frames within ``EDGE`` frames of a line's start or end are not scored (a stem's voice activity
is padded by 0.1 s; that is timing, not routing). Routing is scored, not voice activity: frames
where the character's stem is silent are not counted as misses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from routing_cases import CASES, Case, Truth, build_case  # noqa: E402

EDGE = 5  # frames either side of a line's start and end that are not scored


def analyse_and_route(film: Path, stems: dict[str, Path], detector, work: Path) -> dict:
    """Shots, tracks, stems and routing, as the film flow does them (default job settings)."""
    from lipdub.pipeline.film_scan import scan_film, track_shot
    from lipdub.pipeline.job import Settings
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.routing import route_film
    from lipdub.pipeline.stems import analyse_stem

    settings = Settings()
    info = probe_video(film)
    scan = scan_film(info, threshold=settings.shot_threshold)
    tracks = {s.index: track_shot(info, scan, s, detector.detect, every=settings.detect_every,
                                  max_side=settings.detect_size,
                                  smooth_window=settings.smooth_window) for s in scan.shots}
    analysed = {c: analyse_stem(c, p, work / "stems", min_segment=settings.min_segment)
                for c, p in stems.items()}
    started = time.perf_counter()
    decisions = route_film(info, scan, tracks, analysed, [], settings, work).decisions
    return {"scan": scan, "tracks": tracks, "stems": analysed, "decisions": decisions,
            "routing_s": time.perf_counter() - started}


def score(result: dict, truth: Truth) -> dict:
    """Hits, wrong, misses and false syncs (frames), as the module docstring defines them."""
    scan, tracks, stems = result["scan"], result["tracks"], result["stems"]
    by_id = {(t.shot, t.track_id): t for ts in tracks.values() for t in ts}
    counts = {"hits": 0, "wrong": 0, "misses": 0, "false": 0, "should": 0}
    for character, speaking in truth.speaking.items():
        n = truth.frames
        synced_x = np.full(n, np.nan)
        synced = np.zeros(n, bool)
        for d in result["decisions"]:
            if d.character != character or d.track_id is None:
                continue
            track = by_id[(d.shot, d.track_id)]
            for f in range(d.start_frame, min(d.end_frame, n)):
                box = track.box_at(f)
                synced[f] = True
                synced_x[f] = np.nan if box is None else (box[0] + box[2]) / 2
        active = np.zeros(n, bool)
        for seg in stems[character].segments:
            active[scan.frame_at(seg.start) : scan.frame_at(seg.end)] = True
        edge = np.zeros(n, bool)
        on_screen = ~np.isnan(truth.region[character][:, 0])
        changes = np.flatnonzero(np.diff(np.r_[0, speaking.astype(int), 0]))
        changes = np.r_[changes, np.flatnonzero(np.diff(np.r_[0, on_screen.astype(int), 0]))]
        for c in changes:
            edge[max(0, c - EDGE) : c + EDGE] = True
        for f in range(n):
            if edge[f]:
                continue
            lo, hi = truth.region[character][f]
            right = synced[f] and on_screen[f] and lo <= synced_x[f] < hi
            if on_screen[f] and speaking[f]:
                counts["should"] += bool(active[f])
                if synced[f] and not right:
                    counts["wrong"] += 1
                elif active[f]:
                    counts["hits" if right else "misses"] += 1
            elif synced[f]:
                counts["false"] += 1
    return counts


def run_case(case: Case, media: Path, detector, work: Path) -> dict:
    film, stems, truth = build_case(case, media, work / case.name)
    result = analyse_and_route(film, stems, detector, work / case.name)
    counts = score(result, truth)
    counts["routing_s"] = round(result["routing_s"], 3)
    counts["decisions"] = [
        {"character": d.character, "shot": d.shot, "frames": [d.start_frame, d.end_frame],
         "track": d.track_id, "reason": d.reason, "score": d.score, "rule": d.rule,
         "evidence": [e.describe() for e in d.evidence]}
        for d in result["decisions"]]
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path("../shared/media"))
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--work", type=Path, help="folder for the films (default: temporary)")
    parser.add_argument("--json", type=Path, help="write every count and decision here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every decision")
    args = parser.parse_args(argv)

    import torch

    from lipdub.pipeline.faces.detector import load_face_detector

    torch.set_num_threads(2)
    detector = load_face_detector(args.detector)
    names = args.cases.split(",") if args.cases else [c.name for c in CASES]
    unknown = set(names) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    work = args.work or Path(tempfile.mkdtemp(prefix="lipdub_routing_"))
    rows, total = {}, {"hits": 0, "wrong": 0, "misses": 0, "false": 0, "should": 0}
    print(f"{'case':<24}{'should':>7}{'hits':>6}{'wrong':>6}{'miss':>6}{'false':>6}"
          f"{'route s':>9}")
    for case in CASES:
        if case.name not in names:
            continue
        counts = run_case(case, args.media, detector, work)
        rows[case.name] = counts
        for k in total:
            total[k] += counts[k]
        print(f"{case.name:<24}{counts['should']:>7}{counts['hits']:>6}{counts['wrong']:>6}"
              f"{counts['misses']:>6}{counts['false']:>6}{counts['routing_s']:>9.2f}")
        if args.verbose:
            for d in counts["decisions"]:
                print(f"    {d['character']:<6} shot {d['shot']} frames {d['frames']} "
                      f"track {d['track']}: {d['reason']} ({d['score']})")
                for line in d["evidence"]:
                    print(f"        {line}")
    share = total["hits"] / total["should"] if total["should"] else float("nan")
    print(f"{'total':<24}{total['should']:>7}{total['hits']:>6}{total['wrong']:>6}"
          f"{total['misses']:>6}{total['false']:>6}")
    print(f"synced right: {100 * share:.1f} % of {total['should']} frames that should be; "
          f"{total['wrong']} on a wrong face, {total['false']} false")
    if args.json:
        args.json.write_text(json.dumps({"cases": rows, "total": total}, indent=1))
    return 0 if total["wrong"] == 0 and total["false"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
