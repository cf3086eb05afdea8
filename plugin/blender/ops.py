"""Operators: dub the selected strip(s), cancel, edit the stem list; the polling timer.

Nothing here waits on the network: each dub is a :class:`core.DubTask` whose daemon thread
talks to the Prefect server. :func:`poll_jobs`, registered with ``bpy.app.timers``, only reads
the tasks' snapshots, redraws the sidebar and, once a run is COMPLETED, adds the dubbed clip as
a new movie strip above the original with the same timeline position and trims (marked as a
lipdub output, and selected in the original's place).

Blender 3.4 to 5.0: the strips are ``strips`` (4.4+) or ``sequences`` (before; gone in 5.0),
and since 5.0 the sequencer edits its workspace's ``sequencer_scene``, not always the window's
scene.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy.types import Operator

from . import prefs, state, text
from .state import core

TIMER_SECONDS = 0.5  # how often the timer looks at the tasks (the tasks poll the server)
MAX_CHANNEL = 128
OUTPUT_PROP = "lipdub_output"  # custom property of the strips the add-on adds: their source


def edit_scene(context=None):
    """The scene the Sequencer shows: the workspace's ``sequencer_scene`` (Blender 5.0+; None
    until one is chosen), else the window's scene."""
    context = context or bpy.context
    return getattr(context, "sequencer_scene", None) or context.scene


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


def is_lipdub_output(strip) -> bool:
    """A strip the add-on added (its custom property), or named as lipdub names its results
    (``<strip>.dub``, ``<film>_dub_<characters>_<date>.mp4``): dubbing it again dubs a dub."""
    return bool(strip.get(OUTPUT_PROP)) or text.is_dub_output(
        strip.name, getattr(strip, "filepath", ""))


def already_dubbed(names: list[str]) -> str:
    """``reel.dub is a lipdub output``, ``a.dub, b.dub are lipdub outputs``."""
    if len(names) == 1:
        return f"{names[0]} is a lipdub output"
    return f"{', '.join(names)} are lipdub outputs"


def being_dubbed(scene_name: str, strip_name: str) -> state.Job | None:
    """The unfinished job already sent for this strip, if any."""
    return next((j for j in state.unfinished()
                 if j.scene == scene_name and j.strip == strip_name), None)


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
    strip[OUTPUT_PROP] = original.name  # a dub of this strip: asks before dubbing it again
    select_instead(editor, original, strip)
    job.placed = strip.name
    job.note = f"added as {strip.name}, channel {channel}"
    try:  # its own undo step (not possible without a window, e.g. in background mode)
        bpy.ops.ed.undo_push(message=f"lipdub: add {strip.name}")
    except RuntimeError:
        pass


def select_instead(editor, original, new) -> None:
    """The new strip selected (and active) in the original's place: pressing Dub again must
    not send the original a second time beside its dub. Strips selected since are left."""
    original.select = False
    new.select = True
    active = editor.active_strip
    if active is None or active == original:
        editor.active_strip = new


def job_verdict(job: state.Job) -> text.Verdict | None:
    """QC's verdict on a completed dub (None while running, or without a QC report)."""
    status = job.last_status or job.task.snapshot()
    if not status.ok:
        return None
    return text.qc_verdict(status.summary, status.state_name, status.result_text)


def qc_report_path(job: state.Job) -> tuple[str | None, str]:
    """The QC report as this machine sees it (the job's path mapping applied), or None and
    why it cannot be opened."""
    verdict = job_verdict(job)
    if verdict is None or not verdict.html:
        return None, f"{job.strip}: no QC report for this dub"
    local = os.path.normpath(job.task.path_map.to_local(verdict.html))
    if not os.path.isfile(local):
        return None, (f"the QC report {local} is not visible from this machine (the render "
                      f"machines wrote {verdict.html}): check the path mapping in the settings")
    return local, ""


def open_url(url: str) -> bool:
    """Open a URL with the system's browser (the tests replace this to open nothing)."""
    return "FINISHED" in bpy.ops.wm.url_open(url=url)


