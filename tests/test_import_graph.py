"""Dependencies point one way: models <- pipeline <- training <- cli; plugin talks to the API only.

Every import of every module is read (relative ones resolved against the module's package), so a
layer is named by the part of ``lipdub`` it reaches: ``lipdub.pipeline.media.decode`` is
``pipeline``. Imports by name at run time (``importlib.import_module``) would hide an edge from
this test, so they are forbidden in the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("cli", "models", "pipeline", "training", "plugin", "configs")

# layer -> what it must not import: lipdub's layers by name, other packages by top-level name.
FORBIDDEN = {
    "models": {"cli", "pipeline", "training", "plugin"},
    "pipeline": {"cli", "training", "plugin"},
    "training": {"cli", "plugin"},
    "plugin": {"cli", "models", "pipeline", "training", "torch", "numpy", "prefect"},
    "cli": {"plugin"},
}


def module_name(path: Path) -> str:
    """The installed dotted name of a repository file: cli/sync.py -> lipdub.cli.sync."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["lipdub", *parts])


def imported_names(path: Path, module: str) -> set[str]:
    """Absolute names of everything ``path`` imports (``from x import y`` gives ``x.y``)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names |= {f"{prefix}.{alias.name}" for alias in node.names}
    return names


def layer_of(name: str) -> str:
    """``lipdub.pipeline.x`` -> ``pipeline``; anything else -> its top-level package name."""
    parts = name.split(".")
    if parts[0] == "lipdub" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return parts[0]


def offences(path: Path) -> list[str]:
    layer = path.relative_to(ROOT).parts[0]
    module = module_name(path)
    bad = sorted({layer_of(n) for n in imported_names(path, module)} & FORBIDDEN.get(layer, set()))
    found = [f"{path.relative_to(ROOT)} imports {bad}"] if bad else []
    if "import_module" in path.read_text():
        found.append(f"{path.relative_to(ROOT)} imports by name (importlib.import_module)")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_one_way(layer):
    offenders = [o for path in sorted((ROOT / layer).rglob("*.py")) for o in offences(path)]
    assert not offenders, "\n".join(offenders)


def test_top_level_names_are_the_layers_and_lipdub():
    """No module of ours imports a layer by its folder name (``import pipeline``): only
    ``lipdub.*`` exists once installed."""
    offenders = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if layer == "plugin" and path.parent.name == "resolve":
                continue  # Resolve runs these as scripts from a checkout (their bootstrap)
            tops = {n.split(".")[0] for n in imported_names(path, module_name(path))}
            if tops & set(LAYERS):
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(tops & set(LAYERS))}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_forbidden_imports(tmp_path):
    pipeline = ROOT / "pipeline" / "media" / "decode.py"
    # relative imports resolve against the module's package
    fake = tmp_path / "x.py"
    fake.write_text("import os\nfrom ...training import data\nfrom ..qc import checks\n"
                    "from lipdub.cli.main import main\nimport torch.nn\n")
    names = imported_names(fake, module_name(pipeline))
    assert names == {"os", "lipdub.training.data", "lipdub.pipeline.qc.checks",
                     "lipdub.cli.main.main", "torch.nn"}
    assert {layer_of(n) for n in names} == {"os", "training", "pipeline", "cli", "torch"}
    assert {layer_of(n) for n in names} & FORBIDDEN["pipeline"] == {"training", "cli"}


SYNC_PATH = ("lipdub.cli.sync", "lipdub.pipeline.clip_sync", "lipdub.pipeline.generator",
             "lipdub.models.wav2lip")


def file_of(module: str) -> Path:
    parts = module.split(".")[1:]
    path = ROOT.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_lipdub_sync_reaches_the_generator_in_five_modules_as_the_map_says():
    assert len(SYNC_PATH) <= 5
    for module, following in zip(SYNC_PATH, SYNC_PATH[1:]):
        names = imported_names(file_of(module), module)
        assert any(n == following or n.startswith(following + ".") for n in names), \
            f"{module} does not import {following}"
    module_map = (ROOT / "pipeline" / "__init__.py").read_text()
    assert ("``lipdub.cli.sync`` -> ``clip_sync.sync_clip`` ->\n  ``generator.LipSyncModel`` -> "
            "``lipdub.models.wav2lip``") in module_map
    listed = {p.stem for p in (ROOT / "pipeline").rglob("*.py") if p.stem != "__init__"}
    unmapped = sorted(m for m in listed if f"``{m}``" not in module_map)
    assert not unmapped, f"modules missing from pipeline/__init__.py's map: {unmapped}"
