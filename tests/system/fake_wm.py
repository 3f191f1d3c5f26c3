"""Announce an EWMH window manager on an X display, without running one.

Why: spice-vdagent 0.22.1 polls up to 10 x 100 ms for the window manager's
name (root ``_NET_SUPPORTING_WM_CHECK`` -> check window's ``_NET_WM_NAME``)
before it reports its resolution to the daemon.  On a bare Xvfb that costs
every test stack a full second.  This process creates a 1x1 unmapped check
window over libX11 (ctypes: stdlib only, no python-xlib), points the root's
``_NET_SUPPORTING_WM_CHECK`` at it, names it, prints ``fake-wm ready`` and
then just waits: the window lives as long as this X connection.

The name is not one the agent special-cases (it only reacts to GNOME/MATE
style names), so the agent behaves as without a WM, just faster.

It is a separate process on purpose: Xlib's default I/O-error handler calls
``exit()``, which must never happen inside the pytest process.

Run: ``python fake_wm.py DISPLAY``; stop with SIGTERM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

WM_NAME = b"vdagent-bridge-test-wm"
XA_WINDOW = 33
PROP_MODE_REPLACE = 0


def announce(display: str) -> None:
    """Create the check window and set the EWMH properties (raises OSError)."""
    path = ctypes.util.find_library("X11") or "libX11.so.6"
    lib = ctypes.CDLL(path)
    vp, ul, ci, cu = ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_uint
    lib.XOpenDisplay.restype = vp
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultRootWindow.restype = ul
    lib.XDefaultRootWindow.argtypes = [vp]
    lib.XInternAtom.restype = ul
    lib.XInternAtom.argtypes = [vp, ctypes.c_char_p, ci]
    lib.XCreateSimpleWindow.restype = ul
    lib.XCreateSimpleWindow.argtypes = [vp, ul, ci, ci, cu, cu, cu, ul, ul]
    lib.XChangeProperty.argtypes = [vp, ul, ul, ul, ci, ci, vp, ci]
    lib.XSync.argtypes = [vp, ci]

    dpy = lib.XOpenDisplay(display.encode())
    if not dpy:
        raise OSError(f"cannot open X display {display}")
    root = lib.XDefaultRootWindow(dpy)
    window = lib.XCreateSimpleWindow(dpy, root, -10, -10, 1, 1, 0, 0, 0)
    check = lib.XInternAtom(dpy, b"_NET_SUPPORTING_WM_CHECK", 0)
    wm_name = lib.XInternAtom(dpy, b"_NET_WM_NAME", 0)
    utf8 = lib.XInternAtom(dpy, b"UTF8_STRING", 0)
    ref = (ctypes.c_ulong * 1)(window)  # format-32 data is an array of C longs
    for target in (window, root):
        lib.XChangeProperty(dpy, target, check, XA_WINDOW, 32, PROP_MODE_REPLACE, ref, 1)
    lib.XChangeProperty(dpy, window, wm_name, utf8, 8, PROP_MODE_REPLACE, WM_NAME, len(WM_NAME))
    lib.XSync(dpy, 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: fake_wm.py DISPLAY\n")
        return 2
    announce(args[0])
    sys.stdout.write("fake-wm ready\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
