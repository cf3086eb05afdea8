"""Run inside Blender (``blender -b --factory-startup --python-exit-code 1 --python THIS -- ARGS``)
or inside Blender as a Python module (``BPY_VENV/bin/python THIS -- ARGS``, the bpy wheels of
Blender 4.5 and 5.0) by tests/test_plugin_blender.py: install the add-on zip, dub a strip
through the real Prefect server, check the new strip and its selection, QC's verdict and its
report's path, the panel's labels, the refusal to dub a dub, check the API key is saved
nowhere, unregister.

Background Blender has no event loop, so ``bpy.app.timers`` never fire by themselves: after the
operator registered the add-on's timer, this script plays Blender's part, calling the
registered function again after the delay it returns until it returns None, and checks that
each call is quick (the UI would never be blocked). Writes what it saw as JSON to --result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import bpy

SECRET = "lipdub-SECRET-api-key-0123456789"


def parse() -> argparse.Namespace:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    p = argparse.ArgumentParser()
    for name in ("zip", "server", "film", "stem", "generator", "detector", "work-dir",
                 "out-dir", "blend", "result", "user-config"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--path-map", default="", help="the add-on's path mapping preference")
    p.add_argument("--timeout", type=float, default=240)
    return p.parse_args(argv)


def strips(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


class FakeLayout:
    """Records what a Panel.draw asks of its layout (background Blender draws nothing): one
    ``[call, text, icon, first argument]`` per call (an operator's idname, a property's name)."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            first = args[1] if name == "prop" and len(args) > 1 else (args[0] if args else None)
            self.log.append([name, kwargs.get("text"), kwargs.get("icon"),
                             first if isinstance(first, str) else None])
            return FakeLayout(self.log)
        return call

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)


def draw_panel(ui) -> list[list]:
    """What the panel draws now, as FakeLayout records it."""
    draws: list[list] = []
    panel_self = type("PanelSelf", (), {})()
    panel_self.layout = FakeLayout(draws)
    ui.LIPDUB_PT_panel.draw(panel_self, bpy.context)
    return draws


def refusal(operator, *args, **props) -> str:
    """The error an operator reports (bpy.ops raises it as RuntimeError)."""
    try:
        result = operator(*args, **props)
    except RuntimeError as exc:
        return str(exc)
    return f"no error: {sorted(result)}"


def invoke_dub(ops, scene) -> dict:
    """DUB_OT_dub_strip.invoke as Blender with a window calls it (on a stand-in operator and
    window manager): a lipdub output asks with a confirm dialog before anything is sent."""
    asked, executed = [], []

    class WindowManager:
        def invoke_confirm(self, operator, event, **texts):
            asked.append({"confirm_set": operator.confirm, **texts})
            return {"RUNNING_MODAL"}  # the dialog is open; its OK would run execute

    class Operator:  # what invoke uses of the operator: its property and execute
        confirm = False

        def execute(self, context):
            executed.append(context)
            return {"FINISHED"}

    class Context:
        window_manager, sequencer_scene = WindowManager(), None

    Context.scene = scene
    result = ops.DUB_OT_dub_strip.invoke(Operator(), Context(), None)
    return {"result": sorted(result), "asked": asked, "executed": len(executed)}


def run_timer_loop(func, deadline: float, out: dict, on_tick=None) -> None:
    """Blender's timer loop, for a registered timer function, until it unregisters itself."""
    durations = []
    delay = 0.0
    while bpy.app.timers.is_registered(func):
        if time.time() > deadline:
            raise TimeoutError("the dub did not finish in time")
        time.sleep(delay)
        t0 = time.perf_counter()
        delay = func()
        durations.append(time.perf_counter() - t0)
        if on_tick:
            on_tick()
        if delay is None:
            bpy.app.timers.unregister(func)  # what Blender does when a timer returns None
    out["timer_calls"] = len(durations)
    out["timer_durations_s"] = durations


