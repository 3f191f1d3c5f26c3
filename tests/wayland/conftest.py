"""Fixtures for the tests on real headless Wayland compositors (tests/wayland/compositors.py):
one compositor per module and kind (sway, KWin), shared by the module's tests; per test, the
real guest agent stack (tests/system/agent_stack.py) and the app as a session starts it.

Without the compositors' Debian packages these tests skip on a developer machine and fail
under CI (tests/external.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for folder in (_HERE, _HERE.parent / "system"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from agent_stack import AgentStack, missing_binaries  # noqa: E402
from compositors import COMPOSITORS, Compositor, missing_programs  # noqa: E402
from session import SessionApp  # noqa: E402

from tests.external import call_failed, require  # noqa: E402

INSTALL = ("apt-get install sway xwayland wl-clipboard grim wtype foot kwin-wayland "
           "x11-xserver-utils xclip spice-vdagent xvfb")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wayland: real headless Wayland compositors (sway, KWin) with XWayland; "
        "deselect with -m 'not wayland'")


@pytest.fixture(scope="module", params=sorted(COMPOSITORS))
def compositor(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compositor]:
    """A headless compositor of each kind, started once per module (sway ~1 s, KWin ~3 s)."""
    kind = str(request.param)
    require(missing_programs(kind), f"{kind} unavailable", INSTALL)
    started = COMPOSITORS[kind](tmp_path_factory.mktemp(kind)).start()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def agent_stack(request: pytest.FixtureRequest) -> Iterator[AgentStack]:
    """The real spice-vdagentd and spice-vdagent on their own Xvfb: the guest."""
    require(missing_binaries(), "real guest agent stack unavailable", INSTALL)
    stack = AgentStack().start()
    try:
        yield stack
    finally:
        if call_failed(request):
            print(stack.describe(lines=60))
        stack.close()


@pytest.fixture
def start_app(compositor: Compositor, agent_stack: AgentStack, tmp_path: Path,
              request: pytest.FixtureRequest) -> Iterator[Callable[..., SessionApp]]:
    """Start the app in the compositor's session against this test's guest."""
    apps: list[SessionApp] = []

    def start(*args: str) -> SessionApp:
        app = SessionApp(compositor, agent_stack, tmp_path / f"app{len(apps)}", list(args))
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()
        if call_failed(request):
            print(app.log())
    if call_failed(request):
        print(compositor.describe())
