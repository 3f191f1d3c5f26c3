"""The clipboard bridge end to end on real X clipboards: two Xvfb displays and the real agent.

The host display is this module's own Xvfb; on it runs the host app (Qt on xcb, qasync, the
bridge and a VmRuntime per VM: tests/system/clipboard_host_app.py, in its own process since a
process has a single QApplication) and xclip plays the host's applications. Each VM is an
:class:`AgentStack`: the real spice-vdagentd and spice-vdagent on their own Xvfb, the guest
display, where xclip plays the guest's applications.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_stack import AgentStack, GuestCommandError
from hostx import HostX, ScriptedApp

pytestmark = pytest.mark.system

HOST_APP = Path(__file__).with_name("clipboard_host_app.py")
TIMEOUT = 15.0
#: How long a blocked transfer is given to (wrongly) happen before we check it did not.
SETTLE = 0.7


# ------------------------------------------------------------------ host display


@pytest.fixture
def host_x(host_display: str, tmp_path: Path) -> Iterator[HostX]:
    host = HostX(host_display, tmp_path)
    yield host
    host.close()


# ------------------------------------------------------------------ the host app


class HostApp(ScriptedApp):
    """tests/system/clipboard_host_app.py: the clipboard bridge and a VmRuntime per VM."""

    def __init__(self, display: str, vms: list[dict[str, Any]], workdir: Path) -> None:
        super().__init__(HOST_APP, {"vms": vms}, display, workdir)

    def notices(self, since: int = 0) -> list[str]:
        with self._cond:
            return [line["notice"] for line in self.lines[since:] if "notice" in line]


@pytest.fixture
def start_app(host_display: str, tmp_path: Path) -> Iterator[Callable[..., HostApp]]:
    apps: list[HostApp] = []

    def start(*vms: tuple[str, AgentStack, dict[str, Any]]) -> HostApp:
        app = HostApp(host_display, [
            {"name": name, "socket": stack.socket_path, "policy": policy}
            for name, stack, policy in vms
        ], tmp_path)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


# ------------------------------------------------------------------ helpers


def eventually(read: Callable[[], bytes | None], expected: bytes | None,
               timeout: float = TIMEOUT) -> None:
    """Poll ``read`` until it returns ``expected`` (a transfer has a short way to go)."""
    deadline = time.monotonic() + timeout
    value: bytes | None = None
    while time.monotonic() < deadline:
        value = read()
        if value == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {expected[:80] if expected else expected!r}, "
                         f"last read {value[:80] if value else value!r}")


def guest_reader(stack: AgentStack, selection: str = "clipboard",
                 target: str = "UTF8_STRING") -> Callable[[], bytes | None]:
    def read() -> bytes | None:
        try:
            return stack.guest_paste(selection, target)
        except GuestCommandError:
            return None

    return read


def running(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def make_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG, built by hand (this process has no Qt)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def bmp_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"BM", data[:16]
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)


# ------------------------------------------------------------------ tests


def test_text_crosses_both_ways_without_echo(
    agent_stack: AgentStack, host_x: HostX, start_app: Callable[..., HostApp]
) -> None:
    app = start_app(("vm", agent_stack, {}))
    host_text = "from the host ✓\nline two".encode()
    host_x.copy(host_text)
    eventually(guest_reader(agent_stack), host_text)
    # A paste attempt that timed out on a loaded machine may still have a request in flight:
    # let it arrive before counting what the guest asks from here on.
    time.sleep(SETTLE)

    guest_text = "from the guest ✓".encode()
    mark = app.mark()
    xclip = agent_stack.guest_copy(guest_text)
    eventually(host_x.paste, guest_text)
    # Putting the guest's text on the host clipboard did not grab the guest back: the guest
    # xclip still owns its selection, and the host never asked the guest for anything else.
    time.sleep(SETTLE)
    assert running(xclip)
    assert not [line for line in app.lines[mark:] if line.get("event") == "ClipboardRequested"]
    assert agent_stack.guest_paste() == guest_text


def test_png_crosses_both_ways_and_is_converted_on_request(
    agent_stack: AgentStack, host_x: HostX, start_app: Callable[..., HostApp]
) -> None:
    start_app(("vm", agent_stack, {}))
    host_png = make_png(7, 5, (200, 10, 10))
    host_x.copy(host_png, target="image/png")
    eventually(guest_reader(agent_stack, target="image/png"), host_png)
    bmp = agent_stack.guest_paste(target="image/bmp")  # converted by the bridge through QImage
    assert bmp_size(bmp) == (7, 5)

    guest_png = make_png(3, 9, (10, 200, 10))
    agent_stack.guest_copy(guest_png, target="image/png")
    eventually(lambda: host_x.paste(target="image/png"), guest_png)
    host_bmp = host_x.paste(target="image/bmp")  # Qt converts the decoded image
    assert host_bmp is not None and bmp_size(host_bmp) == (3, 9)


def test_primary_crosses_both_ways_when_enabled(
    agent_stack: AgentStack, host_x: HostX, start_app: Callable[..., HostApp]
) -> None:
    app = start_app(("vm", agent_stack, {"primary": True}))
    assert app.lines[0]["supports_selection"] is True
    host_x.copy(b"host primary", selection="primary")
    eventually(guest_reader(agent_stack, "primary"), b"host primary")
    agent_stack.guest_copy(b"guest primary", selection="primary")
    eventually(lambda: host_x.paste("primary"), b"guest primary")
    assert host_x.paste("clipboard") is None  # the clipboard itself was not touched


def test_primary_stays_on_its_side_when_disabled(
    agent_stack: AgentStack, host_x: HostX, start_app: Callable[..., HostApp]
) -> None:
    app = start_app(("vm", agent_stack, {"primary": False}))
    agent_stack.guest_copy(b"guest's own selection", selection="primary")
    mark = app.mark()
    host_x.copy(b"host selection", selection="primary")
    app.wait(lambda line: line.get("host_changed") == 1, mark)
    time.sleep(SETTLE)
    assert agent_stack.guest_paste("primary") == b"guest's own selection"

    mark = app.mark()
    agent_stack.guest_copy(b"guest selection, private", selection="primary")
    app.wait(lambda line: line.get("event") == "ClipboardGrabbed", mark)
    time.sleep(SETTLE)
    assert host_x.paste("primary") == b"host selection"


def test_each_direction_switched_off_really_blocks(
    agent_stack: AgentStack, host_x: HostX, start_app: Callable[..., HostApp]
) -> None:
    app = start_app(("vm", agent_stack, {}))
    agent_stack.guest_copy(b"guest before")
    eventually(host_x.paste, b"guest before")

    app.command("policy", vm="vm", changes={"to_guest": False})
    mark = app.mark()
    host_x.copy(b"host secret")
    app.wait(lambda line: line.get("host_changed") == 0, mark)
    time.sleep(SETTLE)
    assert agent_stack.guest_paste() == b"guest before"

    app.command("policy", vm="vm", changes={"to_host": False})
    mark = app.mark()
    agent_stack.guest_copy(b"guest secret")
    app.wait(lambda line: line.get("event") == "ClipboardGrabbed", mark)
    time.sleep(SETTLE)
    assert host_x.paste() == b"host secret"

    # Switched back on, to-guest offers what the host holds now.
    app.command("policy", vm="vm", changes={"to_guest": True})
    eventually(guest_reader(agent_stack), b"host secret")


def test_oversize_copies_are_refused_with_a_notice(
    agent_stack: AgentStack, host_x: HostX, start_app: Callable[..., HostApp]
) -> None:
    app = start_app(("vm", agent_stack, {"max_to_guest": 1000, "max_to_host": 1000}))
    mark = app.mark()
    host_x.copy(b"h" * 1001)
    app.wait(lambda line: line.get("host_changed") == 0, mark)
    time.sleep(0.2)  # let the agent take the selection
    pasted = guest_reader(agent_stack)()
    assert not pasted  # empty data, or no data at all
    notice = app.wait(lambda line: "notice" in line, mark)["notice"]
    assert "larger than the host → guest limit of 1000 bytes" in notice

    mark = app.mark()
    agent_stack.guest_copy(b"g" * 1001)
    notice = app.wait(lambda line: "notice" in line, mark)["notice"]
    assert "larger than the guest → host limit of 1000 bytes" in notice
    # The agent was told our limit: it did not send the data at all.
    agent_stack.wait_for_log("clipboard is too large")
    # The host's older copy is not left behind as if it were the guest's.
    eventually(host_x.paste, None)

    agent_stack.guest_copy(b"g" * 1000)
    eventually(host_x.paste, b"g" * 1000)


def test_two_vms_share_the_host_clipboard(
    agent_stack_factory: Callable[..., AgentStack], host_x: HostX,
    start_app: Callable[..., HostApp],
) -> None:
    one, two = agent_stack_factory(), agent_stack_factory()
    app = start_app(("one", one, {}), ("two", two, {}))
    host_x.copy(b"for both")
    eventually(guest_reader(one), b"for both")
    eventually(guest_reader(two), b"for both")

    xclip = one.guest_copy(b"copied in one")
    eventually(host_x.paste, b"copied in one")
    eventually(guest_reader(two), b"copied in one")
    assert running(xclip)  # one was not grabbed back

    two.guest_copy(b"copied in two")
    eventually(host_x.paste, b"copied in two")
    eventually(guest_reader(one), b"copied in two")
    assert app.command("status")["owners"]["CLIPBOARD"] == "two"
