"""lipdub for DaVinci Resolve: Workspace > Scripts > Edit > lipdub_cancel.

Cancels the flow runs that lipdub_dub is following (they end CANCELLED on the server, and
lipdub_dub reports it and places nothing). Installed beside lipdub_dub.py, the same way.
"""

from __future__ import annotations

import os
import sys


def _bootstrap() -> None:
    candidates = [os.environ.get("LIPDUB_PLUGIN_PATH")]
    try:
        candidates.append(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.realpath(__file__)))))
    except NameError:
        pass
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "plugin", "core", "client.py")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return


if __package__:
    from .lipdub_dub import cancel_main
else:  # run by Resolve as a script
    _bootstrap()
    from plugin.resolve.lipdub_dub import cancel_main  # noqa: E402 - after the path set-up

if __name__ == "__main__":
    cancel_main()
