"""The Blender add-on's text helpers (plugin/blender/text.py), without Blender: fitting labels
to the narrow sidebar, recognising lipdub outputs, QC's verdict, the steady worker hint.

text.py is loaded from its file on its own: importing it as ``lipdub.plugin.blender.text`` would run
the add-on's ``__init__``, which needs bpy. The formats it reads are made here by the code that
writes them (lipdub.pipeline.qc.verdict, lipdub.plugin.core), so a change on that side fails these
tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lipdub.pipeline.qc.verdict import verdict_line, verdict_name
from lipdub.plugin.core import DubRequest, DubTask, PathMap, WorkPool, default_output_path
from lipdub.plugin.core import jobs as core_jobs
from lipdub.plugin.core.types import FlowRun, State

SOURCE = Path(__file__).resolve().parents[1] / "plugin" / "blender" / "text.py"
_spec = importlib.util.spec_from_file_location("lipdub_blender_text", SOURCE)
text = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = text  # dataclasses look their module up there
_spec.loader.exec_module(text)

LONG = "/mnt/projects/feature_film_2026/reels/reel2/film.mov"
WIN = r"Z:\projects\feature_film_2026\reels\reel2\film.mov"


# ------------------------------------------------------------------------------- paths
def test_a_long_path_loses_folders_from_its_middle():
    assert text.shorten_path(LONG, 30) == "/mnt/\u2026/reels/reel2/film.mov"
    assert text.shorten_path(LONG, 24) == "/mnt/\u2026/reel2/film.mov"
    assert text.shorten_path(LONG, 18) == "/\u2026/reel2/film.mov"
    assert text.shorten_path(LONG, len(LONG)) == LONG  # fits: unchanged
    assert text.shorten_path(WIN, 30) == "Z:\\projects\\\u2026\\reel2\\film.mov"
    # a name too long for the width keeps its start and its extension
    name = "/mnt/x/a_very_long_take_name_for_the_final_mix_v12.mov"
    assert text.shorten_path(name, 20) == "a_very_lo\u2026ix_v12.mov"


@pytest.mark.parametrize("path", [LONG, WIN, "/a/b", "relative/only/name.mp4", "noslash" * 9])
def test_a_shortened_path_always_fits_and_keeps_its_ends(path):
    for width in range(1, len(path) + 2):
        short = text.shorten_path(path, width)
        assert len(short) <= width, (width, short)
        assert short == path or "\u2026" in short
        if width >= 8:
            assert short[-3:] == path[-3:]  # the extension, or the name's end


def test_status_text_is_wrapped_over_rows_with_its_paths_shortened():
    message = (f"done: 40 of 50 frames changed; QC: 2 of 14 shots flagged (report: "
               f"{LONG[:-9]}/film_dub_anna_20260101-101010_qc/qc.html)")
    rows = text.wrap(message, 30)
    assert len(rows) >= 3 and all(len(r) <= 30 for r in rows), rows
    assert rows[0] == "done: 40 of 50 frames changed;"
    assert rows[-1].startswith("/") and rows[-1].endswith("/qc.html)")  # one row, not broken
    assert "\u2026" in rows[-1]
    words = " ".join(rows).split()
    assert words[:-1] == message.split()[:-1]  # no other word changed nor lost
    assert text.wrap("", 30) == [""]
    assert text.wrap("one\ntwo", 30) == ["one", "two"]


def test_labels_are_short_and_say_what_they_mean():
    assert text.fit("dub_film/lipdub", 30) == "dub_film/lipdub"
    assert text.fit("a" * 40, 10) == "a" * 9 + "\u2026"
    # the stem's face number, instead of Blender's squeezed "Fa -1"
    assert text.face_label(-1) == "Face: auto"
    assert [text.face_label(i) for i in (0, 1, 2, 3)] == [
        "Face: 1st from left", "Face: 2nd from left", "Face: 3rd from left",
        "Face: 4th from left"]
    assert [text.ordinal(n) for n in (11, 12, 13, 21, 22, 111)] == [
        "11th", "12th", "13th", "21st", "22nd", "111th"]
    assert text.server_rows("dub_film/lipdub", "http://render1:4200/api", 30) == [
        "dub_film/lipdub", "on render1:4200"]  # 31 characters on one row: two rows
    assert text.server_rows("dub_film/lipdub", "http://r1:4200/api/", 30) == [
        "dub_film/lipdub on r1:4200"]
    assert text.server_rows("dub_film/lipdub", "https://render1.studio.lan:4200/api", 27) == [
        "dub_film/lipdub", "on render1.studio.lan:4200"]
    # how many characters a sidebar holds: default width, a wider one, a 2x screen
    assert text.chars_for_width(None) == text.DEFAULT_CHARS == 30
    assert text.chars_for_width(400) > text.chars_for_width(230) >= 29
    assert text.chars_for_width(460, 2.0) == text.chars_for_width(230, 1.0)
    assert text.chars_for_width(40) == 16  # never fewer


# ---------------------------------------------------------------------- lipdub outputs
def test_lipdub_outputs_are_recognised_by_strip_or_file_name():
    out = default_output_path("/reels/reel2.mov", ["anna", "ben"], folder="/reels/lipdub")
    assert text.is_dub_output("clip", out)  # the file name the plugins choose
    assert text.is_dub_output("clip", out.replace(".mp4", "-2.mp4"))  # a second one
    assert text.is_dub_output("reel2.dub") and text.is_dub_output("reel2.dub.001")
    for name, path in [("reel2", "/reels/reel2.mov"), ("dubbing", "/reels/dubbing.mp4"),
                       ("reel_dub", "/reels/reel_dub_final.mp4"), ("a.dubx", "")]:
        assert not text.is_dub_output(name, path), (name, path)


# ---------------------------------------------------------------------------- QC verdict
HTML = "/mnt/render/dubbed/reel_dub_anna_20260101-101010_qc/qc.html"


def _summary(flagged: int, shots: int) -> dict:
    """The run summary's qc section as pipeline/flows.py writes it."""
    return {"frames": 50, "frames_changed": 40,
            "qc": {"html": HTML, "shots": shots, "shots_flagged": flagged,
                   "verdict": verdict_line(flagged, shots)}}


