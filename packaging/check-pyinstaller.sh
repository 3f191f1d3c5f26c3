#!/usr/bin/env bash
# Checks the PyInstaller bundle for real, in one command (it builds the bundle first if there is
# none, or with --rebuild):
#
#     bash packaging/check-pyinstaller.sh [--rebuild] [OUTDIR]
#
# Under a private Xvfb (no window manager, no tray: the app shows its fallback window) it runs
# `dist/vdagent-bridge/vdagent-bridge --demo --seconds N`, waits for its windows (xdotool, by
# the bundle's process id), records their titles and WM_CLASS, takes a screenshot of the
# screen (ImageMagick `import`), and then checks that the app quit by itself with status 0. It
# also runs the bundle's --help without a display and --install-desktop-files /
# --uninstall-desktop-files into a temporary data directory. Where weston is installed it runs
# the same demo on Wayland too (a headless weston). Exits non-zero, saying why, if anything
# fails, in particular if no window appeared. Results go to OUTDIR (default
# build/pyinstaller-check): app.log, windows.txt, screenshot.png (and app-wayland.log,
# screenshot-wayland.png).
#
# Needs Xvfb, xdotool, xprop (x11-utils), import (imagemagick): tests/run.sh installs them.
# The Wayland run needs weston (Debian package weston), which tests/run.sh does not install.
set -euo pipefail
cd "$(dirname "$0")/.."

rebuild=0
if [[ ${1:-} == --rebuild ]]; then rebuild=1; shift; fi
OUT=${1:-build/pyinstaller-check}
SECONDS_SHOWN=${CHECK_SECONDS:-12}
BUNDLE=dist/vdagent-bridge/vdagent-bridge

if ((rebuild)) || [[ ! -x $BUNDLE ]]; then
    bash packaging/build-pyinstaller.sh
fi
for tool in Xvfb xdotool xprop import; do
    command -v "$tool" >/dev/null || { echo "check-pyinstaller: $tool is missing" >&2; exit 2; }
