#!/usr/bin/env bash
# Runs every test of vdagent-bridge on a fresh Debian 12 machine (or this one).
#
# It installs what the tests need and starts nothing it does not stop:
#   - Debian packages (as root, only the missing ones): the real guest agent (spice-vdagent),
#     Xvfb, xclip, xdotool, dbus, x11 utilities, imagemagick, the libraries Qt's xcb
#     platform plugin loads, and the validators of the .desktop and metainfo files
#     (desktop-file-utils, appstream) and gtk-update-icon-cache; libvirt's daemon, client and
#     headers (the libvirt tests start their own unprivileged daemons, as user vdbtest);
#   - a virtual environment in .venv with the project and its test extra.
# The end-to-end tests start their own Xvfb, dbus, relay and agent processes per test and stop
# exactly those. Extra arguments go to pytest (e.g. `bash tests/run.sh -k framing`).
# The tests run as two pytest runs at once (below).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
    spice-vdagent xvfb xclip x11-utils x11-xserver-utils xdotool dbus-daemon imagemagick icewm
    libspice-protocol-dev
    libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-shape0
    libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-xkb1
    libegl1 libgl1 libfontconfig1 libdbus-1-3
    desktop-file-utils appstream gtk-update-icon-cache
    rpm lintian rpmlint patchelf binutils  # the .deb/.rpm builds and their tests
)

# The libvirt tests (tests/libvirt) run their own session daemons; libvirt-python (in the
# test extra) builds against libvirt-dev with pkg-config.
DEBIAN_PACKAGES+=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config)
# The remote libvirt tests (tests/libvirt/test_libvirt_remote.py) reach a session daemon over
# qemu+ssh:// through their own sshd on localhost; with socket= libvirt runs nc -U there.
DEBIAN_PACKAGES+=(openssh-server openssh-client netcat-openbsd)

# The Wayland tests (tests/wayland) run headless sway, KWin and mutter with XWayland, wl-clipboard,
# and xterm / wtype for focus and the seat's keyboard.
DEBIAN_PACKAGES+=(sway xwayland wl-clipboard grim wtype foot kwin-wayland xterm mutter)

# The real-QEMU migration tests (tests/qemu) need QEMU and what goes into the guest image.
mapfile -t QEMU_PACKAGES < <(python3 tests/qemu/guest_image.py --packages)
DEBIAN_PACKAGES+=("${QEMU_PACKAGES[@]}")

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
# The kernel for the QEMU guest image is fetched with apt-get download: it needs package lists.
if [[ $(id -u) -eq 0 ]] && ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt-get update -qq
fi
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tests/run.sh: missing Debian packages (run as root to install): ${missing[*]}" >&2
        exit 1
    fi
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The spice-vdagent postinst tries to start the system service; policy-rc.d refuses that
    # on build machines, and the tests never use the system service anyway.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# Static checks first: lint, strict typing and the layering contracts of the package (fast,
# and they fail loudly).
.venv/bin/ruff check app tests benchmarks packaging setup.py
.venv/bin/mypy
.venv/bin/lint-imports --no-cache

# Two pytest runs at once, one per core: the VM tests (tests/libvirt, tests/qemu: TCG guests,
# one after another, sharing the guest image the first builds) and the rest, at the lowest CPU
# and I/O priority; then, alone, the plain-QEMU migrations (tests/qemu/test_migration.py: three
# QEMUs at once, and the one test that stalled beside the other run: a guest that stopped
# answering after its ninth of ten migrations, a monitor that lost its greeting). The VM run's
# output follows the other's. Arguments naming test files or directories, or
# VDAGENT_TEST_LANES=1, give one plain run.
for arg in "$@"; do
    [[ $arg != -* && -e ${arg%%::*} ]] && exec .venv/bin/python -m pytest "$@"
done
[[ ${VDAGENT_TEST_LANES:-2} == 1 ]] && exec .venv/bin/python -m pytest "$@"

alone=tests/qemu/test_migration.py
vm_log=$(mktemp -t vdagent-bridge-vm-tests.XXXXXX)
.venv/bin/python -m pytest "$@" tests/libvirt tests/qemu --ignore="$alone" >"$vm_log" 2>&1 &
vm_run=$!
trap 'kill "$vm_run" 2>/dev/null || true; rm -f "$vm_log"' EXIT  # set -e holds in traps too
statuses=()
status=0
ionice -t -c 3 nice -n 19 .venv/bin/python -m pytest "$@" --ignore=tests/libvirt \
    --ignore=tests/qemu || status=$?
statuses+=("$status")
status=0
wait "$vm_run" || status=$?
statuses+=("$status")
echo "---------------------------------------- the VM tests (tests/libvirt, tests/qemu)"
cat "$vm_log"
echo "---------------------------------------- alone: $alone"
status=0
.venv/bin/python -m pytest "$@" "$alone" || status=$?
statuses+=("$status")
# 5 is "no tests collected" (a -k or -m that selects only another run's tests): it counts
# only when no run found a test.
worst=0
found=0
for status in "${statuses[@]}"; do
    ((status == 5)) && continue
    found=1
    ((status > worst)) && worst=$status
done
((found)) || exit 5
exit "$worst"
