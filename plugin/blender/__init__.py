"""lipdub for Blender's Video Sequence Editor: send a strip to the studio's render machines
(the ``dub_film`` Prefect deployment), follow it, get the dubbed clip back above it.

Install ``dist/lipdub_blender.zip`` (``make plugin-zip``) with Edit > Preferences > Add-ons >
Install; the zip carries plugin/core, so the add-on needs nothing but Blender's own Python.
"""

bl_info = {
    "name": "lipdub: visual dubbing",
    "author": "lipdub",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Video Sequencer > Sidebar > Lipdub",
    "description": "Lip-sync selected strips to dubbed dialogue stems on the studio's render "
                   "machines (Prefect), and bring the result back onto the timeline",
    "category": "Sequencer",
}

from . import ops, prefs, ui  # noqa: E402 - bl_info must be a literal at the top

_MODULES = (prefs, ops, ui)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
