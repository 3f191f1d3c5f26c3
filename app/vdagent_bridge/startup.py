"""Starting the desktop app: the display it can use, the Qt application, the qasync loop.

Qt aborts with a core dump where it has no display, so that is checked first
(:func:`display_problem`, one readable line instead). On a Wayland session with XWayland the
app runs on Qt's X11 backend (:func:`prefer_xwayland`). :func:`run_app` then creates the
QApplication with the app's identity (the desktop file's id, the icon) and runs the
:class:`~vdagent_bridge.application.Application` on a qasync loop until it quits; Ctrl+C and
SIGTERM quit it the orderly way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import replace

from PySide6.QtWidgets import QApplication
from qasync import QEventLoop  # after PySide6: qasync uses the Qt binding already imported
from qasync import run as qasync_run

from . import __version__
from .application import Application
from .assets import APP_ID
from .options import Options
from .ui.icons import app_icon

log = logging.getLogger(__name__)

def display_problem(environ: Mapping[str, str]) -> str | None:
    """Why Qt cannot open a window here (one line), or None. Qt itself would abort with a
    multi-line message and a core dump."""
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to show the tray on (DISPLAY and WAYLAND_DISPLAY are unset); "
            "use --console to run without one")


def prefer_xwayland(environ: MutableMapping[str, str]) -> bool:
    """On a Wayland session with XWayland, use Qt's X11 backend (unless the user chose a
    platform): an X11 client may follow the clipboard without keyboard focus, a Wayland
    client may not (docs/peers.md §2.1, §2.3). Returns True when it chose xcb."""
    if environ.get("QT_QPA_PLATFORM") or not environ.get("WAYLAND_DISPLAY"):
        return False
    if not environ.get("DISPLAY"):
        return False
    environ["QT_QPA_PLATFORM"] = "xcb"
    return True


def run_app(options: Options) -> int:
    """Create the QApplication, run the app on a qasync loop, return its exit status.

    Ctrl+C and SIGTERM quit it the orderly way.
    """
    if prefer_xwayland(os.environ):
        log.info("Wayland session: using XWayland so the clipboard can be followed without "
                 "focus")
        options = replace(options, xwayland=True)
    existing = QApplication.instance()
    # argv[0] names the X11 WM_CLASS instance: "vdagent-bridge", not "__main__.py".
    app = existing if isinstance(existing, QApplication) else QApplication(["vdagent-bridge"])
    app.setApplicationName("vdagent-bridge")
    app.setApplicationVersion(__version__)
    # The Wayland app_id and the X11 _KDE_NET_WM_DESKTOP_FILE: the installed .desktop's id.
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)
    application = Application(options)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        handled = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, application.quit)
                handled.append(signum)
        try:
            return await application.run()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    if sys.version_info >= (3, 12):
        return int(asyncio.run(main(), loop_factory=QEventLoop))
    return int(qasync_run(main()))