done

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
scratch=$(mktemp -d)
xvfb_pid=
weston_pid=
app_pid=
cleanup() {
    [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null || true
    [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null || true
    [[ -n $weston_pid ]] && kill "$weston_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
fail() { echo "check-pyinstaller: FAILED: $*" >&2; exit 1; }

# A clean user: no settings, state or desktop files of the person running the check.
export HOME=$scratch/home XDG_CONFIG_HOME=$scratch/config XDG_STATE_HOME=$scratch/state \
    XDG_DATA_HOME=$scratch/data XDG_CACHE_HOME=$scratch/cache XDG_RUNTIME_DIR=$scratch/run
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
unset WAYLAND_DISPLAY QT_QPA_PLATFORM DBUS_SESSION_BUS_ADDRESS

# 1. --help needs no display.
(unset DISPLAY; "$BUNDLE" --help) >"$OUT/help.txt" || fail "--help exited with $?"
grep -q "^usage: vdagent-bridge" "$OUT/help.txt" || fail "--help printed no usage"

# 2. The desktop files, from the bundle: Exec= the bundle's executable; nothing left behind.
"$BUNDLE" --install-desktop-files >"$OUT/install.txt" || fail "--install-desktop-files"
grep -qx "Exec=$(cd "$(dirname "$BUNDLE")" && pwd)/vdagent-bridge" \
    "$XDG_DATA_HOME/applications/io.github.vdagent_bridge.vdagent_bridge.desktop" \
    || fail "the installed entry does not run the bundle"
"$BUNDLE" --uninstall-desktop-files >"$OUT/uninstall.txt" || fail "--uninstall-desktop-files"
[[ -z $(find "$XDG_DATA_HOME" -mindepth 1 2>/dev/null) ]] || fail "uninstall left files behind"

# 3. The app on X11 (xcb), with the demo guest.
#    Xvfb picks a free display itself (-displayfd): a number chosen by looking at
#    /tmp/.X11-unix may belong to a server in another mount namespace.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$OUT/display" >"$OUT/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 150); do grep -q '^[0-9][0-9]*$' "$OUT/display" && break; sleep 0.1; done
grep -q '^[0-9][0-9]*$' "$OUT/display" || fail "Xvfb did not start (see $OUT/xvfb.log)"
export DISPLAY=:$(<"$OUT/display")
unset XAUTHORITY DBUS_SESSION_BUS_ADDRESS
for _ in $(seq 50); do xprop -root >/dev/null 2>&1 && break; sleep 0.1; done
xprop -root >/dev/null 2>&1 || fail "Xvfb did not start (see $OUT/xvfb.log)"

start=$SECONDS
"$BUNDLE" --demo --seconds "$SECONDS_SHOWN" >"$OUT/app.log" 2>&1 &
app_pid=$!
windows=
for _ in $(seq 100); do
    windows=$(xdotool search --onlyvisible --pid "$app_pid" 2>/dev/null || true)
    [[ -n $windows ]] && break
    kill -0 "$app_pid" 2>/dev/null || break
    sleep 0.1
done
[[ -n $windows ]] || fail "no window of the bundle appeared (see $OUT/app.log)"
sleep 2  # let both windows map and paint
windows=$(xdotool search --onlyvisible --pid "$app_pid")
: >"$OUT/windows.txt"
x=0
for window in $windows; do
    printf '%s "%s" %s\n' "$window" "$(xdotool getwindowname "$window")" \
        "$(xprop -id "$window" WM_CLASS | cut -d= -f2)" >>"$OUT/windows.txt"
    # No window manager places them: side by side, so the screenshot shows each.
    xdotool windowmove "$window" "$x" 0
    eval "$(xdotool getwindowgeometry --shell "$window")"
    x=$((x + WIDTH + 10))
done
sleep 0.5
import -window root "$OUT/screenshot.png"
first_window_after=$((SECONDS - start))

status=0
wait "$app_pid" || status=$?
app_pid=
((status == 0)) || fail "the app exited with status $status (see $OUT/app.log)"
grep -q '"vdagent-bridge", ' "$OUT/windows.txt" || fail "WM_CLASS is not vdagent-bridge"

kill "$xvfb_pid" 2>/dev/null || true
xvfb_pid=

# 4. The app on Wayland, if weston is installed: a headless weston (pixman renderer, so that
#    weston-screenshooter works), QT_QPA_PLATFORM=wayland, the same demo. Wayland offers no
#    way to list another client's windows, so the evidence is the exit status, the app's log
#    line about its window, and the screenshot.
wayland="skipped (weston is not installed)"
if command -v weston >/dev/null && command -v weston-screenshooter >/dev/null; then
    unset DISPLAY
    export WAYLAND_DISPLAY=wayland-vdagent-bridge-check
    weston --backend=headless-backend.so --use-pixman --width=1280 --height=800 \
        --socket="$WAYLAND_DISPLAY" --idle-time=0 --debug >"$OUT/weston.log" 2>&1 &
    weston_pid=$!
    for _ in $(seq 50); do [[ -S $XDG_RUNTIME_DIR/$WAYLAND_DISPLAY ]] && break; sleep 0.1; done
    [[ -S $XDG_RUNTIME_DIR/$WAYLAND_DISPLAY ]] || fail "weston did not start ($OUT/weston.log)"
    QT_QPA_PLATFORM=wayland "$BUNDLE" --demo --seconds "$SECONDS_SHOWN" \
        >"$OUT/app-wayland.log" 2>&1 &
    app_pid=$!
    sleep $((SECONDS_SHOWN / 2))
    (cd "$OUT" && timeout 20 weston-screenshooter) || fail "weston-screenshooter failed"
    status=0
    wait "$app_pid" || status=$?
    app_pid=
    kill "$weston_pid" 2>/dev/null || true
    weston_pid=
    ((status == 0)) || fail "on Wayland the app exited with $status ($OUT/app-wayland.log)"
    grep -q "showing a window instead" "$OUT/app-wayland.log" \
        || fail "on Wayland the app showed no window ($OUT/app-wayland.log)"
    mv "$OUT"/wayland-screenshot-*.png "$OUT/screenshot-wayland.png"
    wayland="OK, app quit with 0; screenshot: $OUT/screenshot-wayland.png"
fi

echo "check-pyinstaller: OK: $(wc -l <"$OUT/windows.txt") window(s) within" \
    "${first_window_after} s, app quit with 0 after --seconds $SECONDS_SHOWN;" \
    "bundle $(du -sh dist/vdagent-bridge | cut -f1)"
sed 's/^/  /' "$OUT/windows.txt"
echo "  screenshot: $OUT/screenshot.png"
echo "  Wayland (weston, headless): $wayland"
