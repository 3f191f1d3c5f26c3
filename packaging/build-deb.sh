#!/usr/bin/env bash
# Builds the Debian package of the PyInstaller bundle, in one command:
#
#     bash packaging/build-deb.sh        # → dist/vdagent-bridge_<version>_amd64.deb
#
# It builds the bundle first (packaging/build-pyinstaller.sh) when dist/vdagent-bridge is
# missing; packaging/native_packages.py lays out the tree and derives Depends from the
# bundle's ELF files; dpkg-deb writes the package (xz). packaging/README.md says what it holds.
# Environment: VDAGENT_BRIDGE_DIST (the directory of the bundle and the package, default
# dist), VDAGENT_BRIDGE_FAST=1 (gzip -1 instead of xz -6: seconds instead of a minute, 50% larger).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
DIST=${VDAGENT_BRIDGE_DIST:-dist}
for tool in dpkg-deb dpkg-query readelf; do
    command -v "$tool" >/dev/null \
        || { echo "build-deb: $tool is missing (Debian packages dpkg, binutils)" >&2; exit 1; }
done
if [[ ! -x $DIST/vdagent-bridge/vdagent-bridge ]]; then
    VDAGENT_BRIDGE_DIST=$DIST bash packaging/build-pyinstaller.sh
fi
fast=()
[[ ${VDAGENT_BRIDGE_FAST:-} == 1 ]] && fast=(--fast)
deb=$(python3 packaging/native_packages.py deb "$DIST/vdagent-bridge" "$DIST" "${fast[@]}")
echo "built $deb in $((SECONDS - start)) s: $(du -h "$deb" | cut -f1)"
