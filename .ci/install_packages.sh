#!/usr/bin/env bash
# Install the Debian packages some tests drive for real, when missing: Blender (the add-on test,
# tests/test_plugin_blender.py), PostgreSQL (the render-farm tests start their own cluster,
# tests/test_fan_out.py) and Chromium (qc.html rendered headless, tests/test_qc_rendered.py).
# Idempotent and quiet; needs root (or sudo) and apt-get. Elsewhere it says so and exits 0: those
# tests then skip, each with its reason.
set -euo pipefail
wanted=()
command -v blender >/dev/null 2>&1 || wanted+=(blender)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || wanted+=(postgresql)
command -v chromium >/dev/null 2>&1 || wanted+=(chromium)
if [ ${#wanted[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_packages.sh: no apt-get here; install ${wanted[*]} yourself to run the" \
         "tests that need them (they skip without)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_packages.sh: not root and no sudo; tests needing ${wanted[*]} will skip" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# A failed install must not fail CI: the tests that need the package skip, and say why.
$SUDO apt-get update -qq >/dev/null || true
for package in "${wanted[@]}"; do
    if ! $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null; then
        echo "install_packages.sh: apt-get could not install $package; its tests will skip" >&2
    fi
done
exit 0
