"""The sidebar panel of the Video Sequence Editor (View > Sidebar, tab "Lipdub")."""

from __future__ import annotations

import textwrap

import bpy
from bpy.types import Panel

from . import prefs, state

PHASE_ICONS = {"completed": "CHECKMARK", "failed": "ERROR", "error": "ERROR",
               "cancelled": "X", "cancelling": "X"}


def job_lines(job: state.Job, width: int = 48) -> list[str]:
    """The text shown for one job: state and progress, message, result note."""
    status = job.last_status or job.task.snapshot()
    lines = [status.line()]
    if status.flow_run_name:
        lines.append(f"flow run {status.flow_run_name}")
    if job.note:
        lines.append(job.note)
    out = []
    for line in lines:
        out.extend(textwrap.wrap(line, width) or [""])
    return out


class LIPDUB_PT_panel(Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Lipdub"
    bl_label = "Lipdub"

    def draw(self, context):
        layout = self.layout
        try:
            p = prefs.get(context)
            layout.label(text=f"{p.deployment} on {p.server_url}", icon="URL")
        except RuntimeError as exc:
            layout.label(text=str(exc), icon="ERROR")
        settings = context.scene.lipdub

        box = layout.box()
        box.label(text="Stems (aligned to the source's first frame)")
        for i, stem in enumerate(settings.stems):
            row = box.row(align=True)
            row.prop(stem, "use", text="")
            row.prop(stem, "character", text="")
            row.prop(stem, "filepath", text="")
            row.prop(stem, "face", text="Face")
            row.operator("dub.stem_remove", text="", icon="X").index = i
        box.operator("dub.stem_add", icon="ADD")
        layout.prop(settings, "consent")

        layout.operator("dub.dub_strip", icon="PLAY")

        if state.jobs:
            box = layout.box()
            for job in state.jobs.values():
                status = job.last_status or job.task.snapshot()
                row = box.row()
                row.label(text=job.strip, icon=PHASE_ICONS.get(status.phase, "SEQUENCE"))
                if not status.finished:
                    row.operator("dub.cancel", text="", icon="CANCEL").job_id = job.id
                if not status.finished and hasattr(box, "progress"):  # Blender 4.0+
                    try:
                        box.progress(factor=(status.percent or 0.0) / 100.0, type="BAR",
                                     text=f"{status.state_name or status.phase} "
                                          f"{status.percent or 0:.0f}%")
                    except TypeError:  # another signature: the text line below says it all
                        pass
                col = box.column(align=True)
                for line in job_lines(job):
                    col.label(text=line)
            if any(j.handled for j in state.jobs.values()):
                box.operator("dub.clear_finished", icon="TRASH")


CLASSES = (LIPDUB_PT_panel,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
