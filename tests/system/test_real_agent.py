"""The host session end to end against the REAL Linux guest agent (spice-vdagent 0.22.1).

Every test drives :class:`HostSession` through :class:`HostDriver` over the relay to a real
``spice-vdagentd`` + ``spice-vdagent`` on Xvfb (tests/system/agent_stack.py), and checks the
outcome on the guest side with the guest's own tools: ``xclip`` for the X selections, the fake
uinput records for the pointer, ``xdpyinfo`` for the screen, the transfer directory for
files, and the daemon's debug log for what the daemon decided (docs/protocol.md §6,
docs/guest-agent.md §3–§12).

Each test reads as one behaviour of the protocol; the helpers below name the guest and host
actions ("the guest copies", "the host fetches"...).
"""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from agent_stack import (
    ABS_X,
    ABS_Y,
    BTN_LEFT,
    BTN_MIDDLE,
    BTN_RIGHT,
    EV_ABS,
    EV_KEY,
    EV_REL,
    EV_SYN,
    REL_WHEEL,
    AgentStack,
    GuestCommandError,
    InputEvent,
)
from host_driver import HostDriver

from vdagent_bridge.protocol import (
    CapabilitiesReceived,
    Capability,
    Caps,
    ClipboardGrabbed,
    ClipboardGrabIgnored,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardType,
    FileTransferFinished,
    FileTransferReady,
    HostSession,
    MessageType,
    MonitorConfig,
    MouseButton,
    Owner,
    ReplyReceived,
    Selection,
)

pytestmark = pytest.mark.system

TIMEOUT = 10.0
TEXT = ClipboardType.UTF8_TEXT
PNG = ClipboardType.IMAGE_PNG
CB = Selection.CLIPBOARD
PRIMARY = Selection.PRIMARY

#: What spice-vdagentd 0.22.1 announces (docs/guest-agent.md §3).
GUEST_CAPS_WORD = 0x00038DE7

#: The X selection name of each vdagent selection.
X_SELECTION = {CB: "clipboard", PRIMARY: "primary"}
#: The X target a guest application uses for each vdagent type.
X_TARGET = {TEXT: "UTF8_STRING", PNG: "image/png"}
#: A target only the session agent offers when it owns a selection for the host (xclip, the
#: guest-side owner in these tests, offers just TARGETS and the one target it was given).
AGENT_ONLY_TARGET = {TEXT: "text/plain;charset=utf-8", PNG: "image/png"}

MIB = 1 << 20


# ----------------------------------------------------------------------------- data


def make_png(width: int = 61, height: int = 37) -> bytes:
    """A real RGB PNG (zlib + struct), a gradient, so every byte of it matters."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    rows = b"".join(
        b"\0"
        + bytes(v for x in range(width) for v in ((x * 4) & 255, (y * 7) & 255, (x ^ y) & 255))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def big_text(size: int) -> bytes:
    """``size`` bytes of numbered UTF-8 lines (64 bytes each, an é in every one)."""
    line_count = size // 64
    assert line_count * 64 == size
    text = b"".join(
        b"%08d caf\xc3\xa9 the quick brown fox jumps over the lazy dog.....\n" % i
        for i in range(line_count)
    )
    assert len(text) == size
    return text


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as it comes back from a JSON file."""
    back: dict[str, Any] = json.loads(json.dumps(state))
    return back


# ----------------------------------------------------------------------------- fixtures


def handshake(host: HostDriver) -> CapabilitiesReceived:
    """Complete the caps exchange: the daemon's request=1 (held by the relay since the port
    opened), then its answer (request=0) to our announce."""
    first = host.wait_for(CapabilitiesReceived, TIMEOUT)
    assert first.request
    host.wait_for(CapabilitiesReceived, TIMEOUT, where=lambda e: not e.request)
    host.flush()  # our answer and MAX_CLIPBOARD
    return first


