"""The pointer surface end to end: xdotool on a real X display, the real agent's uinput.

The host display is this module's own Xvfb; on it runs the host app (Qt on xcb, qasync, a
VmRuntime, its PointerBridge and a PointerSurface window: tests/system/pointer_host_app.py).
xdotool plays the user's mouse on the surface window. The VM is an :class:`AgentStack`: the
real spice-vdagentd and spice-vdagent on their own Xvfb; the records its fake uinput device
receives are what the guest's input stack would get.

Mapping under test (ui/pointer_surface.py): a 512×384 surface showing a 1024×768 guest maps
window pixel ``c`` to guest pixel ``round_half_up(c · 1023 / 511)`` (rows likewise), so the
window's first and last pixels reach the guest's first and last.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_stack import (
    ABS_X,
    ABS_Y,
    BTN_LEFT,
    BTN_RIGHT,
    EV_ABS,
    EV_KEY,
    EV_REL,
    EV_SYN,
    REL_WHEEL,
    AgentStack,
    InputEvent,
    find_binary,
)
from hostx import ScriptedApp, require

pytestmark = pytest.mark.system

HOST_APP = Path(__file__).with_name("pointer_host_app.py")
TIMEOUT = 15.0
SYN = InputEvent(EV_SYN, 0, 0)
#: Where the README's picture of the surface goes when VDAGENT_SCREENSHOTS is set.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "pointer-surface.png"


def guest_axis(cell: int, size: int, guest: int) -> int:
    """The surface's mapping (see the module docstring), written out again."""
    return (cell * (guest - 1) * 2 + (size - 1)) // ((size - 1) * 2)


class PointerApp(ScriptedApp):
    """tests/system/pointer_host_app.py: a VmRuntime, its PointerBridge and a surface."""

    def __init__(self, display: str, config: dict[str, Any], workdir: Path) -> None:
        super().__init__(HOST_APP, config, display, workdir)
        self.window = str(self.ready["window"])

    def xdotool(self, *args: object) -> None:
        """Run xdotool on the host display (the user's mouse)."""
        subprocess.run([find_binary("xdotool") or "xdotool", *map(str, args)], check=True,
                       env={**os.environ, "DISPLAY": self.display}, timeout=TIMEOUT,
                       capture_output=True)

    def move(self, x: int, y: int) -> None:
        self.xdotool("mousemove", "--sync", "--window", self.window, x, y)


@pytest.fixture
def start_app(host_display: str, tmp_path: Path) -> Iterator[Callable[..., PointerApp]]:
    require(("xdotool",))
    apps: list[PointerApp] = []

    def start(stack: AgentStack, size: tuple[int, int] = (512, 384),
              guest_display: str | None = None) -> PointerApp:
        app = PointerApp(host_display, {"socket": stack.socket_path, "size": list(size),
                                        "guest_display": guest_display}, tmp_path)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


def warm_up(app: PointerApp, stack: AgentStack) -> None:
    """Put the pointer somewhere known, so the records that follow are only the test's."""
    app.move(3, 3)
    stack.wait_uinput(lambda ev: any(e.type == EV_ABS for e in ev), timeout=TIMEOUT)
    time.sleep(0.2)
    stack.clear_uinput_events()


def test_xdotool_moves_clicks_and_wheel_on_the_surface_land_on_the_guest_pixels(
    agent_stack: AgentStack, start_app: Callable[..., PointerApp]
) -> None:
    app = start_app(agent_stack)
    assert app.ready["guest_size"] == [1024, 768]
    assert app.ready["area"] == [0, 0, 512, 384]
    warm_up(app, agent_stack)

    app.move(100, 50)
    x, y = guest_axis(100, 512, 1024), guest_axis(50, 384, 768)
    assert (x, y) == (200, 100)
    assert agent_stack.uinput_reports(1) == [[InputEvent(EV_ABS, ABS_X, x),
                                        InputEvent(EV_ABS, ABS_Y, y), SYN]]
    agent_stack.clear_uinput_events()
    app.xdotool("click", "1")
    assert agent_stack.uinput_reports(2) == [[InputEvent(EV_KEY, BTN_LEFT, 1), SYN],
                                       [InputEvent(EV_KEY, BTN_LEFT, 0), SYN]]

    agent_stack.clear_uinput_events()
    app.move(511, 383)  # the window's last pixel: the guest's last
    app.xdotool("click", "3")
    assert agent_stack.uinput_reports(3) == [
        [InputEvent(EV_ABS, ABS_X, 1023), InputEvent(EV_ABS, ABS_Y, 767), SYN],
        [InputEvent(EV_KEY, BTN_RIGHT, 1), SYN],
        [InputEvent(EV_KEY, BTN_RIGHT, 0), SYN],
    ]

    agent_stack.clear_uinput_events()
    app.xdotool("click", "4")  # wheel up
    app.xdotool("click", "5")  # wheel down
    assert agent_stack.uinput_reports(4) == [[InputEvent(EV_REL, REL_WHEEL, 1), SYN], [SYN],
                                       [InputEvent(EV_REL, REL_WHEEL, -1), SYN], [SYN]]

    agent_stack.clear_uinput_events()
    app.move(0, 0)  # the window's first pixel: the guest's first
    assert agent_stack.uinput_reports(1) == [[InputEvent(EV_ABS, ABS_X, 0),
                                        InputEvent(EV_ABS, ABS_Y, 0), SYN]]


