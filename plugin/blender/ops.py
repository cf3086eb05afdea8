"""Operators: dub the selected strip(s), cancel, edit the stem list; the polling timer.

Nothing here waits on the network: each dub is a :class:`core.DubTask` whose daemon thread
talks to the Prefect server. :func:`poll_jobs`, registered with ``bpy.app.timers``, only reads
the tasks' snapshots, redraws the sidebar and, once a run is COMPLETED, adds the dubbed clip as
a new movie strip above the original with the same timeline position and trims.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import IntProperty, StringProperty
from bpy.types import Operator

from . import prefs, state
from .state import core

TIMER_SECONDS = 0.5  # how often the timer looks at the tasks (the tasks poll the server)
MAX_CHANNEL = 128


# ------------------------------------------------------------------ VSE API across versions
def top_strips(editor):
    """The top-level strip collection: ``strips`` (Blender 4.4+) or ``sequences`` (older)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(editor):
    """Every strip, meta strips' contents included: ``strips_all`` or ``sequences_all``."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def target_strips(scene) -> list:
    """Selected movie strips at the top level (the active one if none is selected)."""
    editor = scene.sequence_editor if scene else None
    if editor is None:
        return []
    movies = [s for s in top_strips(editor) if s.type == "MOVIE"]
    chosen = [s for s in movies if s.select]
    active = editor.active_strip
    if not chosen and active is not None and active.type == "MOVIE" and active in movies:
        chosen = [active]
    return chosen


def source_path(strip) -> str:
    library = getattr(strip.id_data, "library", None)
    return os.path.normpath(bpy.path.abspath(strip.filepath, library=library))


def free_channel_above(editor, channel: int, start: int, end: int) -> int:
    """The lowest channel above ``channel`` with nothing in [start, end)."""
    for ch in range(channel + 1, MAX_CHANNEL + 1):
        if not any(s.channel == ch and s.frame_final_start < end and s.frame_final_end > start
                   for s in top_strips(editor)):
            return ch
    raise RuntimeError("no free channel above the strip")


# ------------------------------------------------------------------------------- the timer
def poll_jobs():
    """``bpy.app.timers`` callback: cheap, never blocks (the network is in the tasks' threads).

    Returns the delay to the next call, or None (stop) when every job has been dealt with.
    """
    changed = False
    for job in list(state.jobs.values()):
        status = job.task.snapshot()
        if job.last_status != status:
            job.last_status = status
            changed = True
        if status.finished and not job.handled:
            job.handled = True
            if status.ok:
                try:
                    place_result(job, status)
                except Exception as exc:  # noqa: BLE001 - shown in the panel, not lost
                    job.note = f"could not add the strip: {exc}; the dub is at {status.output}"
            print(f"lipdub: {job.strip}: {status.line()}" + (f" {job.note}" if job.note else ""))
    if changed:
        redraw()
    return TIMER_SECONDS if state.unfinished() else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(poll_jobs):
        bpy.app.timers.register(poll_jobs, first_interval=TIMER_SECONDS, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(poll_jobs):
        bpy.app.timers.unregister(poll_jobs)


def redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


def place_result(job: state.Job, status) -> None:
    """Add the dubbed clip above the original strip, same position and trims."""
    scene = bpy.data.scenes.get(job.scene)
    editor = scene.sequence_editor if scene else None
    original = all_strips(editor).get(job.strip) if editor else None
    if original is None:
        job.note = f"the original strip is gone; the dub is at {status.output}"
        return
    start, end = original.frame_final_start, original.frame_final_end
    channel = free_channel_above(editor, original.channel, start, end)
    name = f"{original.name}.dub"
    strip = top_strips(editor).new_movie(name=name, filepath=status.output, channel=channel,
                                         frame_start=int(round(original.frame_start)))
    strip.frame_final_start = start
    strip.frame_final_end = end
    if hasattr(strip, "color_tag"):
        strip.color_tag = "COLOR_04"
    job.placed = strip.name
    job.note = f"added as {strip.name} on channel {channel}"
    try:  # its own undo step (not possible without a window, e.g. in background mode)
        bpy.ops.ed.undo_push(message=f"lipdub: add {strip.name}")
    except RuntimeError:
        pass


# ------------------------------------------------------------------------------- operators
class DUB_OT_dub_strip(Operator):
    """Send the selected movie strip(s) to the render machines to be lip-synced to the chosen
    stems; the result comes back as a new strip above each"""

    bl_idname = "dub.dub_strip"
    bl_label = "Dub selected strip"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return bool(target_strips(context.scene))

    def execute(self, context):
        try:
            p = prefs.get(context)
            client = core.PrefectClient(p.server_url, state.get_api_key(), timeout=p.timeout)
        except (core.PluginError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings = context.scene.lipdub
        used = [s for s in settings.stems if s.use and (s.character.strip() or s.filepath)]
        stems = {s.character.strip(): os.path.normpath(bpy.path.abspath(s.filepath))
                 for s in used}
        overrides = [{"character": s.character.strip(), "face": {"index": s.face}}
                     for s in used if s.face >= 0]
        path_map = core.PathMap.parse(p.path_map)
        output_dir = bpy.path.abspath(p.output_dir) if p.output_dir else None
        sent, errors = [], []
        for strip in target_strips(context.scene):
            film = source_path(strip)
            first = int(strip.frame_offset_start)
            request = core.DubRequest(
                film=film, stems=stems,
                output=core.default_output_path(film, list(stems), folder=output_dir),
                generator=p.generator.strip(), detector=p.detector.strip() or None,
                work_dir=p.work_dir.strip() or None, consent=settings.consent.strip() or None,
                frame_range=(first, first + int(strip.frame_final_duration) - 1),
                overrides=overrides)
            problems = request.problems()
            if problems:
                errors.append(f"{strip.name}: " + "; ".join(problems))
                continue
            task = core.DubTask(client, p.deployment.strip(), request, path_map=path_map,
                                poll_interval=p.poll_seconds, origin="blender")
            state.add(state.Job(task=task, scene=context.scene.name, strip=strip.name,
                                channel=strip.channel,
                                frame_start=int(round(strip.frame_start)),
                                final_start=strip.frame_final_start,
                                final_end=strip.frame_final_end, source=film))
            task.start()
            sent.append(strip.name)
        if sent:
            ensure_timer()
            redraw()
        for error in errors:
            self.report({"ERROR"}, error)
        if not sent:
            return {"CANCELLED"}
        self.report({"INFO"}, f"lipdub: sent {', '.join(sent)} to {p.deployment}")
        return {"FINISHED"}


class DUB_OT_cancel(Operator):
    """Cancel a dub on the render machines (all running dubs when none is named)"""

    bl_idname = "dub.cancel"
    bl_label = "Cancel dub"
    bl_options = {"REGISTER"}

    job_id: StringProperty(options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        jobs = [state.jobs[self.job_id]] if self.job_id in state.jobs else (
            [] if self.job_id else state.unfinished())
        if not jobs:
            self.report({"WARNING"}, "no running dub to cancel")
            return {"CANCELLED"}
        for job in jobs:
            job.task.cancel()  # the task's thread tells the server
        self.report({"INFO"}, f"lipdub: cancelling {len(jobs)} dub(s)")
        return {"FINISHED"}


class DUB_OT_clear_finished(Operator):
    """Remove finished dubs from the panel"""

    bl_idname = "dub.clear_finished"
    bl_label = "Clear finished"
    bl_options = {"REGISTER"}

    def execute(self, context):
        state.clear_finished()
        redraw()
        return {"FINISHED"}


class DUB_OT_stem_add(Operator):
    """Add a character and its dubbed dialogue stem"""

    bl_idname = "dub.stem_add"
    bl_label = "Add stem"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        stems = context.scene.lipdub.stems
        stem = stems.add()
        stem.character = f"character{len(stems)}"
        return {"FINISHED"}


class DUB_OT_stem_remove(Operator):
    """Remove this stem from the list"""

    bl_idname = "dub.stem_remove"
    bl_label = "Remove stem"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        stems = context.scene.lipdub.stems
        if 0 <= self.index < len(stems):
            stems.remove(self.index)
        return {"FINISHED"}


CLASSES = (DUB_OT_dub_strip, DUB_OT_cancel, DUB_OT_clear_finished, DUB_OT_stem_add,
           DUB_OT_stem_remove)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    stop_timer()
    running = state.forget_all()
    for job in running:
        run = job.task.snapshot().flow_run_name
        if run:
            print(f"lipdub: no longer following {job.strip} (flow run {run} goes on)")
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
