"""The Blender add-on: its zip, and a headless Blender run against the real Prefect server.

The Blender run (tests/blender_driver.py) installs dist/lipdub_blender.zip into a scratch user
folder, dubs a trimmed strip of the tiny film through the lipdub deployment, follows it with
the add-on's timer and checks the new strip, that the API key is saved nowhere, and that
unregistering removes everything. Skipped where ``blender`` is not on PATH
(.ci/install_packages.sh installs Debian's).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from plugin.build_blender_zip import build

HERE = Path(__file__).resolve().parent
BLENDER = shutil.which("blender")


def test_the_zip_is_a_self_contained_addon(tmp_path):
    path = build(tmp_path / "lipdub_blender.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert {"lipdub_blender/__init__.py", "lipdub_blender/ops.py", "lipdub_blender/prefs.py",
            "lipdub_blender/ui.py", "lipdub_blender/state.py", "lipdub_blender/core/client.py",
            "lipdub_blender/core/jobs.py", "lipdub_blender/core/types.py"} <= names
    bl_info = next(ast.literal_eval(node.value) for node in
                   ast.parse(sources["lipdub_blender/__init__.py"]).body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "bl_info")
    assert bl_info["blender"] == (3, 4, 0) and bl_info["category"] == "Sequencer"
    allowed = {"__future__", "bpy", "os", "base64", "json", "socket", "urllib", "uuid",
               "typing", "dataclasses", "threading", "time", "re", "ntpath", "textwrap"}
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                tops = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = {node.module.split(".")[0]}
            else:
                continue
            if tops == {"plugin"}:  # the checkout fallback, guarded in state.py only
                assert name == "lipdub_blender/state.py"
                continue
            assert tops <= allowed, (name, tops)  # the stdlib and bpy only
    assert build(tmp_path / "again.zip").read_bytes() == path.read_bytes()  # reproducible


@pytest.mark.skipif(BLENDER is None, reason="blender is not on PATH (.ci/install_packages.sh)")
def test_addon_in_headless_blender(film, synthetic_generator, detector_weights, lipdub,
                                   tmp_path):
    zip_path = build(tmp_path / "lipdub_blender.zip")
    out_dir = tmp_path / "dubbed"
    user = tmp_path / "blender_user"
    result = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "BLENDER_", "LIPDUB_API", "PREFECT_API_KEY"))}
    env.update(BLENDER_USER_CONFIG=str(user / "config"), BLENDER_USER_SCRIPTS=str(user / "s"),
               BLENDER_USER_DATAFILES=str(user / "data"))
    cmd = [BLENDER, "-b", "--factory-startup", "--python-exit-code", "1",
           "--python", str(HERE / "blender_driver.py"), "--",
           "--zip", str(zip_path), "--server", lipdub.api_url, "--film", str(film.path),
           "--stem", str(film.stem), "--generator", str(synthetic_generator),
           "--detector", str(detector_weights), "--work-dir", str(film.cache),
           "--out-dir", str(out_dir), "--blend", str(tmp_path / "edit.blend"),
           "--result", str(result), "--user-config", str(user / "config")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=400)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert result.exists(), log
    seen = json.loads(result.read_text())
    assert seen["ok"], seen.get("error", "") + log
    assert proc.returncode == 0, log

    # registered from the zip alone
    assert seen["enabled"] and all(seen["registered"].values()) and seen["scene_prop"]
    assert seen["core_module"] == "lipdub_blender.core" and not seen["plugin_imported"]
    assert seen["poll_without_selection"] is False

    # the operator returns at once; a timer follows the run
    assert seen["operator_result"] == ["FINISHED"] and seen["operator_s"] < 1.0
    assert seen["timer_registered"] and seen["timer_calls"] >= 2
    # never blocks the UI: polls are instant; the slowest call is the one adding the strip
    durations = sorted(seen["timer_durations_s"])
    assert durations[-2] < 0.1 and durations[-1] < 1.0, durations[-3:]
    assert seen["frame_range_tag"] == [5, 44]
    assert seen["overrides"] == [{"character": "anna", "face": {"index": 0}}]
    assert seen["status"]["phase"] == "completed", seen["status"]
    assert seen["status"]["frames_changed"] > 0  # the lip-sync ran
    assert seen["cancelled"]["phase"] == "cancelled", seen["cancelled"]
    assert seen["cancelled"]["flow_run_id"]  # cancelled on the server, not before sending
    assert any("reel" in t for t in seen["panel_texts"])
    assert any(t.startswith("Completed") for t in seen["panel_texts"]), seen["panel_texts"]

    # the dubbed clip is above the original, at the same frames
    new, orig = seen["new_strip"], seen["original"]
    assert new is not None, seen["note"]
    output = Path(seen["status"]["output"])
    assert output.parent == out_dir and output.is_file()
    assert new["type"] == "MOVIE" and Path(new["filepath"]) == output
    assert new["channel"] == orig["channel"] + 1
    assert (new["start"], new["end"]) == (orig["start"], orig["end"]) == (15, 55)
    assert new["frame_start"] == orig["frame_start"] == 10
    assert new["frame_duration"] == film.frames
    assert seen["strip_count"] == 3

    # the API key is in neither file (the server URL, a normal preference, is in userpref)
    saved = seen["saved"]
    assert not any(v["secret"] for v in saved.values()), saved
    assert saved[str(user / "config" / "userpref.blend")]["server_url"]

    assert seen["unregistered"] == [True, True] and seen["re_enabled"] == [True, True]