def main(args: argparse.Namespace, out: dict) -> None:
    import addon_utils

    bpy.ops.preferences.addon_install(filepath=args.zip, overwrite=True)
    bpy.ops.preferences.addon_enable(module="lipdub_blender")
    out["enabled"] = addon_utils.check("lipdub_blender")[1]
    import lipdub_blender
    from lipdub_blender import ops, state, ui

    out["core_module"] = state.core.__name__  # the vendored copy, not lipdub.plugin.core
    out["plugin_imported"] = any(m == "plugin" or m.startswith("plugin.") for m in sys.modules)
    out["registered"] = {name: hasattr(bpy.types, name) for name in
                         ("DUB_OT_dub_strip", "DUB_OT_cancel", "LIPDUB_PT_panel")}
    out["scene_prop"] = hasattr(bpy.types.Scene, "lipdub")
    out["bl_info_blender"] = list(lipdub_blender.bl_info["blender"])
    out["blender_version"] = bpy.app.version_string

    prefs = bpy.context.preferences.addons["lipdub_blender"].preferences
    prefs.server_url = args.server
    prefs.api_key = SECRET  # the test server has no auth: the header is ignored
    prefs.generator = args.generator
    prefs.detector = args.detector
    prefs.work_dir = args.work_dir
    prefs.output_dir = args.out_dir
    prefs.poll_seconds = 0.3
    prefs.path_map = args.path_map

    scene = bpy.context.scene
    if hasattr(bpy.context.workspace, "sequencer_scene"):
        # Blender 5.0: the Sequencer edits its workspace's scene, here not the window's one
        scene = bpy.data.scenes.new("cut")
        bpy.context.workspace.sequencer_scene = scene
        out["sequencer_scene"] = (bpy.context.sequencer_scene == scene
                                  and bpy.context.scene != scene)
    scene.render.fps, scene.render.fps_base = 25, 1.0
    editor = scene.sequence_editor_create()
    original = strips(editor).new_movie(name="reel", filepath=args.film, channel=2,
                                        frame_start=10)
    original.frame_final_start = 15  # trims: source frames 5..44 shown at 15..54
    original.frame_final_end = 55
    other = strips(editor).new_movie(name="other", filepath=args.film, channel=1,
                                     frame_start=200)
    for s in strips(editor):
        s.select = False
    out["poll_without_selection"] = bpy.ops.dub.dub_strip.poll()
    stem = scene.lipdub.stems.add()
    stem.character, stem.filepath = "anna", args.stem
    stem.face = 0  # the only face speaks (2 s are too short for the router to be sure)

    # A first dub, cancelled through DUB_OT_cancel as soon as its flow run exists.
    other.select = True
    editor.active_strip = other
    assert bpy.ops.dub.dub_strip() == {"FINISHED"}
    cancelled_id = next(iter(state.jobs))
    deadline = time.time() + 30
    while state.jobs[cancelled_id].task.snapshot().flow_run_id is None:
        assert time.time() < deadline and not state.jobs[cancelled_id].task.done
        time.sleep(0.05)
    assert bpy.ops.dub.cancel(job_id=cancelled_id) == {"FINISHED"}
    other.select = False

    # The real one: the operator returns at once, the work happens in the task's thread.
    original.select = True
    editor.active_strip = original
    t0 = time.perf_counter()
    result = bpy.ops.dub.dub_strip()
    out["operator_s"] = time.perf_counter() - t0
    out["operator_result"] = sorted(result)
    out["jobs"] = len(state.jobs)
    out["timer_registered"] = bpy.app.timers.is_registered(ops.poll_jobs)
    job = [j for j in state.jobs.values() if j.strip == "reel"][0]
    out["frame_range_tag"] = list(job.task.request.frame_range)
    out["overrides"] = job.task.request.overrides

    draws = draw_panel(ui)  # while running
    phases = set()
    # Play Blender's timer loop with the function the operator registered.
    run_timer_loop(ops.poll_jobs, time.time() + args.timeout, out,
                   on_tick=lambda: phases.add(job.last_status.phase))
    finished = draw_panel(ui)
    draws += finished
    out["panel_texts"] = [t for _, t, _, _ in draws if t]
    out["panel_labels"] = [t for call, t, _, _ in draws if call == "label" and t]
    out["panel_label_chars"] = ui.label_chars(bpy.context)
    out["panel_finished"] = finished
    out["panel_face_labels"] = [t for call, t, _, _ in finished
                                if call == "label" and (t or "").startswith("Face")]

    status = job.task.snapshot()
    out["phases"] = sorted(phases)
    out["status"] = {"phase": status.phase, "message": status.message,
                     "output": status.output, "percent": status.percent,
                     "frames_changed": (status.summary or {}).get("frames_changed")}
    cancelled = state.jobs[cancelled_id].task.snapshot()
    out["cancelled"] = {"phase": cancelled.phase, "message": cancelled.message,
                        "flow_run_id": cancelled.flow_run_id}
    out["note"] = job.note
    placed = ops.all_strips(editor).get(job.placed) if job.placed else None
    out["selected"] = sorted(s.name for s in strips(editor) if s.select)
    out["active"] = editor.active_strip.name if editor.active_strip else None
    out["placed_marked"] = placed.get(ops.OUTPUT_PROP) if placed is not None else None

    # QC: the verdict the panel shows, and the report the button opens (path mapped, no browser)
    verdict = ops.job_verdict(job)
    out["summary_qc"] = (status.summary or {}).get("qc")
    out["state_name"] = status.state_name
    out["verdict"] = None if verdict is None else {
        "label": verdict.label(), "flagged": verdict.flagged, "shots": verdict.shots,
        "html": verdict.html, "ok": verdict.ok}
    opened = []
    ops.open_url = lambda url: opened.append(url) or True
    out["open_qc"] = sorted(bpy.ops.dub.open_qc_report(job_id=job.id))
    out["open_qc_last"] = sorted(bpy.ops.dub.open_qc_report())  # the last finished: this one
    out["opened"] = opened

    # Only the dub is selected now: pressing Dub again asks rather than dubbing a dub.
    jobs_before = len(state.jobs)
    out["dub_again_poll"] = bpy.ops.dub.dub_strip.poll()
    out["dub_again_error"] = refusal(bpy.ops.dub.dub_strip)
    # what the button does: background Blender has no dialog and runs execute, which refuses
    out["dub_again_invoked_error"] = refusal(bpy.ops.dub.dub_strip, "INVOKE_DEFAULT")
    out["dub_again_dialog"] = invoke_dub(ops, scene)
    out["panel_after_dub_labels"] = [t for call, t, _, _ in draw_panel(ui)
                                     if call == "label" and t]
    # confirmed, it goes past that check: here to the next one, as no stem is in use
    scene.lipdub.stems[0].use = False
    out["dub_again_confirmed_error"] = refusal(bpy.ops.dub.dub_strip, confirm=True)
    scene.lipdub.stems[0].use = True
    out["jobs_after_dub_again"] = len(state.jobs) - jobs_before
    out["original"] = {"channel": original.channel, "start": original.frame_final_start,
                       "end": original.frame_final_end, "frame_start": original.frame_start}
    out["new_strip"] = None if placed is None else {
        "name": placed.name, "type": placed.type, "channel": placed.channel,
        "filepath": bpy.path.abspath(placed.filepath), "start": placed.frame_final_start,
        "end": placed.frame_final_end, "frame_start": placed.frame_start,
        "frame_duration": placed.frame_duration}
    out["strip_count"] = len(strips(editor))

    # The API key is saved nowhere: not in the .blend, not in userpref.blend.
    bpy.context.preferences.use_preferences_save = True
    bpy.ops.wm.save_userpref()
    bpy.ops.wm.save_as_mainfile(filepath=args.blend)
    out["saved"] = {}
    for path in (args.blend, args.user_config + "/userpref.blend"):
        data = open(path, "rb").read()
        out["saved"][path] = {"secret": SECRET.encode() in data,
                              "server_url": args.server.encode() in data}

    # Symmetric unregister (twice, to show enable/disable round-trips).
    for _ in range(2):
        bpy.ops.preferences.addon_disable(module="lipdub_blender")
        gone = not any(hasattr(bpy.types, n) for n in ("DUB_OT_dub_strip", "DUB_OT_cancel",
                                                       "LIPDUB_PT_panel", "LIPDUB_PG_scene"))
        out.setdefault("unregistered", []).append(
            gone and not hasattr(bpy.types.Scene, "lipdub")
            and not bpy.app.timers.is_registered(ops.poll_jobs) and not state.jobs)
        bpy.ops.preferences.addon_enable(module="lipdub_blender")
        out.setdefault("re_enabled", []).append(hasattr(bpy.types, "DUB_OT_dub_strip"))
    bpy.ops.preferences.addon_disable(module="lipdub_blender")
    out["blender_version"] = bpy.app.version_string


if __name__ == "__main__":
    arguments = parse()
    result: dict = {}
    try:
        main(arguments, result)
        result["ok"] = True
    except Exception:  # noqa: BLE001 - reported to the test through the JSON
        result["ok"] = False
        result["error"] = traceback.format_exc()
    with open(arguments.result, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    sys.stdout.flush()
