"""The shape a newcomer can read: no function outside tests longer than 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "models", "pipeline", "training", "plugin", "benchmarks")
LONGEST = 80


def long_functions(path: Path, longest: int = LONGEST) -> list[str]:
    """``file:line name (N lines)`` of each function (methods and nested ones too) longer
    than ``longest`` lines, docstring included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > longest]


def test_no_function_longer_than_80_lines():
    found = [f"{path.parent.relative_to(ROOT)}/{f}" for package in PACKAGES
             for path in sorted((ROOT / package).rglob("*.py")) for f in long_functions(path)]
    assert not found, "split these (a function a reader can hold in view):\n" + "\n".join(found)


def test_the_check_sees_a_long_function(tmp_path):
    source = tmp_path / "long.py"
    source.write_text("def f():\n" + "    x = 1\n" * 80 + "\n\nclass C:\n    def g(self):\n"
                      + "        y = 2\n" * 79 + "\n\ndef h():\n    return 1\n")
    assert long_functions(source) == ["long.py:1 f (81 lines)"]  # g, a method, has 80
    assert long_functions(source, 79) == ["long.py:1 f (81 lines)", "long.py:85 g (80 lines)"]
