"""Whole-run progress of a film: every stage has its share, advanced as its work completes.

A producer watching a run wants one number that moves from start to end, what is being done
now, and how long is left. Each stage gets a share of 100 % (lip sync the largest); inside a
stage, progress is the share of its work that has *completed* (frames of lip-sync units, shots
tracked), so the bar never sits at 0 while work runs nor reads 100 while assembly and QC go on.
The estimate of what is left is the time so far scaled by what remains.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Shares of the whole run, in order. Measured on the film tests' footage on a CPU: the scan and
# tracks take about a fifth of a run, lip sync about half, assembly and QC the rest.
STAGES = {"scan": 8.0, "tracks": 15.0, "routing": 4.0, "lip sync": 53.0, "assembly": 12.0,
          "qc": 8.0}


class RunProgress:
    """Maps (stage, done, total) to a whole-run percentage and a one-line description.

    Arguments:
        publish: called with (percent, description) on every change (the Prefect artifact).
        clock: seconds, monotonic (for tests).
    """

    def __init__(self, publish: Callable[[float, str], None],
                 clock: Callable[[], float] = time.monotonic):
        self.publish, self.clock = publish, clock
        self.started = clock()
        self.percent = 0.0

    def update(self, stage: str, done: float = 0.0, total: float = 1.0, detail: str = "") -> None:
        """Stage ``stage`` has ``done`` of ``total`` units of work complete."""
        names = list(STAGES)
        before = sum(STAGES[n] for n in names[: names.index(stage)])
        share = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
        self.percent = max(self.percent, before + STAGES[stage] * share)  # never backwards
        self.publish(round(self.percent, 1), self.describe(stage, detail))

    def finish(self) -> None:
        self.percent = 100.0
        self.publish(100.0, f"done in {_duration(self.clock() - self.started)}")

    def describe(self, stage: str, detail: str) -> str:
        elapsed = self.clock() - self.started
        text = f"{stage}{': ' + detail if detail else ''}"
        if self.percent >= 5.0:
            left = elapsed * (100.0 - self.percent) / self.percent
            text += f"; about {_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60):02d} min"
