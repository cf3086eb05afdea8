"""Argument types shared by several commands."""

from __future__ import annotations

import argparse


def numbers(text: str, count: int, kind=float) -> tuple:
    """``"X,Y"``-style options: exactly ``count`` comma-separated numbers of type ``kind``."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != count:
        raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
    try:
        return tuple(kind(p) for p in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number in {text!r}") from exc