@pytest.fixture
def host(agent_stack: AgentStack) -> Iterator[HostDriver]:
    """A host connected to ``agent_stack``, caps exchanged."""
    with HostDriver(agent_stack.socket_path) as driver:
        handshake(driver)
        yield driver


def patient_host(stack: AgentStack, **kwargs: Any) -> HostDriver:
    """A connected host whose requests may take 30 s (for the big transfers)."""
    driver = HostDriver(
        stack.socket_path,
        HostSession(request_timeout=30.0, guest_request_timeout=30.0),
        start=True,
        **kwargs,
    )
    handshake(driver)
    return driver


# ----------------------------------------------------------------------------- actions


def guest_copies(
    stack: AgentStack,
    host: HostDriver,
    data: bytes,
    sel: Selection = CB,
    kind: ClipboardType = TEXT,
) -> ClipboardGrabbed:
    """A guest application copies ``data``; the host sees the guest's GRAB."""
    stack.guest_copy(data, X_SELECTION[sel], X_TARGET[kind])
    grab = host.wait_for(ClipboardGrabbed, TIMEOUT, where=lambda e: e.selection == sel)
    assert kind in grab.types
    assert host.session.owner(sel) is Owner.GUEST
    return grab


def host_fetches(host: HostDriver, sel: Selection = CB, kind: ClipboardType = TEXT) -> bytes:
    """The host pastes what the guest offers: REQUEST, then the guest's CLIPBOARD data."""
    host.session.request_clipboard(sel, kind, host.now())
    got = host.wait_for(ClipboardReceived, 3 * TIMEOUT, where=lambda e: e.selection == sel)
    assert got.type == kind
    return got.data


def host_copies(
    stack: AgentStack, host: HostDriver, sel: Selection = CB, kind: ClipboardType = TEXT
) -> None:
    """The host owns ``sel`` now (GRAB); returns once the session agent owns the X
    selection on the host's behalf."""
    mark = len(stack.agent_log_text())
    host.session.grab_clipboard(sel, (kind,))
    host.flush()
    stack.wait_for_log(rf"received clipboard grab, arg1: {int(sel)}\b", TIMEOUT, "agent", mark)
    wait_guest_targets(stack, host, sel, AGENT_ONLY_TARGET[kind])


