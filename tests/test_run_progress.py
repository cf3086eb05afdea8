"""Whole-run progress: one number from start to end, the stage, and the time left."""

from __future__ import annotations

from lipdub.pipeline.run_progress import STAGES, RunProgress


def test_progress_moves_through_the_stages_and_says_what_is_left():
    seen, now = [], [0.0]
    progress = RunProgress(lambda p, text: seen.append((p, text)), clock=lambda: now[0])
    progress.update("scan", 0, 1, "finding the shots")
    assert seen[-1] == (0.0, "scan: finding the shots")  # no estimate before 5 %
    now[0] = 10.0
    progress.update("tracks", 3, 3)
    assert seen[-1][0] == STAGES["scan"] + STAGES["tracks"]
    now[0] = 40.0
    progress.update("lip sync", 500, 1000, "500 of 1000 frames, 12.5 frames/s")
    percent, text = seen[-1]
    assert percent == STAGES["scan"] + STAGES["tracks"] + STAGES["routing"] + STAGES[
        "lip sync"] / 2
    left = 40.0 * (100 - percent) / percent
    assert text == f"lip sync: 500 of 1000 frames, 12.5 frames/s; about {round(left)} s left"
    progress.update("lip sync", 100, 1000)  # a late, smaller report never moves it back
    assert seen[-1][0] == percent
    now[0] = 7300.0
    progress.finish()
    assert seen[-1] == (100.0, "done in 2 h 02 min")
    assert sum(STAGES.values()) == 100.0
