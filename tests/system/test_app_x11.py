"""The whole app as a user starts it, on a real X display, against the real agent.

``vdagent-bridge --vm guest --endpoint unix:… --pointer-surface --no-tray`` runs on this
module's host Xvfb; the VM is an :class:`AgentStack` (the real spice-vdagentd and
spice-vdagent on their own Xvfb). xdotool plays the user's mouse on the pointer surface, and a
small Qt program (tests/system/drag_source.py) plays the file manager files are dragged from:
the drop is a real XDND drag and drop between two X clients.

The surface of a 1024×768 guest opens at 960×720 and shows the whole guest (no letterbox),
so window pixel ``c`` maps to guest pixel ``round_half_up(c · 1023 / 959)`` (rows likewise):
see ui/pointer_surface.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_stack import (
    ABS_X,
    ABS_Y,
    BTN_LEFT,
    EV_ABS,
    EV_KEY,
    EV_SYN,
    AgentStack,
    InputEvent,
    find_binary,
)
from hostx import require, xvfb

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
DRAG_SOURCE = Path(__file__).with_name("drag_source.py")
TIMEOUT = 20.0
SYN = InputEvent(EV_SYN, 0, 0)
SURFACE = (960, 720)
GUEST = (1024, 768)


def guest_axis(cell: int, size: int, guest: int) -> int:
    """The surface's mapping (see the module docstring), written out again."""
    return (cell * (guest - 1) * 2 + (size - 1)) // ((size - 1) * 2)


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A host display large enough for the surface and a drag source beside it."""
    require(("Xvfb", "xdotool"))
    with xvfb(tmp_path_factory.mktemp("desktop"), screen="1400x800x24") as display:
        yield display


class App:
    """``python -m vdagent_bridge`` on the host display, its log, and xdotool."""

    def __init__(self, display: str, stack: AgentStack, workdir: Path) -> None:
        home = workdir / "home"
        runtime_dir = workdir / "runtime"
        for directory in (home, runtime_dir):
            directory.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS")}
        self.env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(home),
                        XDG_RUNTIME_DIR=str(runtime_dir), XDG_CONFIG_HOME=str(home / ".config"),
                        XDG_DATA_HOME=str(home / ".local/share"),
                        PYTHONPATH=str(ROOT / "app"))
        self.log_path = workdir / "app.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vdagent_bridge", "--vm", "guest",
                 "--endpoint", f"unix:{stack.socket_path}", "--pointer-surface", "--no-tray",
                 "--state-dir", str(workdir / "state"), "--log-level", "info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )
        self.wait_log(r"guest: connected to unix:")
        self.surface = self.find_window("guest — pointer — vdagent-bridge")
        self.xdotool("windowmove", "--sync", self.surface, "400", "40")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, since: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            match = re.search(pattern, self.log()[since:])
            if match is not None:
                return match
            assert self.proc.poll() is None, f"the app exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in the app's log:\n{self.log()}"
            time.sleep(0.05)

    def xdotool(self, *args: str) -> str:
        result = subprocess.run([find_binary("xdotool") or "xdotool", *args],
                                capture_output=True, text=True, env=self.env, timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def find_window(self, name: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while True:
            result = subprocess.run([find_binary("xdotool") or "xdotool", "search", "--onlyvisible",
                                     "--name", f"^{re.escape(name)}$"],
                                    capture_output=True, text=True, env=self.env)
            if result.stdout.split():
                return result.stdout.split()[0]
            assert time.monotonic() < deadline, f"no window {name!r}:\n{self.log()}"
            time.sleep(0.1)

    def geometry(self, window: str) -> dict[str, int]:
        out = self.xdotool("getwindowgeometry", "--shell", window)
        return {k: int(v) for k, v in (line.split("=") for line in out.split())
                if k in ("X", "Y", "WIDTH", "HEIGHT")}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def start_app(desktop: str, tmp_path: Path) -> Iterator[Callable[[AgentStack], App]]:
    apps: list[App] = []

    def start(stack: AgentStack) -> App:
        app = App(desktop, stack, tmp_path)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()
        if app.proc.returncode not in (0, None):
            print(app.log())


def drag_files(app: App, paths: list[Path], onto: str) -> None:
    """Drag ``paths`` from a file manager's window onto window ``onto``, as a user does."""
    mark = len(app.log())
    source = subprocess.Popen([sys.executable, str(DRAG_SOURCE), *map(str, paths)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=app.env,
                              text=True)
    try:
        assert source.stdout is not None and source.stdout.readline().strip() == "ready"
        window = app.find_window("drag source")
        app.xdotool("windowmove", "--sync", window, "20", "40")
        where = app.geometry(window)
        target = app.geometry(onto)
        x, y = where["X"] + 80, where["Y"] + 60
        app.xdotool("mousemove", "--sync", str(x), str(y))
        time.sleep(0.2)
        app.xdotool("mousedown", "1")
        time.sleep(0.3)  # QDrag.exec grabs the pointer from the press on
        end_x, end_y = target["X"] + target["WIDTH"] // 2, target["Y"] + target["HEIGHT"] // 2
        for step in range(1, 21):  # a drag is motion: XDND follows the pointer
            app.xdotool("mousemove", str(x + (end_x - x) * step // 20),
                        str(y + (end_y - y) * step // 20))
            time.sleep(0.05)
        for dx in (5, -5, 0):  # XDND positions inside the target, each answered
            app.xdotool("mousemove", str(end_x + dx), str(end_y))
            time.sleep(0.2)
        app.xdotool("mouseup", "1")
        assert source.stdout.readline().strip() == "dropped CopyAction"
        # The target fetches the dropped data from the source after the drop: the source
        # stays until the app has it.
        app.wait_log(r"guest: sending ", since=mark)
    finally:
        source.terminate()
        source.wait(5)
        if source.stdout is not None:
            source.stdout.close()


def test_the_pointer_surface_of_the_app_points_and_clicks_in_the_guest(
    agent_stack: AgentStack, start_app: Callable[[AgentStack], App]
) -> None:
    app = start_app(agent_stack)
    geometry = app.geometry(app.surface)
    assert (geometry["WIDTH"], geometry["HEIGHT"]) == SURFACE
    app.xdotool("mousemove", "--window", app.surface, "3", "3")
    agent_stack.wait_uinput(lambda ev: any(e.type == EV_ABS for e in ev), timeout=TIMEOUT)
    time.sleep(0.2)
    agent_stack.clear_uinput_events()

    app.xdotool("mousemove", "--window", app.surface, "480", "200")
    x, y = guest_axis(480, SURFACE[0], GUEST[0]), guest_axis(200, SURFACE[1], GUEST[1])
    assert agent_stack.uinput_reports(1) == [[InputEvent(EV_ABS, ABS_X, x),
                                        InputEvent(EV_ABS, ABS_Y, y), SYN]]
    agent_stack.clear_uinput_events()
    app.xdotool("click", "1")
    assert agent_stack.uinput_reports(2) == [[InputEvent(EV_KEY, BTN_LEFT, 1), SYN],
                                       [InputEvent(EV_KEY, BTN_LEFT, 0), SYN]]
    agent_stack.clear_uinput_events()
    app.xdotool("mousemove", "--window", app.surface, "959", "719")
    assert agent_stack.uinput_reports(1) == [[InputEvent(EV_ABS, ABS_X, 1023),
                                        InputEvent(EV_ABS, ABS_Y, 767), SYN]]


def test_files_dropped_on_the_pointer_surface_land_in_the_guest(
    agent_stack: AgentStack, start_app: Callable[[AgentStack], App], tmp_path: Path
) -> None:
    app = start_app(agent_stack)
    small = tmp_path / "notes.txt"
    small.write_text("dropped on the pointer surface\n")
    big = tmp_path / "image data.bin"
    big.write_bytes(bytes((i * 7 + i // 977) & 255 for i in range(1_500_000)))
    drag_files(app, [small, big], onto=app.surface)
    app.wait_log(r"guest: sent 2 files to the guest")
    landed = Path(agent_stack.xfer_dir)
    assert (landed / "notes.txt").read_bytes() == small.read_bytes()
    assert (landed / "image data.bin").read_bytes() == big.read_bytes()


def test_the_agents_refusal_of_a_dropped_file_is_explained_in_words(
    agent_stack: AgentStack, start_app: Callable[[AgentStack], App], tmp_path: Path
) -> None:
    """A file larger than the guest's free space (sparse: 10 TiB to offer, nothing on disk)
    is refused by the agent before any data moves; the user reads why."""
    app = start_app(agent_stack)
    huge = tmp_path / "huge.img"
    with huge.open("wb") as out:
        out.truncate(10 << 40)
    mark = len(app.log())
    drag_files(app, [huge], onto=app.surface)
    line = app.wait_log(r"guest: file transfer failed: [^\n]+", since=mark).group(0)
    assert line.endswith("file transfer failed: the guest has no space left for huge.img")
    assert not (Path(agent_stack.xfer_dir) / "huge.img").exists()
