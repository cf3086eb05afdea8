"""The Blender add-on: its zip, and headless Blenders run against the real Prefect server.

The Blender run (tests/blender_driver.py) installs dist/lipdub_blender.zip into a scratch user
folder, dubs a trimmed strip of the tiny film through the lipdub deployment (the editor seeing
the output folder under another path than the render machines, through the add-on's path
mapping), follows it with the add-on's timer and checks the new strip and its selection, QC's
verdict and the report "Open QC report" opens, that a dub is not dubbed again unasked, that
every panel label fits the sidebar, that the API key is saved nowhere, and that unregistering
removes everything. It runs in three Blenders:

- 3.4, Debian's ``blender`` (.ci/install_packages.sh installs it), skipped where it is not on
  PATH;
- 4.5 LTS and 5.0, the ``bpy`` wheels of PyPI (Blender as a Python module), each in its own
  venv under ``$LIPDUB_BPY_CACHE`` (default ``~/.cache/lipdub-bpy``: ``bpy45``, ``bpy50``) made
  by .ci/install_bpy_wheels.sh, skipped where that venv is absent. The module is Blender in
  background mode: nothing is drawn, so the panel is drawn into a recording layout.
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

from lipdub.plugin.build_blender_zip import build

HERE = Path(__file__).resolve().parent
BLENDER = shutil.which("blender")
BPY_CACHE = Path(os.environ.get("LIPDUB_BPY_CACHE") or Path.home() / ".cache" / "lipdub-bpy")
# id -> (the venv folder under BPY_CACHE, the version `import bpy` must report)
BPY_VENVS = {"bpy-4.5": ("bpy45", "4.5"), "bpy-5.0": ("bpy50", "5.0")}


def blender_command(which: str) -> tuple[list[str], str]:
    """How to run the driver in that Blender, and the version it must report."""
    if which == "blender-3.4":
        return [str(BLENDER), "-b", "--factory-startup", "--python-exit-code", "1", "--python",
                str(HERE / "blender_driver.py"), "--"], ""
    folder, version = BPY_VENVS[which]
    return [str(BPY_CACHE / folder / "bin" / "python"), str(HERE / "blender_driver.py"),
            "--"], version


def blenders() -> list:
    """The Blenders to run the add-on in, each skipped (before the server starts) with its
    reason where it is not installed."""
    params = [pytest.param("blender-3.4", marks=pytest.mark.skipif(
        BLENDER is None, reason="blender is not on PATH (.ci/install_packages.sh installs "
                                "Debian's)"))]
    for which, (folder, version) in BPY_VENVS.items():
        venv = BPY_CACHE / folder
        params.append(pytest.param(which, marks=pytest.mark.skipif(
            not (venv / "bin" / "python").is_file(),
            reason=f"no Blender {version} (bpy wheel) venv at {venv}: bash "
                   ".ci/install_bpy_wheels.sh makes it (LIPDUB_BPY_CACHE moves it)")))
    return params


def test_the_zip_is_a_self_contained_addon(tmp_path):
    path = build(tmp_path / "lipdub_blender.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert {"lipdub_blender/__init__.py", "lipdub_blender/ops.py", "lipdub_blender/prefs.py",
            "lipdub_blender/ui.py", "lipdub_blender/state.py", "lipdub_blender/core/client.py",
            "lipdub_blender/text.py", "lipdub_blender/core/jobs.py",
            "lipdub_blender/core/types.py"} <= names
    bl_info = next(ast.literal_eval(node.value) for node in
                   ast.parse(sources["lipdub_blender/__init__.py"]).body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "bl_info")
    assert bl_info["blender"] == (3, 4, 0) and bl_info["category"] == "Sequencer"
    allowed = {"__future__", "bpy", "os", "base64", "json", "socket", "urllib", "uuid",
               "typing", "dataclasses", "threading", "time", "re", "ntpath", "textwrap",
               "pathlib"}
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                tops = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = {node.module.split(".")[0]}
            elif isinstance(node, ast.ImportFrom) and node.level > 1:
                # the package fallback (lipdub.plugin.core), guarded in state.py only
                assert name == "lipdub_blender/state.py", (name, node.module)
                continue
            else:
                continue
            assert tops <= allowed, (name, tops)  # the stdlib and bpy only
    assert build(tmp_path / "again.zip").read_bytes() == path.read_bytes()  # reproducible


@pytest.mark.parametrize("which", blenders())
def test_addon_in_headless_blender(which, film, synthetic_generator, detector_weights, lipdub,
                                   tmp_path):
    command, version = blender_command(which)
    zip_path = build(tmp_path / "lipdub_blender.zip")
    # The editor sees the render machines' folder through a link of another name: the add-on
    # sends render-side paths and opens results (the dub, its QC report) through its own.
    render = tmp_path / "render"
    render.mkdir()
    editor = tmp_path / "editor"
    editor.symlink_to(render, target_is_directory=True)
    out_dir = editor / "dubbed"
    user = tmp_path / "blender_user"
    result = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "BLENDER_", "LIPDUB_API", "PREFECT_API_KEY"))}
    env.update(BLENDER_USER_CONFIG=str(user / "config"), BLENDER_USER_SCRIPTS=str(user / "s"),
               BLENDER_USER_DATAFILES=str(user / "data"))
    cmd = [*command,
           "--zip", str(zip_path), "--server", lipdub.api_url, "--film", str(film.path),
           "--stem", str(film.stem), "--generator", str(synthetic_generator),
           "--detector", str(detector_weights), "--work-dir", str(film.cache),
           "--out-dir", str(out_dir), "--path-map", f"{editor}={render}",
           "--blend", str(tmp_path / "edit.blend"),
           "--result", str(result), "--user-config", str(user / "config")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=400)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert result.exists(), log
    seen = json.loads(result.read_text())
    assert seen["ok"], seen.get("error", "") + log
    assert proc.returncode == 0, log
    assert seen["blender_version"].startswith(version), seen["blender_version"]

    # registered from the zip alone (the legacy add-on path of 4.2+ too)
    assert seen["enabled"] and all(seen["registered"].values()) and seen["scene_prop"]
    assert seen["core_module"] == "lipdub_blender.core" and not seen["plugin_imported"]
    assert seen["poll_without_selection"] is False
    assert seen.get("sequencer_scene", True)  # 5.0: the add-on works in the VSE's own scene

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

    # the dubbed clip is above the original, at the same frames, the only one selected
    new, orig = seen["new_strip"], seen["original"]
    assert new is not None, seen["note"]
    output = Path(seen["status"]["output"])
    assert output.parent == out_dir and output.is_file()
    assert (render / "dubbed" / output.name).is_file()  # written where the render side said
    assert new["type"] == "MOVIE" and Path(new["filepath"]) == output
    assert new["channel"] == orig["channel"] + 1
    assert (new["start"], new["end"]) == (orig["start"], orig["end"]) == (15, 55)
    assert new["frame_start"] == orig["frame_start"] == 10
    assert new["frame_duration"] == film.frames
    assert seen["strip_count"] == 3
    assert seen["selected"] == [new["name"]] == ["reel.dub"] and seen["active"] == "reel.dub"
    assert seen["placed_marked"] == "reel"  # the custom property naming its source strip

    # QC's verdict as the panel shows it, and the report opened through the path mapping
    qc = seen["summary_qc"]
    verdict = seen["verdict"]
    assert qc and verdict, (qc, verdict)
    assert (verdict["flagged"], verdict["shots"]) == (qc["shots_flagged"], qc["shots"])
    assert verdict["ok"] == (qc["shots_flagged"] == 0)
    assert seen["state_name"] == ("Completed" if verdict["ok"] else
                                  f"QC: {qc['shots_flagged']} of {qc['shots']} shots flagged")
    assert verdict["label"] in " ".join(seen["panel_labels"])  # over one row or two
    assert Path(qc["html"]).parent.parent == render / "dubbed"  # as the render side wrote it
    local_html = editor / Path(qc["html"]).relative_to(render)
    assert seen["open_qc"] == seen["open_qc_last"] == ["FINISHED"]
    assert seen["opened"] == [local_html.as_uri()] * 2
    finished = seen["panel_finished"]
    assert ["operator", "Open QC report", "URL", "dub.open_qc_report"] in finished

    # dubbing the dub again: refused with a reason unless confirmed; no job sent either way
    assert seen["dub_again_poll"] is True
    assert "reel.dub is a lipdub output" in seen["dub_again_error"], seen["dub_again_error"]
    assert "confirm" in seen["dub_again_error"]
    assert seen["dub_again_invoked_error"] == seen["dub_again_error"]
    dialog = seen["dub_again_dialog"]  # with a window: a confirm dialog, nothing sent yet
    assert dialog["result"] == ["RUNNING_MODAL"] and dialog["executed"] == 0, dialog
    assert len(dialog["asked"]) == 1 and dialog["asked"][0]["confirm_set"] is True
    assert "reel.dub is a lipdub output" in dialog["asked"][0]["message"]
    assert "reel.dub is a lipdub output" in " ".join(seen["panel_after_dub_labels"])
    assert "no stem chosen" in seen["dub_again_confirmed_error"]
    assert "lipdub output" not in seen["dub_again_confirmed_error"]
    assert seen["jobs_after_dub_again"] == 0

    # every label fits the sidebar's width (30 characters in background mode, an icon taking
    # 3 of them); the stem's face says what its number means
    width = seen["panel_label_chars"]
    assert width == 30
    too_long = [t for call, t, icon, _ in finished if call == "label"
                and len(t or "") + (3 if icon else 0) > width]
    assert not too_long, too_long
    assert not [t for t in seen["panel_labels"] if len(t) > width]
    assert seen["panel_face_labels"] == ["Face: 1st from left"]

    # the API key is in neither file (the server URL, a normal preference, is in userpref)
    saved = seen["saved"]
    assert not any(v["secret"] for v in saved.values()), saved
    assert saved[str(user / "config" / "userpref.blend")]["server_url"]

    assert seen["unregistered"] == [True, True] and seen["re_enabled"] == [True, True]
