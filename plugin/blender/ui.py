"""The sidebar panel of the Video Sequence Editor (View > Sidebar, tab "Lipdub").

The sidebar is narrow: every label is fitted to its width (:mod:`.text`): paths shortened in
their middle, messages wrapped over several rows, no label left for Blender to squeeze.
"""

from __future__ import annotations

import bpy
from bpy.types import Panel

from . import ops, prefs, state, text

PHASE_ICONS = {"completed": "CHECKMARK", "failed": "ERROR", "error": "ERROR",
               "cancelled": "X", "cancelling": "X"}
BOX_CHARS = 2  # a box's margins take about this many characters of a label's width
ICON_CHARS = 3  # so does an icon before a label


def label_chars(context) -> int:
    """Label characters that fit the sidebar as it is now (its default width when unknown)."""
    region = getattr(context, "region", None)
    scale = getattr(getattr(context.preferences, "system", None), "ui_scale", 1.0)
    return text.chars_for_width(getattr(region, "width", None), scale)


def icon_label(layout, rows: list[str], icon: str) -> None:
    """Label rows under one icon: the first row has it, the next ones are indented alike."""
    for i, row_text in enumerate(rows):
        layout.label(text=row_text, icon=icon if i == 0 else "BLANK1")


def status_line(job: state.Job) -> str:
    """``Running 42%: dubbing: lip sync, 12 fps, 1 min left``; a completed run is "Completed"
    (its QC verdict, which names the run's state, has a row of its own)."""
    status = job.last_status or job.task.snapshot()
    message = status.message
    label = status.state_name or status.phase
    if status.ok or label.startswith("QC:"):
        label = "Completed"
    verdict = ops.job_verdict(job)
    if verdict is not None:
        message = text.without_verdict(message, _verdict_line(status))
    pct = f" {status.percent:.0f}%" if status.percent is not None and not status.finished else ""
    return f"{label}{pct}: {message}" if message else f"{label}{pct}"


def _verdict_line(status) -> str:
    qc = (status.summary or {}).get("qc") if isinstance(status.summary, dict) else None
    return str(qc.get("verdict") or "") if isinstance(qc, dict) else ""


def job_lines(job: state.Job, width: int = text.DEFAULT_CHARS) -> list[str]:
    """The rows shown for one job: state and progress, flow run, result note (wrapped)."""
    status = job.last_status or job.task.snapshot()
    lines = [status_line(job)]
    if status.flow_run_name:
        lines.append(f"flow run {status.flow_run_name}")
    if job.note:
        lines.append(job.note)
    return [row for line in lines for row in text.wrap(line, width)]


def draw_stems(layout, settings, width: int) -> None:
    box = layout.box()
    for row_text in text.wrap("Stems, aligned to the source file's first frame:",
                              width - BOX_CHARS):
        box.label(text=row_text)
    for i, stem in enumerate(settings.stems):
        col = box.column(align=True)
        row = col.row(align=True)
        row.prop(stem, "use", text="")
        row.prop(stem, "character", text="")
        row.operator("dub.stem_remove", text="", icon="X").index = i
        col.prop(stem, "filepath", text="")
        split = col.split(factor=0.7, align=True)
        split.label(text=text.face_label(stem.face))
        split.prop(stem, "face", text="")
    box.operator("dub.stem_add", text="Add stem", icon="ADD")


def draw_job(box, job: state.Job, width: int) -> None:
    status = job.last_status or job.task.snapshot()
    row = box.row()
    row.label(text=text.fit(job.strip, width - BOX_CHARS - 2 * ICON_CHARS),
              icon=PHASE_ICONS.get(status.phase, "SEQUENCE"))
    if not status.finished:
        row.operator("dub.cancel", text="", icon="CANCEL").job_id = job.id
    if not status.finished and hasattr(box, "progress"):  # Blender 4.0+
        try:
            box.progress(factor=(status.percent or 0.0) / 100.0, type="BAR",
                         text=text.fit(f"{status.state_name or status.phase} "
                                       f"{status.percent or 0:.0f}%", width - BOX_CHARS))
        except TypeError:  # another signature: the text rows below say it all
            pass
    col = box.column(align=True)
    for line in job_lines(job, width - BOX_CHARS):
        col.label(text=line)
    verdict = ops.job_verdict(job)
    if verdict is not None:
        icon_label(box, text.wrap(verdict.label(), width - BOX_CHARS - ICON_CHARS),
                   "CHECKMARK" if verdict.ok else "ERROR")
        if verdict.html:
            box.operator("dub.open_qc_report", text="Open QC report",
                         icon="URL").job_id = job.id


class LIPDUB_PT_panel(Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Lipdub"
    bl_label = "Lipdub"

    def draw(self, context):
        layout = self.layout
        width = label_chars(context)
        try:
            p = prefs.get(context)
            icon_label(layout, text.server_rows(p.deployment, p.server_url, width - ICON_CHARS),
                       "URL")
        except RuntimeError as exc:
            for row_text in text.wrap(str(exc), width):
                layout.label(text=row_text)
        scene = ops.edit_scene(context)
        settings = scene.lipdub
        draw_stems(layout, settings, width)
        layout.prop(settings, "consent", text="Consent")

        layout.operator("dub.dub_strip", icon="PLAY")
        outputs = [s.name for s in ops.target_strips(scene) if ops.is_lipdub_output(s)]
        if outputs:  # the button asks first: say why before it does
            icon_label(layout, text.wrap(ops.already_dubbed(outputs), width - ICON_CHARS),
                       "ERROR")

        if state.jobs:
            box = layout.box()
            for job in state.jobs.values():
                draw_job(box, job, width)
            if any(j.handled for j in state.jobs.values()):
                box.operator("dub.clear_finished", icon="TRASH")


CLASSES = (LIPDUB_PT_panel,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