def _result_text(flagged: int) -> str:
    """The lipdub-result artifact as pipeline/flows.py writes it."""
    return (f"**reel_dub.mp4**: 40 of 50 frames changed, 3 units computed, 0 from cache. "
            f"QC: {flagged} shot(s) flagged ({HTML}).")


def test_the_verdict_comes_from_the_summary_the_state_name_or_the_result():
    flagged = text.qc_verdict(_summary(2, 14), verdict_name(2, 14), _result_text(2))
    assert (flagged.flagged, flagged.shots, flagged.html, flagged.ok) == (2, 14, HTML, False)
    assert flagged.label() == "QC: 2 of 14 shots flagged" == verdict_name(2, 14)
    ok = text.qc_verdict(_summary(0, 14), "Completed", _result_text(0))
    assert (ok.flagged, ok.shots, ok.ok, ok.label()) == (0, 14, True, "QC ok: 0 of 14 flagged")
    assert text.qc_verdict(_summary(1, 1)).label() == "QC: 1 of 1 shot flagged"
    # the summary beside the output is not visible here: the run's state name says it
    by_state = text.qc_verdict(None, verdict_name(3, 9))
    assert (by_state.flagged, by_state.shots, by_state.html) == (3, 9, None)
    # ... and the result artifact says where the report is
    both = text.qc_verdict(None, verdict_name(3, 9), _result_text(3))
    assert (both.flagged, both.shots, both.html) == (3, 9, HTML)
    only_result = text.qc_verdict(None, "Completed", _result_text(0))
    assert (only_result.ok, only_result.shots, only_result.label()) == (
        True, None, "QC ok: no shot flagged")
    # a summary written by an older pipeline: only the verdict line
    old = {"qc": {"verdict": verdict_line(0, 5), "html": HTML}}
    assert (text.qc_verdict(old).flagged, text.qc_verdict(old).shots) == (0, 5)
    # no QC report at all (output.qc off)
    assert text.qc_verdict({"frames": 50, "qc": None}, "Completed", "**x**: done.") is None
    assert text.qc_verdict(None, "Completed", None) is None


def test_the_completion_message_leaves_the_verdict_to_its_own_row():
    summary = _summary(2, 14)
    message = core_jobs._done_message(summary, PathMap.parse("/Volumes/r=/mnt/render"))
    assert message.startswith("done: 40 of 50 frames changed; QC: 2 of 14")  # as core says
    assert text.without_verdict(message, summary["qc"]["verdict"]) == (
        "done: 40 of 50 frames changed")
    assert text.without_verdict("done", "QC: 2 of 14 shots flagged") == "done"


# ------------------------------------------------------------------------- worker hint
class FakeClient:
    """The PrefectClient calls DubTask._follow makes, for a run still queued: a poll a second
    (on a fake clock); ``on_poll`` runs before each."""

    timeout = 10.0

    def __init__(self, on_poll):
        self.clock, self.pool_ready, self.on_poll = 0.0, False, on_poll

    def read_flow_run(self, run_id: str) -> FlowRun:
        self.on_poll()
        self.clock += 1.0
        return FlowRun(id=run_id, state=State(type="SCHEDULED", name="Late"))

    def read_work_pool(self, name: str) -> WorkPool:
        return WorkPool(name=name, status="READY" if self.pool_ready else "NOT_READY")


def test_the_no_render_machine_hint_is_steady_while_it_is_true(tmp_path, monkeypatch):
    """The client (plugin/core DubTask) asks about the work pool every POOL_CHECK_SECONDS; what
    it says of a queued run must not alternate between two polls (the panel shows it)."""
    shown: list[str] = []

    def tick():  # the add-on's timer, once per poll: the task's message as the panel shows it
        status = task.snapshot()
        if status.phase == "waiting":
            shown.append(status.message)
        client.pool_ready = len(shown) >= 40  # a render machine comes online
        if len(shown) >= 80:
            task.stop_following()

    client = FakeClient(tick)
    monkeypatch.setattr(core_jobs.time, "monotonic", lambda: client.clock)
    request = DubRequest(film=str(tmp_path / "f.mp4"), stems={"a": str(tmp_path / "a.wav")},
                         output=str(tmp_path / "o.mp4"), generator="wav2lip_gan")
    task = DubTask(client, "dub_film/lipdub", request, poll_interval=0.0)
    task._follow(client, "run-1", "gpu-pool")

    hint = shown[1]  # the first tick sees the task before its first poll
    assert hint.startswith("no render machine is online on work pool gpu-pool"), shown[:3]
    assert shown[1:40] == [hint] * 39, shown[:40]
    # the machine is online: the hint goes at the next check, for good
    assert shown[-1] == "waiting for a render machine"
    gone = shown.index("waiting for a render machine", 1)
    assert 40 <= gone <= 40 + core_jobs.POOL_CHECK_SECONDS + 1, gone
    assert set(shown[gone:]) == {"waiting for a render machine"}
