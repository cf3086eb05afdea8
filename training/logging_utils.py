"""Training logs: one CSV row per logged value, and PNG loss curves drawn from it.

``metrics.csv`` has the columns ``step,epoch,split,metric,value,time``; one row per value keeps
the file valid when a run logs a new metric halfway (the sync loss after its switch, say). A
resumed run first drops the rows logged after its checkpoint, so the file reads as one run.

The curves are drawn with OpenCV, which the project already depends on (matplotlib is not a
dependency): one panel per metric, one line per split.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from lipdub.pipeline.partial_files import write_image, writing

COLUMNS = ("step", "epoch", "split", "metric", "value", "time")
# BGR colours per split: train blue, eval orange, others green / purple.
_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (189, 103, 148)]


class MetricsLog:
    """Append-only CSV of training metrics.

    Arguments:
        path: the CSV file (created with a header if missing).
        resume_step: when resuming, rows with a larger step are dropped first.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start = time.time()
        rows = read_metrics(self.path) if self.path.is_file() else []
        if resume_step is not None:
            rows = [r for r in rows if r["step"] <= resume_step]
        else:
            rows = []
        # The whole file is written again here: atomically, so that a crash cannot lose the
        # rows a resumed run keeps. The rows :meth:`log` appends need no temporary name: each
        # call is one short write at the end, which leaves the lines before it whole.
        with writing(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for r in rows:
                writer.writerow([r[c] for c in COLUMNS])
        self._offset = max((r["time"] for r in rows), default=0.0)

    def log(self, step: int, epoch: int, split: str, **metrics: float) -> None:
        """Append one row per metric (non-finite values are written as they are)."""
        elapsed = round(self._offset + time.time() - self._start, 3)
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            for name, value in metrics.items():
                writer.writerow([step, epoch, split, name, f"{float(value):.6g}", elapsed])

    def plot(self, png: str | Path | None = None) -> Path:
        """Draw the curves to ``png`` (default: the CSV's name with .png)."""
        target = Path(png) if png else self.path.with_suffix(".png")
        plot_metrics(read_metrics(self.path), target)
        return target


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics CSV with typed values."""
    rows = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({
                "step": int(row["step"]),
                "epoch": int(row["epoch"]),
                "split": row["split"],
                "metric": row["metric"],
                "value": float(row["value"]),
                "time": float(row["time"]),
            })
    return rows


def plot_metrics(rows: list[dict], png: str | Path, *, width: int = 720,
                 panel_height: int = 220) -> Path:
    """One panel per metric, one polyline per split, with axes, ticks and a legend.

    Arguments:
        rows: as :func:`read_metrics` returns them.
        png: output file.

    Returns:
        ``png``.
    """
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if math.isfinite(r["value"]):
            series[r["metric"]][r["split"]].append((r["step"], r["value"]))
    names = sorted(series) or ["(no metrics yet)"]
    canvas = np.full((panel_height * len(names), width, 3), 255, np.uint8)
    splits = sorted({s for m in series.values() for s in m})
    colour = {s: _COLOURS[i % len(_COLOURS)] for i, s in enumerate(splits)}
    for i, name in enumerate(names):
        panel = canvas[i * panel_height : (i + 1) * panel_height]
        _draw_panel(panel, name, series.get(name, {}), colour)
    return write_image(png, canvas)  # drawn again and again: a reader never sees half of it


def _draw_panel(panel: np.ndarray, title: str, lines: dict, colour: dict) -> None:
    h, w = panel.shape[:2]
    left, right, top, bottom = 64, 16, 24, 28
    font = cv2.FONT_HERSHEY_SIMPLEX
    black, grey = (0, 0, 0), (200, 200, 200)
    cv2.putText(panel, title, (left, 16), font, 0.5, black, 1, cv2.LINE_AA)
    points = [p for pts in lines.values() for p in pts]
    if not points:
        return
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(values), max(values)
    if x1 == x0:
        x1 = x0 + 1
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def to_px(step, value):
        x = left + (step - x0) / (x1 - x0) * (w - left - right)
        y = top + (y1 - value) / (y1 - y0) * (h - top - bottom)
        return int(round(x)), int(round(y))

    cv2.rectangle(panel, (left, top), (w - right, h - bottom), black, 1)
    for k in range(5):  # horizontal grid lines with value labels
        value = y0 + (y1 - y0) * k / 4
        _, y = to_px(x0, value)
        cv2.line(panel, (left + 1, y), (w - right - 1, y), grey, 1)
        cv2.putText(panel, f"{value:.3g}", (4, y + 4), font, 0.35, black, 1, cv2.LINE_AA)
    for k in range(5):  # step labels
        step = x0 + (x1 - x0) * k / 4
        x, _ = to_px(step, y0)
        cv2.putText(panel, f"{int(step)}", (x - 12, h - 10), font, 0.35, black, 1, cv2.LINE_AA)
    for n, (split, pts) in enumerate(sorted(lines.items())):
        pts = sorted(pts)
        poly = np.array([to_px(s, v) for s, v in pts], np.int32)
        if len(poly) == 1:
            cv2.circle(panel, tuple(int(c) for c in poly[0]), 3, colour[split], -1)
        else:
            cv2.polylines(panel, [poly], False, colour[split], 1, cv2.LINE_AA)
        lx = w - right - 110
        ly = top + 14 + 14 * n
        cv2.line(panel, (lx, ly - 4), (lx + 16, ly - 4), colour[split], 2)
        label = f"{split} {pts[-1][1]:.4g}"
        cv2.putText(panel, label, (lx + 20, ly), font, 0.35, black, 1, cv2.LINE_AA)
