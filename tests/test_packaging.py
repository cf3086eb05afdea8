"""The wheel: one top-level import name (``lipdub``), every module of the repository's layers in
it at its mapped place, the presets and the bundled detector beside them, and a ``lipdub``
command that runs from the wheel alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> its place in the installed package (pyproject.toml's package-dir)
LAYERS = {"lipdub": "lipdub", "cli": "lipdub/cli", "models": "lipdub/models",
          "pipeline": "lipdub/pipeline", "training": "lipdub/training",
          "plugin": "lipdub/plugin", "configs": "lipdub/configs"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the tracked files (a build writes build/ and egg-info
    beside its sources: never into the checkout)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (to copy the tracked files)")
    src = tmp_path_factory.mktemp("src")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out)], capture_output=True, text=True)
    if build.returncode:
        pytest.fail(f"the wheel did not build:\n{build.stderr[-3000:]}")
    (path,) = out.glob("lipdub-*.whl")
    return path


def test_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(top_level).decode().split() == ["lipdub"]
        entry_points = zf.read(top_level.replace("top_level.txt", "entry_points.txt")).decode()
    assert {n.split("/")[0] for n in names} == {"lipdub", wheel.name.split("-py")[0] +
                                                ".dist-info"}
    assert "lipdub = lipdub.cli.main:entry" in entry_points


def test_every_module_and_preset_is_in_the_wheel(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected = set()
    for folder, place in LAYERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml") or path.parent.name == "weights" and \
                    path.suffix == ".pth":
                expected.add(f"{place}/{path.relative_to(ROOT / folder).as_posix()}")
    assert "lipdub/pipeline/media/decode.py" in expected  # the walk itself found the subpackages
    assert "lipdub/configs/weights/retinaface_mobilenet0.25.pth" in expected
    missing = sorted(expected - names)
    assert not missing, f"left out of the wheel (a package missing from pyproject.toml?): {missing}"


def test_the_command_runs_from_the_wheel_alone(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path)
    code = ("import lipdub.cli.main as m, lipdub.pipeline.flows as f\n"
            "from importlib import resources\n"
            f"assert m.__file__.startswith({str(tmp_path)!r}), m.__file__\n"
            "assert resources.files('lipdub.configs').joinpath('weights.yaml').is_file()\n"
            "raise SystemExit(m.main(['--help']))\n")
    # The wheel's folder first on the path: the checkout's editable install is not used.
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sync" in run.stdout and "dub" in run.stdout and "evaluate" in run.stdout
