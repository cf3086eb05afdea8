"""Build the installable Blender add-on: ``dist/lipdub_blender.zip``.

The zip holds one package, ``lipdub_blender/``: plugin/blender's modules plus plugin/core
vendored as ``lipdub_blender/core`` (the add-on finds it there before trying ``plugin.core``),
so it needs nothing but Blender's own Python. The archive is reproducible (sorted entries,
fixed timestamps). Stdlib only: ``python3 plugin/build_blender_zip.py [--out PATH]`` or
``make plugin-zip``.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent
PACKAGE = "lipdub_blender"
DEFAULT_OUT = PLUGIN.parent / "dist" / "lipdub_blender.zip"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def entries() -> list[tuple[str, Path]]:
    """(name in the zip, file) for every file of the add-on."""
    files = [(f"{PACKAGE}/{p.name}", p) for p in sorted((PLUGIN / "blender").glob("*.py"))]
    files += [(f"{PACKAGE}/core/{p.name}", p) for p in sorted((PLUGIN / "core").glob("*.py"))]
    readme = PLUGIN / "README.md"
    if readme.is_file():
        files.append((f"{PACKAGE}/README.md", readme))
    return files


def build(out: Path = DEFAULT_OUT) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in entries():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"zip to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    path = build(args.out)
    print(f"{path} ({len(entries())} files): install it with Blender's Edit > Preferences > "
          "Add-ons > Install")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
