"""The editors' front ends and the film flow agree: one contract, two copies, pinned here.

The plugin keeps its own copy (stdlib only, vendored into the Blender add-on; the pipeline
never imports the plugin), so this test reads only the two contract modules and the sources.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lipdub.pipeline import contract as pipeline_side
from lipdub.plugin.core import contract as plugin_side

ROOT = Path(__file__).resolve().parents[1]


def public(module) -> dict:
    return {k: v for k, v in vars(module).items() if k.isupper()}


def test_both_copies_say_the_same():
    assert public(pipeline_side) == public(plugin_side)
    assert {"FLOW", "DEPLOYMENT", "PROGRESS_KEY", "RESULT_KEY", "CHARACTER_NAME"} <= \
        public(pipeline_side).keys()


@pytest.mark.parametrize("name, allowed", [
    ("anna", True), ("Ben_2", True), ("jean-luc", True), ("Zoé", True), ("Łukasz", True),
    ("", False), ("two words", False), ("a/b", False), ("a.b", False), ("tab\t", False),
    ("name\n", False),
])
def test_character_names_are_judged_alike(name, allowed):
    """The job spec (pydantic) and the plugin's request check give one verdict per name."""
    from pydantic import ValidationError

    from lipdub.pipeline.job import JobSpec
    from lipdub.plugin.core.jobs import DubRequest

    try:  # other fields may be missing: only the verdict on the name counts
        JobSpec.model_validate({"film": "f.mp4", "stems": {name: "s.wav"},
                                "output": {"path": "o.mp4"}})
        spec_ok = True
    except ValidationError as exc:
        spec_ok = "character name" not in str(exc)
    request = DubRequest(film="/films/f.mp4", stems={name: "/stems/s.wav"},
                         output="/out/o.mp4", generator="/weights/wav2lip.pth")
    plugin_ok = not any("character name" in p for p in request.problems(check_files=False))
    assert (spec_ok, plugin_ok) == (allowed, allowed)


@pytest.mark.parametrize("value", ["lipdub-progress", "lipdub-result", "lipdub-qc",
                                   "dub_film/lipdub", "dub_film"])
def test_the_contract_is_spelled_out_only_in_the_contracts(value):
    """Everyone else reads the constants (a renamed key cannot leave one side behind): no
    string constant of cli/, pipeline/ or plugin/ is one of the contract's values (``__all__``
    and prose in docstrings aside)."""
    offenders = []
    for folder in ("cli", "pipeline", "plugin"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name != "contract.py" and value in string_constants(path):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"{value!r} written outside the contracts: {offenders}"


def string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    exported = {n.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in node.targets)
                for n in ast.walk(node.value) if isinstance(n, ast.Constant)}
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)} - exported


def test_the_source_check_sees_a_key(tmp_path):
    source = tmp_path / "x.py"
    source.write_text('"""Reads "lipdub-progress"."""\n__all__ = ["dub_film"]\n'
                      'KEY = "lipdub-progress"\n')
    assert {"lipdub-progress", "dub_film"} & string_constants(source) == {"lipdub-progress"}