# ------------------------------------------------------------------------------- operators
class DUB_OT_dub_strip(Operator):
    """Send the selected movie strip(s) to the render machines to be lip-synced to the chosen
    stems; the result comes back as a new strip above each"""

    bl_idname = "dub.dub_strip"
    bl_label = "Dub selected strip"
    bl_options = {"REGISTER"}

    confirm: BoolProperty(
        name="Dub lipdub outputs too", default=False, options={"SKIP_SAVE"},
        description="Send the strip even if it is itself a lipdub output (a dub of a dub); "
                    "the button asks first")

    @classmethod
    def poll(cls, context):
        return bool(target_strips(edit_scene(context)))

    def invoke(self, context, event):
        outputs = [s.name for s in target_strips(edit_scene(context)) if is_lipdub_output(s)]
        if not outputs or self.confirm:
            return self.execute(context)
        self.confirm = True  # the dialog's OK runs execute with this operator's properties
        wm = context.window_manager
        try:  # Blender 4.1+: a title and a message
            return wm.invoke_confirm(self, event, title="Dub a lipdub output?",
                                     message=f"{already_dubbed(outputs)}: dub it again?",
                                     confirm_text="Dub again", icon="WARNING")
        except TypeError:  # 3.4 to 4.0: a plain "OK?" under the operator's label
            return wm.invoke_confirm(self, event)

    def execute(self, context):
        scene = edit_scene(context)
        outputs = [s.name for s in target_strips(scene) if is_lipdub_output(s)]
        if outputs and not self.confirm:
            # From Python or in background mode there is no dialog to ask: refuse, saying how.
            self.report({"ERROR"}, f"{already_dubbed(outputs)}: select the original strip, "
                                   "or confirm to dub the dub (confirm=True from Python)")
            return {"CANCELLED"}
        try:
            p = prefs.get(context)
            client = core.PrefectClient(p.server_url, state.get_api_key(), timeout=p.timeout)
        except (core.PluginError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings = scene.lipdub
        used = [s for s in settings.stems if s.use and (s.character.strip() or s.filepath)]
        stems = {s.character.strip(): os.path.normpath(bpy.path.abspath(s.filepath))
                 for s in used}
        overrides = [{"character": s.character.strip(), "face": {"index": s.face}}
                     for s in used if s.face >= 0]
        path_map = core.PathMap.parse(p.path_map)
        output_dir = bpy.path.abspath(p.output_dir) if p.output_dir else None
        sent, errors = [], []
        for strip in target_strips(scene):
            running = being_dubbed(scene.name, strip.name)
            if running is not None:
                errors.append(f"{strip.name}: already being dubbed "
                              f"({running.task.snapshot().flow_run_name or 'being sent'})")
                continue
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
            state.add(state.Job(task=task, scene=scene.name, strip=strip.name,
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


class DUB_OT_open_qc_report(Operator):
    """Open the QC report of a finished dub (the last one with a report when none is named)
    in the browser"""

    bl_idname = "dub.open_qc_report"
    bl_label = "Open QC report"
    bl_options = {"REGISTER"}

    job_id: StringProperty(options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        job = (state.jobs.get(self.job_id) if self.job_id
               else state.last_finished(where=job_verdict))
        if job is None:
            self.report({"WARNING"}, "no finished dub with a QC report")
            return {"CANCELLED"}
        path, why = qc_report_path(job)
        if path is None:
            self.report({"ERROR"}, why)
            return {"CANCELLED"}
        if not open_url(Path(path).as_uri()):
            self.report({"ERROR"}, f"could not open {path} in a browser")
            return {"CANCELLED"}
        self.report({"INFO"}, f"lipdub: opened {path}")
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
        stems = edit_scene(context).lipdub.stems
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
        stems = edit_scene(context).lipdub.stems
        if 0 <= self.index < len(stems):
            stems.remove(self.index)
        return {"FINISHED"}


CLASSES = (DUB_OT_dub_strip, DUB_OT_cancel, DUB_OT_open_qc_report, DUB_OT_clear_finished,
           DUB_OT_stem_add, DUB_OT_stem_remove)


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
