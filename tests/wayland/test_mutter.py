"""GNOME: the app on a real headless mutter 43 with XWayland, against the real guest agent.

mutter offers no data-control protocol, but it shares the clipboard with X11 clients whatever
has focus, so the app must choose XWayland by itself, and say that it follows the clipboard
in the background. The clipboard itself is not driven here: headless mutter's seat has no
keyboard, so no Wayland client can own or read its clipboard (see compositors.Mutter).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_stack import AgentStack
from compositors import Mutter, missing_programs
from session import SessionApp, environment_of

from tests.external import require

pytestmark = pytest.mark.wayland


@pytest.fixture
def mutter(tmp_path: Path) -> Iterator[Mutter]:
    require(missing_programs("mutter"), "mutter unavailable", "apt-get install mutter xwayland")
    started = Mutter(tmp_path / "mutter")
    (tmp_path / "mutter").mkdir()
    started.start()
    yield started
    started.close()


def test_on_gnome_the_app_chooses_xwayland_because_mutter_serves_it_in_the_background(
    mutter: Mutter, agent_stack: AgentStack, tmp_path: Path,
) -> None:
    app = SessionApp(mutter, agent_stack, tmp_path / "app", [])
    try:
        log = app.log()
        assert ("clipboard backend: xwayland (Wayland session, clipboard through XWayland)"
                in log)
        assert "GNOME (mutter): no data-control protocol, but mutter shares the clipboard" in log
        env = environment_of(app.proc.pid)
        assert "QT_QPA_PLATFORM" not in env and env["DISPLAY"] == mutter.x_display
    finally:
        app.close()
