#!/usr/bin/env bash
# Builds the PyInstaller one-folder bundle dist/vdagent-bridge/ from this checkout: one command,
#
#     bash packaging/build-pyinstaller.sh
#
# It makes its own virtual environment (build/pyinstaller-venv, reused next time), installs the
# project into it as a wheel would be installed (not editable: the bundle must hold what a
# wheel holds) together with PyInstaller, builds with packaging/vdagent-bridge.spec, and then
# checks that the bundle carries what the app needs on Linux desktops: the xcb and wayland
# platform plugins, the wayland shell-integration and decoration plugins, the svg image format
# and icon engine plugins, and the icons, .desktop and metainfo. Environment: PYTHON (the
# interpreter for the venv, default python3), PYINSTALLER_VENV (default build/pyinstaller-venv),
# VDAGENT_BRIDGE_DIST (where the bundle goes, default dist: the native packages' tests build
# into a directory of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

VENV=${PYINSTALLER_VENV:-build/pyinstaller-venv}
DIST=${VDAGENT_BRIDGE_DIST:-dist}
if [[ ! -x $VENV/bin/python ]]; then
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
"$VENV/bin/python" -m pip install -q "pyinstaller>=6.0"
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps .
"$VENV/bin/python" -m pip install -q .

rm -rf build/pyinstaller "$DIST/vdagent-bridge"
"$VENV/bin/python" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$DIST" --workpath build/pyinstaller packaging/vdagent-bridge.spec

bundle=$DIST/vdagent-bridge
internal=$bundle/_internal
plugins=$internal/PySide6/Qt/plugins
required=(
    "$bundle/vdagent-bridge"
    "$plugins/platforms/libqxcb.so"
    "$plugins/platforms/libqwayland*.so"
    "$plugins/wayland-shell-integration/libxdg-shell.so"
    "$plugins/wayland-decoration-client/*.so"
    "$plugins/xcbglintegrations/*.so"
    "$plugins/imageformats/libqsvg.so"
    "$plugins/iconengines/libqsvgicon.so"
    "$internal/vdagent_bridge/resources/io.github.vdagent_bridge.vdagent_bridge.desktop"
    "$internal/vdagent_bridge/resources/io.github.vdagent_bridge.vdagent_bridge.metainfo.xml"
    "$internal/vdagent_bridge/resources/status/16x16/connected.png"
    "$internal/vdagent_bridge/resources/icons/hicolor/scalable/apps/io.github.vdagent_bridge.vdagent_bridge.svg"
)
missing=0
for pattern in "${required[@]}"; do
    if ! compgen -G "$pattern" >/dev/null; then
        echo "build-pyinstaller: the bundle lacks $pattern" >&2
        missing=1
    fi
done
((missing == 0)) || exit 1

echo "built $bundle in $((SECONDS - start)) s: $(du -sh "$bundle" | cut -f1)," \
    "$(find "$bundle" -type f | wc -l) files"
