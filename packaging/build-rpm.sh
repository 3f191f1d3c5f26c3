#!/usr/bin/env bash
# Builds the RPM package of the PyInstaller bundle, in one command:
#
#     bash packaging/build-rpm.sh        # → dist/vdagent-bridge-<version>-1.x86_64.rpm
#
# The same tree as the .deb (packaging/native_packages.py), packed by rpmbuild (on Debian:
# the package rpm); rpmbuild's ELF dependency generator writes Requires. It builds the bundle
# first when dist/vdagent-bridge is missing. Environment: as build-deb.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
DIST=${VDAGENT_BRIDGE_DIST:-dist}
command -v rpmbuild >/dev/null \
    || { echo "build-rpm: rpmbuild is missing: install it with apt-get install rpm" >&2; exit 1; }
if [[ ! -x $DIST/vdagent-bridge/vdagent-bridge ]]; then
    VDAGENT_BRIDGE_DIST=$DIST bash packaging/build-pyinstaller.sh
fi
fast=()
[[ ${VDAGENT_BRIDGE_FAST:-} == 1 ]] && fast=(--fast)
rpm=$(python3 packaging/native_packages.py rpm "$DIST/vdagent-bridge" "$DIST" "${fast[@]}")
echo "built $rpm in $((SECONDS - start)) s: $(du -h "$rpm" | cut -f1)"
