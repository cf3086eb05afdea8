"""Add-on preferences (server, deployment, checkpoints, folders) and the per-scene stem list."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import AddonPreferences, PropertyGroup

from . import state

ADDON_ID = __package__  # the add-on's module name: "lipdub_blender" when installed from the zip


def _get_key(self) -> str:
    return state.get_api_key()


def _set_key(self, value: str) -> None:
    state.set_api_key(value)


class LIPDUB_AddonPreferences(AddonPreferences):
    bl_idname = ADDON_ID

    server_url: StringProperty(
        name="Server URL", default="http://127.0.0.1:4200/api",
        description="The Prefect server's API (PREFECT_API_URL of the render machines)")
    # PASSWORD hides the text. get/set keep the value in memory only (state._secrets): a
    # property with get/set has no stored value, so neither the .blend file nor userpref.blend
    # can contain it. SKIP_SAVE is kept for operators' remembered values (it alone does not
    # keep an add-on preference out of userpref.blend).
    api_key: StringProperty(
        name="API key", subtype="PASSWORD", options={"SKIP_SAVE"}, get=_get_key, set=_set_key,
        description="Prefect API key, or user:password for a server with basic auth. Kept in "
                    "memory only (never saved); LIPDUB_API_KEY in the environment sets it")
    deployment: StringProperty(
        name="Deployment", default=state.core.DEFAULT_DEPLOYMENT,
        description="flow/deployment registered by `lipdub serve` (default name: lipdub)")
    generator: StringProperty(
        name="Generator checkpoint", default="wav2lip_gan",
        description="A registry name (wav2lip_gan) or a checkpoint path on the render machines")
    detector: StringProperty(
        name="Face detector", default="",
        description="Detector weights on the render machines (empty: the pipeline's default)")
    output_dir: StringProperty(
        name="Output folder", default="", subtype="DIR_PATH",
        description="Where dubbed clips are written (must be visible from the render machines "
                    "and from here); empty: a lipdub folder beside each source file")
    work_dir: StringProperty(
        name="Cache folder", default="",
        description="The pipeline's cache on the render machines (empty: beside the output). "
                    "Sharing one makes re-dubs of a clip reuse finished work")
    path_map: StringProperty(
        name="Path mapping", default="",
        description="Editor path prefix = render-machine prefix, e.g. "
                    "/Volumes/reels=/mnt/reels; several separated by ';'")
    poll_seconds: FloatProperty(
        name="Poll every (s)", default=1.0, min=0.2, max=30.0,
        description="How often the server is asked about running dubs")
    timeout: FloatProperty(
        name="Timeout (s)", default=10.0, min=1.0, max=120.0,
        description="How long one request to the server may take")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "server_url")
        col.prop(self, "api_key")
        col.prop(self, "deployment")
        col.separator()
        col.prop(self, "generator")
        col.prop(self, "detector")
        col.separator()
        col.prop(self, "output_dir")
        col.prop(self, "work_dir")
        col.prop(self, "path_map")
        row = col.row()
        row.prop(self, "poll_seconds")
        row.prop(self, "timeout")


class LIPDUB_PG_stem(PropertyGroup):
    use: BoolProperty(name="Use", default=True, description="Send this stem with the next dub")
    character: StringProperty(name="Character", default="",
                              description="Character name (letters, digits, - and _)")
    filepath: StringProperty(name="Stem", default="", subtype="FILE_PATH",
                             description="This character's dubbed dialogue, aligned to the "
                                         "source file's first frame")
    face: IntProperty(name="Face", default=-1, min=-1, max=32,
                      description="Which face speaks these lines: -1 lets the pipeline choose "
                                  "(who speaks in the original audio), 0 is the first face "
                                  "from the left, 1 the "
                                  "second, ...")


class LIPDUB_PG_scene(PropertyGroup):
    stems: CollectionProperty(type=LIPDUB_PG_stem)
    stem_index: IntProperty(default=0)
    consent: StringProperty(name="Consent note", default="",
                            description="Rights/consent note carried with the job")


def get(context=None) -> LIPDUB_AddonPreferences:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None:
        raise RuntimeError(f"the {ADDON_ID} add-on is not enabled")
    return addon.preferences


CLASSES = (LIPDUB_AddonPreferences, LIPDUB_PG_stem, LIPDUB_PG_scene)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.lipdub = PointerProperty(type=LIPDUB_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.lipdub
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
