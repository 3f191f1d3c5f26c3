"""Starting the desktop app: the display it can use, the Qt application, the qasync loop.

Qt aborts with a core dump where it has no display, so that is checked first
(:func:`display_problem`, one readable line instead). Then the clipboard backend is chosen
(:func:`choose_backend`: the compositor is asked what it offers, and the environment Qt reads
at start is set accordingly) and said in the log; a display that goes away later ends the
app with one line of ours (:func:`display_gone`). :func:`run_app` then creates the
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

from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler, qVersion
from PySide6.QtWidgets import QApplication
from qasync import QEventLoop  # after PySide6: qasync uses the Qt binding already imported
from qasync import run as qasync_run

from . import __version__
from .application import Application
from .assets import APP_ID
from .display import Choice, Override, ProbeResult, choose, probe_globals
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


def choose_backend(environ: MutableMapping[str, str],
                   override: Override = Override.AUTO) -> Choice:
    """Choose the clipboard backend and set what Qt reads at start in ``environ``; call
    before the QGuiApplication exists.

    The compositor is asked for its globals on every Wayland session (a few milliseconds),
    unless the user pinned Qt to a platform without a desktop (offscreen, minimal…).

    :raises BackendError: ``override`` asks for a display that is not there.
    """
    probe = ProbeResult(None, "not asked")
    pinned = environ.get("QT_QPA_PLATFORM", "").strip()
    desktop = not pinned or pinned.startswith(("xcb", "wayland")) or override is not Override.AUTO
    if environ.get("WAYLAND_DISPLAY") and desktop:
        probe = probe_globals(environ)
    choice = choose(environ, probe.globals, _qt_version(), override,
                    probe_problem=probe.problem)
    choice.apply(environ)
    return choice


def _qt_version() -> tuple[int, ...]:
    return tuple(int(part) for part in qVersion().split(".")[:2])


#: What Qt says, just before it exits the process, when its display connection breaks
#: (QtWayland ``QWaylandDisplay::checkWaylandError``, xcb ``QXcbConnection``).
_DISPLAY_GONE = {
    "The Wayland connection broke": "the Wayland compositor went away",
    "The X11 connection broke": "the X server went away",
}


def display_gone(message: str) -> str | None:
    """The one line the user reads when Qt reports its display connection broken (Qt then
    ends the process itself), or None for any other Qt message."""
    for start, what in _DISPLAY_GONE.items():
        if message.startswith(start):
            return f"vdagent-bridge: {what} ({message.strip()}); quitting"
    return None


def _qt_messages(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
    """Qt's messages, as Qt's own handler prints them, except the display's end: ours, one
    line (Qt exits right after, without the orderly shutdown)."""
    line = display_gone(message)
    if line is None:
        category = context.category
        line = message if not category or category == "default" else f"{category}: {message}"
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def run_app(options: Options) -> int:
    """Create the QApplication, run the app on a qasync loop, return its exit status.

    Ctrl+C and SIGTERM quit it the orderly way.
    """
    choice = choose_backend(os.environ, options.clipboard_backend)
    log.info("clipboard backend: %s (%s)", choice.backend.value, choice.summary)
    for line in choice.details:
        log.info("  %s", line)
    options = replace(options, backend=choice)
    qInstallMessageHandler(_qt_messages)
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