def test_resize_guest_to_surface_resizes_the_guest_screen_and_maps_one_to_one(
    agent_stack: AgentStack, start_app: Callable[..., PointerApp]
) -> None:
    app = start_app(agent_stack, size=(640, 400))
    assert agent_stack.guest_screen_size() == (1024, 768)
    reply = app.command("resize")
    assert reply["ok"]
    assert reply["guest_size"] == [640, 400] and reply["area"] == [0, 0, 640, 400]
    assert agent_stack.wait_screen_size((640, 400), TIMEOUT) == (640, 400)
    agent_stack.wait_for_log(r"updating uinput size to 640x400", TIMEOUT)
    warm_up(app, agent_stack)
    app.move(300, 200)
    app.move(639, 399)
    assert agent_stack.uinput_reports(2) == [
        [InputEvent(EV_ABS, ABS_X, 300), InputEvent(EV_ABS, ABS_Y, 200), SYN],
        [InputEvent(EV_ABS, ABS_X, 639), InputEvent(EV_ABS, ABS_Y, 399), SYN],
    ]


def _paint_guest_desktop(stack: AgentStack, workdir: Path) -> None:
    """Something to see on the guest screen: a background picture and a window."""
    picture = workdir / "guest-desktop.png"
    subprocess.run(
        [find_binary("convert") or "convert", "-size", "1024x768",
         "gradient:#3a6ea5-#16324f", "-fill", "#ffffff", "-pointsize", "44",
         "-gravity", "north", "-annotate", "+0+60", "guest screen (Xvfb, 1024×768)",
         "-fill", "none", "-stroke", "#f2c12e", "-strokewidth", "6",
         "-draw", "rectangle 3,3 1020,764", str(picture)],
        check=True, timeout=TIMEOUT, capture_output=True,
    )
    stack.guest_run([find_binary("display") or "display", "-window", "root", str(picture)],
                    timeout=TIMEOUT)
    xmessage = find_binary("xmessage")
    if xmessage:  # a guest window (the stack stops it)
        stack._guest_popen(
            [xmessage, "-geometry", "+330+300", "-center", "Hello from the guest.\n"
             "This window is on the guest's own X screen; the host surface shows it\n"
             "through a screendump and points into it."],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # decoration for the picture: nothing waits on it


def test_the_surface_shows_the_guest_screen_and_points_into_it(
    agent_stack: AgentStack, start_app: Callable[..., PointerApp], tmp_path: Path
) -> None:
    require(("import", "convert", "display"))
    _paint_guest_desktop(agent_stack, tmp_path)
    app = start_app(agent_stack, size=(640, 400), guest_display=agent_stack.display)
    assert app.ready["dumps"] >= 1
    # The screen's own size is the guest size; letterboxed: 1024×768 in 640×400.
    assert app.ready["guest_size"] == [1024, 768]
    assert app.ready["area"] == [53, 0, 533, 400]
    warm_up(app, agent_stack)
    app.move(53 + 532, 399)
    assert agent_stack.uinput_reports(1) == [[InputEvent(EV_ABS, ABS_X, 1023),
                                        InputEvent(EV_ABS, ABS_Y, 767), SYN]]
    app.command("transfer", text="Sending report.pdf to the guest: 3.2 of 8.0 MiB (40 %)")
    time.sleep(0.5)  # a fresh screendump with the guest window
    shot = tmp_path / "surface.png"
    assert app.command("grab", path=str(shot))["ok"]
    if os.environ.get("VDAGENT_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(shot.read_bytes())
    # The guest's picture fills the letterboxed area (its gradient, top to bottom), not the
    # placeholder; the bars beside it stay dark.
    for (x, y), expected in [((300, 30), (56, 107, 161)), ((300, 350), (26, 57, 89)),
                             ((20, 200), (20, 20, 20))]:
        rgb = _pixel(shot, x, y)
        assert _near(rgb, expected), (x, y, rgb)


def _pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    out = subprocess.run(
        [find_binary("convert") or "convert", str(path), "-crop", f"1x1+{x}+{y}",
         "-depth", "8", "rgb:-"],
        check=True, capture_output=True, timeout=TIMEOUT,
    ).stdout
    return out[0], out[1], out[2]


def _near(rgb: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(rgb, expected, strict=True))