def wait_guest_targets(stack: AgentStack, host: HostDriver, sel: Selection, target: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if target in stack.guest_targets(X_SELECTION[sel], timeout=2.0):
                return
        except GuestCommandError:
            pass
        assert time.monotonic() < deadline, f"{target} never offered in the guest {sel.name}"
        host.pump(0.02)


def finish_paste(host: HostDriver, paste: Future[bytes], timeout: float = TIMEOUT) -> bytes:
    """Keep the host pumping (its answer may be megabytes) until the guest paste returns."""
    deadline = time.monotonic() + timeout
    while not paste.done():
        assert time.monotonic() < deadline, "the guest paste did not return"
        host.pump(0.02)
    return paste.result()


def guest_pastes(
    stack: AgentStack,
    host: HostDriver,
    data: bytes,
    sel: Selection = CB,
    kind: ClipboardType = TEXT,
    timeout: float = TIMEOUT,
) -> bytes:
    """A guest application pastes the host-owned ``sel``: the agent's REQUEST reaches the
    host, which answers with ``data``; returns what the application got."""
    paste = stack.guest_paste_async(X_SELECTION[sel], X_TARGET[kind], timeout=timeout)
    request = host.wait_for(ClipboardRequested, timeout)
    assert (request.selection, request.type) == (sel, kind)
    assert host.session.send_clipboard_data(sel, kind, data)
    return finish_paste(host, paste, timeout + 5.0)


def daemon_log_since(stack: AgentStack, mark: int) -> str:
    return stack.daemon_log_text()[mark:]


# ----------------------------------------------------------------------------- caps


def test_caps_exchange_negotiates_selection_and_grab_serial_and_sets_max_clipboard(
    agent_stack: AgentStack,
) -> None:
    with HostDriver(agent_stack.socket_path) as host:
        guest = handshake(host)
        assert guest.caps == Caps((GUEST_CAPS_WORD,))
        assert not guest.guest_restarted
        assert Capability.CLIPBOARD_SELECTION in guest.negotiated
        assert Capability.CLIPBOARD_GRAB_SERIAL in guest.negotiated
        assert Capability.CLIPBOARD_BY_DEMAND in guest.negotiated
        assert host.session.clipboard_ready
        assert host.session.wire_format.selection and host.session.wire_format.grab_serial
        # Our announce reached the daemon as a new client, and MAX_CLIPBOARD (sent once the
        # guest's caps showed it has the cap) was accepted with our value.
        agent_stack.wait_for_log(r"^spice-vdagentd: New client connected$", TIMEOUT)
        match = agent_stack.wait_for_log(r"Set max clipboard: (-?\d+)", TIMEOUT)
        assert int(match.group(1)) == host.session.max_clipboard
        host.settle()
        log = agent_stack.daemon_log_text()
        assert not re.search(r"wrong|invalid|unknown|lost", log, re.IGNORECASE), log
        assert host.errors == []


# ----------------------------------------------------------------------------- clipboard


@pytest.mark.parametrize("sel", [CB, PRIMARY], ids=lambda s: s.name)
def test_guest_text_copy_reaches_the_host(
    agent_stack: AgentStack, host: HostDriver, sel: Selection
) -> None:
    text = f"copied in the guest's {sel.name}: caf\u00e9 \u20ac\nsecond line\n".encode()
    grab = guest_copies(agent_stack, host, text, sel)
    assert grab.serial == 0  # the first grab after our announce
    assert host_fetches(host, sel) == text


@pytest.mark.parametrize("sel", [CB, PRIMARY], ids=lambda s: s.name)
def test_host_text_copy_is_pasted_in_the_guest(
    agent_stack: AgentStack, host: HostDriver, sel: Selection
) -> None:
    text = f"copied on the host's {sel.name}: na\u00efve \u2603\nline two\n".encode()
    host_copies(agent_stack, host, sel)
    assert guest_pastes(agent_stack, host, text, sel) == text
    assert "grab discard" not in agent_stack.daemon_log_text()


def test_png_passes_byte_identical_both_ways(agent_stack: AgentStack, host: HostDriver) -> None:
    guest_png = make_png(61, 37)
    guest_copies(agent_stack, host, guest_png, CB, PNG)
    assert host_fetches(host, CB, PNG) == guest_png

    host_png = make_png(40, 90)
    host_copies(agent_stack, host, CB, PNG)
    assert guest_pastes(agent_stack, host, host_png, CB, PNG) == host_png


def test_16_mib_of_text_from_guest_to_host(agent_stack: AgentStack) -> None:
    text = big_text(16 * MIB)
    with patient_host(agent_stack) as host:
        guest_copies(agent_stack, host, text)
        assert host_fetches(host) == text  # the agent sends it as one 16 MiB chunk
        assert host.errors == []


def test_16_mib_of_text_from_host_to_guest(agent_stack: AgentStack) -> None:
    text = big_text(16 * MIB)
    with patient_host(agent_stack) as host:
        host_copies(agent_stack, host)
        # 8192 chunks of 2048 bytes, written while the driver keeps reading.
        assert guest_pastes(agent_stack, host, text, timeout=30.0) == text
        assert host.errors == []


# ----------------------------------------------------------------------------- pointer


SYN = InputEvent(EV_SYN, 0, 0)


def test_mouse_moves_land_on_the_right_pixels(agent_stack: AgentStack, host: HostDriver) -> None:
    agent_stack.clear_uinput_events()
    for x, y in [(100, 200), (640, 200), (640, 480), (0, 0), (1023, 767)]:
        assert host.session.send_mouse(x, y)
    host.flush()
    assert agent_stack.uinput_reports(5) == [
        [InputEvent(EV_ABS, ABS_X, 100), InputEvent(EV_ABS, ABS_Y, 200), SYN],
        [InputEvent(EV_ABS, ABS_X, 640), SYN],  # only what changed is reported
        [InputEvent(EV_ABS, ABS_Y, 480), SYN],
        [InputEvent(EV_ABS, ABS_X, 0), InputEvent(EV_ABS, ABS_Y, 0), SYN],
        [InputEvent(EV_ABS, ABS_X, 1023), InputEvent(EV_ABS, ABS_Y, 767), SYN],
    ]


def test_mouse_buttons_press_and_release(agent_stack: AgentStack, host: HostDriver) -> None:
    agent_stack.clear_uinput_events()
    clicks = [
        (MouseButton.LEFT, BTN_LEFT, 10, 20),
        (MouseButton.RIGHT, BTN_RIGHT, 500, 300),
        (MouseButton.MIDDLE, BTN_MIDDLE, 1000, 700),
    ]
    for button, _code, x, y in clicks:
        host.session.send_mouse(x, y, button)
        host.session.send_mouse(x, y)
    host.flush()
    expected = []
    for _button, code, x, y in clicks:
        expected.append(
            [
                InputEvent(EV_ABS, ABS_X, x),
                InputEvent(EV_ABS, ABS_Y, y),
                InputEvent(EV_KEY, code, 1),
                SYN,
            ]
        )
        expected.append([InputEvent(EV_KEY, code, 0), SYN])
    assert agent_stack.uinput_reports(len(expected)) == expected


def test_wheel_steps_up_and_down(agent_stack: AgentStack, host: HostDriver) -> None:
    agent_stack.clear_uinput_events()
    host.session.send_wheel(True, 300, 400)
    host.session.send_wheel(True, 300, 400)
    host.session.send_wheel(False, 300, 400)
    host.flush()
    # Each step is the wheel bit pressed then released: REL_WHEEL on the press only.
    assert agent_stack.uinput_reports(6) == [
        [
            InputEvent(EV_ABS, ABS_X, 300),
            InputEvent(EV_ABS, ABS_Y, 400),
            InputEvent(EV_REL, REL_WHEEL, 1),
            SYN,
        ],
        [SYN],
        [InputEvent(EV_REL, REL_WHEEL, 1), SYN],
        [SYN],
        [InputEvent(EV_REL, REL_WHEEL, -1), SYN],
        [SYN],
    ]


# ----------------------------------------------------------------------------- grab serials


def test_host_grab_after_several_guest_grabs_is_accepted(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    for serial, text in enumerate([b"one", b"two", b"three"]):
        assert guest_copies(agent_stack, host, text).serial == serial
    assert host.session.serial(CB) == 3  # in step with the daemon's counter
    host_copies(agent_stack, host)  # the GRAB carries 3
    assert host.session.serial(CB) == 4
    assert guest_pastes(agent_stack, host, b"the host's text") == b"the host's text"
    log = agent_stack.daemon_log_text()
    assert "grab discard" not in log
    assert "client grab wins" not in log  # not a tie: exactly the serial the daemon expected


def test_crossing_grabs_the_host_wins_a_tie(agent_stack: AgentStack, host: HostDriver) -> None:
    """The guest copies while the host copies: both GRABs carry serial 1 (after one guest
    grab at 0). The daemon lets the host win the tie; the session drops the guest's GRAB as
    lower than its own counter. Both sides say the host owns the clipboard."""
    guest_copies(agent_stack, host, b"first guest copy")  # serial 0
    mark = len(agent_stack.daemon_log_text())
    agent_stack.guest_copy(b"second guest copy")
    host.wait_unread_chunks(1)  # the guest's GRAB passed the daemon; the session has not seen it
    host.session.grab_clipboard(CB, (TEXT,))  # carries 1 as well
    host.flush()
    ignored = host.wait_for(ClipboardGrabIgnored, TIMEOUT)
    assert (ignored.selection, ignored.serial, ignored.expected) == (CB, 1, 2)
    agent_stack.wait_for_log(r"client grab wins", TIMEOUT, start=mark)
    assert "grab discard" not in daemon_log_since(agent_stack, mark)
    # Both sides agree: the host owns it.
    assert host.session.owner(CB) is Owner.HOST
    wait_guest_targets(agent_stack, host, CB, AGENT_ONLY_TARGET[TEXT])
    assert guest_pastes(agent_stack, host, b"host data") == b"host data"
    assert not [e for e in host.events if isinstance(e, ClipboardGrabbed) and e.serial == 1]


def test_crossing_grabs_two_guest_grabs_beat_one_host_grab(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    """Two guest copies cross one host copy: the host's GRAB (serial 0) is behind the
    daemon's counter (2) and discarded; the session drops the guest's first GRAB (0, a tie it
    thinks it won) but accepts the second (1). Both sides say the guest owns it, with the
    second copy's data."""
    mark = len(agent_stack.daemon_log_text())
    agent_stack.guest_copy(b"guest copy A")
    host.wait_unread_chunks(1)
    agent_stack.guest_copy(b"guest copy B")
    host.wait_unread_chunks(2)
    host.session.grab_clipboard(CB, (TEXT,))  # carries 0
    host.flush()
    grab = host.wait_for(ClipboardGrabbed, TIMEOUT)
    assert grab.serial == 1
    ignored = [e for e in host.events if isinstance(e, ClipboardGrabIgnored)]
    assert [(e.serial, e.expected) for e in ignored] == [(0, 1)]
    agent_stack.wait_for_log(r"grab discard, serial 0 != session serial 2", TIMEOUT, start=mark)
    assert "client grab wins" not in daemon_log_since(agent_stack, mark)
    # Both sides agree: the guest owns it (xclip B still serves it in the guest).
    assert host.session.owner(CB) is Owner.GUEST
    assert agent_stack.guest_paste("clipboard") == b"guest copy B"
    assert agent_stack.guest_targets("clipboard") == ["TARGETS", "UTF8_STRING"]
    assert host_fetches(host) == b"guest copy B"


# ----------------------------------------------------------------------------- monitors


def test_monitors_config_resizes_the_guest_screen(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    assert agent_stack.guest_screen_size() == (1024, 768)
    assert host.session.send_monitors_config((MonitorConfig(800, 600),))
    reply = host.wait_for(ReplyReceived, TIMEOUT)
    assert reply.type == MessageType.MONITORS_CONFIG
    assert reply.ok
    assert agent_stack.wait_screen_size((800, 600), TIMEOUT) == (800, 600)
    # The pointer now lives on the new screen; the session clamps to it.
    agent_stack.wait_for_log(r"updating uinput size to 800x600", TIMEOUT)
    agent_stack.clear_uinput_events()
    host.session.send_mouse(5000, 5000)
    host.flush()
    assert agent_stack.uinput_reports(1) == [
        [InputEvent(EV_ABS, ABS_X, 799), InputEvent(EV_ABS, ABS_Y, 599), SYN]
    ]


# ----------------------------------------------------------------------------- files


def test_file_sent_by_the_host_lands_in_the_guest_transfer_directory(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    content = bytes((i * 131 + i // 251) & 255 for i in range(300_000))  # 5 DATA pieces
    transfer = host.session.start_file_transfer("report \u00e9t\u00e9.bin", len(content))
    ready = host.wait_for(FileTransferReady, TIMEOUT)
    assert ready.id == transfer
    host.session.send_file_data(transfer, content)
    done = host.wait_for(FileTransferFinished, TIMEOUT)
    assert done.id == transfer
    assert done.ok, done.detail
    landed = Path(agent_stack.xfer_dir) / "report \u00e9t\u00e9.bin"
    assert landed.read_bytes() == content


# ----------------------------------------------------------------------------- reconnect


def test_host_reconnect_continues_the_conversation_from_a_snapshot(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    """A new connection that restores the snapshot of the old one continues the same
    conversation: nothing is re-announced, the daemon notices nothing, the guest-owned and
    host-owned selections stay valid and the serials stay in step."""
    guest_copies(agent_stack, host, b"copied before the reconnect")  # CLIPBOARD serial 0
    host_copies(agent_stack, host, PRIMARY)  # PRIMARY serial 0
    host.settle()
    state = roundtrip(host.session.snapshot(host.now()))
    host.close()
    agent_stack.wait_for_log(r"host closed n=1", TIMEOUT, "relay")
    mark = len(agent_stack.daemon_log_text())

    with HostDriver(
        agent_stack.socket_path, HostSession.restore(state, HostDriver.now())
    ) as resumed:
        agent_stack.wait_for_log(r"host connected n=2", TIMEOUT, "relay")
        # The guest's clipboard from before is still served on the new connection.
        assert host_fetches(resumed) == b"copied before the reconnect"
        # The host's PRIMARY from before is still pasteable in the guest.
        assert guest_pastes(agent_stack, resumed, b"host primary", PRIMARY) == b"host primary"
        # A host copy continues the serial (1 after the guest's 0) and is accepted.
        host_copies(agent_stack, resumed, CB)
        assert resumed.session.serial(CB) == 2
        assert guest_pastes(agent_stack, resumed, b"host copy after") == b"host copy after"
        # A guest copy continues the count too, and reaches the host.
        grab = guest_copies(agent_stack, resumed, b"guest copy after")
        assert grab.serial == 2
        assert host_fetches(resumed) == b"guest copy after"

        assert not [e for e in resumed.events if isinstance(e, CapabilitiesReceived)]
        assert resumed.errors == []
    log = daemon_log_since(agent_stack, mark)
    for line in (
        "New client connected",
        "Set max clipboard",
        "lost spice client",
        "grab discard",
        "client disconnected",
    ):
        assert line not in log, f"{line!r} in daemon.log after the reconnect:\n{log}"
    assert agent_stack.count_log(r"New client connected") == 1


def test_requests_pending_at_the_snapshot_complete_on_the_new_connection(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    """Requests in flight move with the snapshot: a guest paste waiting for the host is
    answered from the new connection, and a host request still queued in the session (its
    bytes are in the snapshot's outgoing data) goes out and is answered there."""
    host_copies(agent_stack, host, CB)
    paste = agent_stack.guest_paste_async("clipboard", timeout=TIMEOUT)
    host.wait_for(ClipboardRequested, TIMEOUT)  # the guest application waits for the host
    guest_copies(agent_stack, host, b"guest primary", PRIMARY)
    host.session.request_clipboard(PRIMARY, TEXT, host.now())  # queued, not written yet
    state = roundtrip(host.session.snapshot(host.now()))
    assert state["outgoing"] and state["clipboard"]["to_guest"]
    assert state["clipboard"]["from_guest"]
    host.close()

    with HostDriver(
        agent_stack.socket_path, HostSession.restore(state, HostDriver.now())
    ) as resumed:
        assert resumed.session.send_clipboard_data(CB, TEXT, b"answered after the reconnect")
        assert finish_paste(resumed, paste) == b"answered after the reconnect"
        got = resumed.wait_for(ClipboardReceived, TIMEOUT)
        assert (got.selection, got.data) == (PRIMARY, b"guest primary")
        assert resumed.errors == []
    assert agent_stack.count_log(r"New client connected") == 1  # no re-announce
    assert "lost spice client" not in agent_stack.daemon_log_text()


def test_host_reconnect_mid_message_completes_the_message(
    agent_stack_factory: Any,
) -> None:
    """A snapshot taken in the middle of the guest's 4 MiB answer continues on the new
    connection, which receives exactly the rest of the byte stream.

    The relay runs in raw mode, the byte-stream semantics of a QEMU socket chardev: after a
    takeover the new host gets the bytes the old one was not sent. (In the default
    whole-chunk mode the relay resends a partly delivered chunk whole, and the agent sends a
    message as ONE chunk, so there a mid-message snapshot can never be continued: the new
    connection starts the message over.) To lose nothing in flight, the new connection is
    opened while the old one is still open (as a migrating host pre-connects to the
    destination); the relay closes the old one, which is read to its EOF before the snapshot.
    """
    stack: AgentStack = agent_stack_factory(whole_chunks=False)
    data = big_text(4 * MIB)
    at_snapshot: dict[str, Any] = {}

    def resume(old: HostSession) -> HostSession:
        """The new connection's session: the old one's snapshot, through JSON."""
        at_snapshot["buffered"] = old.buffered()
        state = roundtrip(old.snapshot(HostDriver.now()))
        return HostSession.restore(
            state, HostDriver.now(), request_timeout=30.0, guest_request_timeout=30.0
        )

    with patient_host(stack, read_size=64 * 1024) as host:
        guest_copies(stack, host, data)
        host.session.request_clipboard(CB, TEXT, host.now())
        host.pump_until(lambda: host.session.buffered() >= MIB, TIMEOUT)
        host.reconnect(resume, drain=True)
        # The snapshot was taken in the middle of the message.
        assert not [e for e in host.events if isinstance(e, ClipboardReceived)]
        assert MIB <= at_snapshot["buffered"] < len(data)
        # The restored session completes it from the new connection.
        got = host.wait_for(ClipboardReceived, 3 * TIMEOUT)
        assert got.data == data
        assert host.errors == []
        # The new connection carried exactly the rest of the message: its chunk header
        # (8 bytes) and message header (20) went to the old one with the first bytes of the
        # payload ([selection, pad][type] + data).
        assert host.bytes_received == 8 + len(data) - at_snapshot["buffered"]
    assert re.search(r"host connected n=2 takeover=1", stack.relay_log_text())
    assert "lost spice client" not in stack.daemon_log_text()


# ----------------------------------------------------------------------------- guest restart


def test_session_agent_restart_resets_the_conversation(
    agent_stack: AgentStack, host: HostDriver
) -> None:
    """The guest's session agent exits and a new one starts: the daemon RELEASEs the guest's
    clipboard (with its 1-byte payload) and asks for caps again; the session re-announces,
    re-grabs what the host owns, and copying works both ways again."""
    guest_copies(agent_stack, host, b"owned by the old agent")
    host_copies(agent_stack, host, PRIMARY)
    agent_stack.restart_session_agent(timeout=TIMEOUT)

    released = host.wait_for(ClipboardReleased, TIMEOUT)
    assert released.selection == CB
    restart = host.wait_for(CapabilitiesReceived, TIMEOUT)
    assert restart.request and restart.guest_restarted
    assert restart.caps == Caps((GUEST_CAPS_WORD,))
    # The release came first, from the daemon's 1-byte RELEASE, understood without error.
    assert host.events.index(released) < host.events.index(restart)
    assert host.errors == []
    assert host.session.owner(CB) is Owner.NONE
    # The host's PRIMARY was re-grabbed for the new agent, with the serials restarted at 0.
    assert host.session.owner(PRIMARY) is Owner.HOST
    assert host.session.serial(PRIMARY) == 1
    wait_guest_targets(agent_stack, host, PRIMARY, AGENT_ONLY_TARGET[TEXT])
    assert guest_pastes(agent_stack, host, b"host primary", PRIMARY) == b"host primary"
    # Copies work both ways with the new agent.
    assert guest_copies(agent_stack, host, b"new agent copy").serial == 0
    assert host_fetches(host) == b"new agent copy"
    host_copies(agent_stack, host, CB)
    assert guest_pastes(agent_stack, host, b"host copy") == b"host copy"
    assert "grab discard" not in agent_stack.daemon_log_text()
