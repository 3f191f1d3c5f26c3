"""A private Xvfb for a test, on a display number the X server picks itself.

Why ``-displayfd``: choosing a number by looking for free ``/tmp/.X11-unix/X<n>`` and lock
files is wrong on a machine that already runs X servers elsewhere — one in another mount
namespace (a container, a sandbox) holds the abstract socket ``@/tmp/.X11-unix/X<n>`` with no
file to see, so our Xvfb fails to listen, and the test's clients quietly talk to that other
server. With ``-displayfd`` the server binds the first free number and writes it to a pipe.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 15.0


class XvfbError(RuntimeError):
    """The private Xvfb did not start (its log is in the message)."""


@contextlib.contextmanager
def private_xvfb(workdir: Path, screen: str = "800x600x24",
                 program: str | None = None) -> Iterator[str]:
    """Start Xvfb, yield its display name (``:N``), stop it on exit; its log is
    ``workdir/xvfb.log``."""
    binary = program or shutil.which("Xvfb") or "Xvfb"
    log = workdir / "xvfb.log"
    rfd, wfd = os.pipe()
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [binary, "-displayfd", str(wfd), "-screen", "0", screen, "-nolisten", "tcp",
                 "-noreset"],
                pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
            )
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    os.close(wfd)
    try:
        number = b""
        deadline = time.monotonic() + START_TIMEOUT
        while not number.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([rfd], [], [], max(remaining, 0))
            if not ready:
                raise XvfbError(f"Xvfb did not start in {START_TIMEOUT:.0f} s: "
                                f"{log.read_text(errors='replace')}")
            chunk = os.read(rfd, 16)
            if not chunk:
                raise XvfbError(f"Xvfb exited: {log.read_text(errors='replace')}")
            number += chunk
        yield f":{int(number)}"
    finally:
        os.close(rfd)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def clean_display_env(display: str, **extra: str) -> dict[str, str]:
    """This process's environment for a client of ``display``, without what the machine's own
    desktop may have set: another Wayland or X display's authority, a session bus (whose
    StatusNotifierWatcher would give the app a tray it does not have on ``display``)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS",
                        "QT_QPA_PLATFORM")}
    env.update(DISPLAY=display, **extra)
    return env
