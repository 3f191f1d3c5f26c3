"""The running app's windows carry the identity the .desktop entry promises (real Qt on xcb,
on a private Xvfb): WM_CLASS matches ``StartupWMClass``, ``_KDE_NET_WM_DESKTOP_FILE`` and
``_GTK_APPLICATION_ID`` (from ``QGuiApplication.desktopFileName``) are the application id, and
the window has an icon. That is how a desktop ties a window to its launcher and icon.

Needs Xvfb, xdotool and xprop (tests/run.sh installs them); a missing one is a failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.xvfb import clean_display_env, private_xvfb
from vdagent_bridge import assets

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]


def program(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing (tests/run.sh installs it)"
    return path


@pytest.fixture
def display(tmp_path: Path) -> Iterator[str]:
    program("xprop")
    with private_xvfb(tmp_path, "1024x768x24", program("Xvfb")) as name:
        yield name


def xprop(display: str, window: str, name: str) -> str:
    result = subprocess.run([program("xprop"), "-display", display, "-id", window, name],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_the_windows_name_the_desktop_entry_and_carry_the_icon(
    display: str, tmp_path: Path
) -> None:
    env = clean_display_env(display, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
                            XDG_STATE_HOME=str(tmp_path / "state"),
                            PYTHONPATH=str(REPO / "app"))
    app = subprocess.Popen([sys.executable, "-m", "vdagent_bridge", "--demo", "--no-tray",
                            "--seconds", "8"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        windows: list[str] = []
        deadline = time.monotonic() + 20
        while len(windows) < 2 and time.monotonic() < deadline and app.poll() is None:
            time.sleep(0.2)
            found = subprocess.run([program("xdotool"), "search", "--onlyvisible", "--pid",
                                    str(app.pid)], env=clean_display_env(display),
                                   capture_output=True, text=True)
            windows = found.stdout.split()
        assert len(windows) == 2, "the fallback window and the demo guest's did not show"
        entry = assets.desktop_file().read_text()
        assert "\nStartupWMClass=vdagent-bridge\n" in entry
        for window in windows:
            assert xprop(display, window, "WM_CLASS") == \
                'WM_CLASS(STRING) = "vdagent-bridge", "vdagent-bridge"'
            for name in ("_KDE_NET_WM_DESKTOP_FILE", "_GTK_APPLICATION_ID"):
                assert xprop(display, window, name) == \
                    f'{name}(UTF8_STRING) = "{assets.APP_ID}"'
            assert "Icon (16 x 16)" in xprop(display, window, "_NET_WM_ICON")
        output, _ = app.communicate(timeout=30)
        assert app.returncode == 0, output
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
