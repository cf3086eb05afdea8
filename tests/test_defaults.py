"""One table of defaults: `lipdub sync`'s flags, SyncOptions and the job spec's settings agree."""

from __future__ import annotations

import argparse
from dataclasses import fields

from lipdub.cli import sync as sync_command
from lipdub.pipeline import defaults
from lipdub.pipeline.clip_sync import SyncOptions
from lipdub.pipeline.job import Settings

# SyncOptions field -> (`lipdub sync` flag's dest, job settings field, the table's value)
SHARED = {
    "pads": ("pads", "pads", defaults.PADS),
    "device": ("device", "device", defaults.DEVICE),
    "smooth_window": (None, "smooth_window", defaults.SMOOTH_WINDOW),
    "detect_every": ("detect_every", "detect_every", defaults.DETECT_EVERY),
    "detect_max_side": ("detect_size", "detect_size", defaults.DETECT_SIZE),
    "still_fps": ("fps", None, defaults.STILL_FPS),
    "match_colour": (None, "match_colour", defaults.MATCH_COLOUR),
    "batch_size": ("batch_size", "batch_size", None),
}


def sync_flag_defaults() -> dict:
    parser = argparse.ArgumentParser()
    sync_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sync", "v.mp4", "a.wav", "-o", "o.mp4", "--checkpoint", "g.pth"])
    return vars(args)


def test_the_three_entry_points_read_one_table():
    flags = sync_flag_defaults()
    options = {f.name: f.default for f in fields(SyncOptions)}
    settings = {name: field.default for name, field in Settings.model_fields.items()}
    for option, (flag, setting, value) in SHARED.items():
        assert options[option] == value, option
        if flag is not None:
            assert tuple(flags[flag]) == value if isinstance(value, tuple) else \
                flags[flag] == value, flag
        if setting is not None:
            assert settings[setting] == value, setting


def test_the_cli_builds_the_default_options():
    """No flag given: the options `lipdub sync` builds are SyncOptions' own defaults."""
    args = argparse.Namespace(**sync_flag_defaults())
    built = sync_command.options_from_args(args)
    assert {f.name: getattr(built, f.name) for f in fields(SyncOptions)
            if f.name in SHARED} == {name: value for name, (_, _, value) in SHARED.items()}
