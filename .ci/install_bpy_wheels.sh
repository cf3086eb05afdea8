#!/usr/bin/env bash
# Install Blender 4.5 LTS and 5.0 as Python modules (the `bpy` wheels of PyPI, Python 3.11),
# each in its own virtual environment under ${LIPDUB_BPY_CACHE:-~/.cache/lipdub-bpy}: bpy45 and
# bpy50. tests/test_plugin_blender.py runs the Blender add-on inside them too (Debian's blender
# is 3.4). Each wheel is ~370 MB to download, ~950 MB installed (about 15 s each here).
#
# Idempotent and quiet: a venv whose `import bpy` already answers the wanted version is kept.
# Never fails CI: where Python 3.11, PyPI or the install is missing, it says why and exits 0,
# leaving no venv; those tests then skip, each with its reason. Run it after
# install_packages.sh: `import bpy` needs the X11/GL client libraries (libx11-6, libxi6,
# libxrender1, libxfixes3, libxkbcommon0, libsm6, libgl1) that Debian's blender brings.
set -uo pipefail
CACHE="${LIPDUB_BPY_CACHE:-$HOME/.cache/lipdub-bpy}"
PYTHON="${LIPDUB_BPY_PYTHON:-python3.11}"   # the bpy wheels are built for CPython 3.11 only

say() { echo "install_bpy_wheels.sh: $*" >&2; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "no $PYTHON here (the bpy wheels need CPython 3.11); the bpy add-on tests will skip"
    exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    say "$PYTHON is not CPython 3.11; the bpy add-on tests will skip"
    exit 0
fi
if ! mkdir -p "$CACHE" 2>/dev/null; then
    say "cannot create $CACHE; the bpy add-on tests will skip"
    exit 0
fi

# $1: the venv's folder name, $2: the pip requirement, $3: the version `import bpy` must report
install() {
    local name="$1" requirement="$2" version="$3" venv="$CACHE/$1"
    # Already there: `import bpy` answers (a few seconds) with the wanted major.minor.
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c \
        "import bpy, sys; sys.exit(bpy.app.version_string[:len('$version')] != '$version')" \
        >/dev/null 2>&1; then
        return 0
    fi
    local started=$SECONDS
    rm -rf "$venv"
    # A half-made venv is removed, so the next run tries again rather than skipping it.
    if ! "$PYTHON" -m venv "$venv" >/dev/null 2>&1; then
        say "$PYTHON -m venv $venv failed (python3.11-venv missing?); its tests will skip"
        rm -rf "$venv"
        return 0
    fi
    # --no-cache-dir: the wheel is not kept twice; a stalled download ends (--timeout, and
    # `timeout` over the whole install where coreutils has it)
    local limit=()
    command -v timeout >/dev/null 2>&1 && limit=(timeout 1200)
    if ! "${limit[@]}" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-cache-dir --timeout 60 --retries 3 "$requirement" >"$CACHE/$name.log" 2>&1; then
        say "pip install $requirement failed (PyPI unreachable or no wheel for this platform;" \
            "see $CACHE/$name.log); its tests will skip"
        tail -n 5 "$CACHE/$name.log" >&2
        rm -rf "$venv"
        return 0
    fi
    if ! "$venv/bin/python" -c "import bpy" >>"$CACHE/$name.log" 2>&1; then
        say "$requirement installed but \`import bpy\` fails (see $CACHE/$name.log: a missing" \
            "system library such as libXi, libSM or libGL?); its tests will skip"
        tail -n 5 "$CACHE/$name.log" >&2
        rm -rf "$venv"
        return 0
    fi
    say "$requirement installed in $venv ($((SECONDS - started)) s," \
        "$(du -sh "$venv" 2>/dev/null | cut -f1))"
}

install bpy45 "bpy==4.5.*" 4.5
install bpy50 "bpy==5.0.*" 5.0
exit 0
