"""Run inside Blender (``blender -b --factory-startup --python-exit-code 1 --python THIS -- ARGS``)
by tests/test_plugin_blender.py: install the add-on zip, dub a strip through the real Prefect
server, check the new strip, check the API key is saved nowhere, unregister.

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
    p.add_argument("--timeout", type=float, default=240)
    return p.parse_args(argv)


def strips(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


class FakeLayout:
    """Records what a Panel.draw asks of its layout (background Blender draws nothing)."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append((name, kwargs.get("text")))
            return FakeLayout(self.log)
        return call

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)


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

    out["core_module"] = state.core.__name__  # the vendored copy, not plugin.core
    out["plugin_imported"] = any(m == "plugin" or m.startswith("plugin.") for m in sys.modules)
    out["registered"] = {name: hasattr(bpy.types, name) for name in
                         ("DUB_OT_dub_strip", "DUB_OT_cancel", "LIPDUB_PT_panel")}
    out["scene_prop"] = hasattr(bpy.types.Scene, "lipdub")
    out["bl_info_blender"] = list(lipdub_blender.bl_info["blender"])

    prefs = bpy.context.preferences.addons["lipdub_blender"].preferences
    prefs.server_url = args.server
    prefs.api_key = SECRET  # the test server has no auth: the header is ignored
    prefs.generator = args.generator
    prefs.detector = args.detector
    prefs.work_dir = args.work_dir
    prefs.output_dir = args.out_dir
    prefs.poll_seconds = 0.3

    scene = bpy.context.scene
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

    draws = []
    panel_self = type("PanelSelf", (), {})()
    panel_self.layout = FakeLayout(draws)
    ui.LIPDUB_PT_panel.draw(panel_self, bpy.context)  # while running
    phases = set()
    # Play Blender's timer loop with the function the operator registered.
    run_timer_loop(ops.poll_jobs, time.time() + args.timeout, out,
                   on_tick=lambda: phases.add(job.last_status.phase))
    ui.LIPDUB_PT_panel.draw(panel_self, bpy.context)  # finished
    out["panel_texts"] = [t for _, t in draws if t]

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
