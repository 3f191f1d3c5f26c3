"""Smoke tests of the AgentStack fixture, speaking raw vdagent bytes.

Why raw ``struct`` and not the engine: these tests check the fixture and the
real agent's observed behaviour (docs/guest-agent.md) independently of the code
under test, so a bug in the engine cannot hide a bug in the fixture or vice
versa.
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Callable

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
)

from tests.raw_host import (
    ANNOUNCE_CAPABILITIES,
    CLIPBOARD,
    CLIPBOARD_GRAB,
    CLIPBOARD_RELEASE,
    CLIPBOARD_REQUEST,
    GUEST_CAPS,
    MONITORS_CONFIG,
    MOUSE_STATE,
    PORT_CLIENT,
    REPLY,
    SEL_CLIPBOARD,
    SEL_PRIMARY,
    TYPE_UTF8_TEXT,
    parse_grab,
)
from tests.raw_host import RawHost as _RawHost

pytestmark = pytest.mark.system

LBUTTON = 1 << 1
IO_TIMEOUT = 5.0

RawHost = functools.partial(_RawHost, timeout=IO_TIMEOUT, peer="the relay")


def mouse(x: int, y: int, buttons: int, display: int = 0) -> bytes:
    return struct.pack("<IIIB", x, y, buttons, display)


def has_mouse(x: int, y: int) -> Callable[[list[InputEvent]], bool]:
    """Predicate: ABS_X=x, ABS_Y=y, BTN_LEFT down and a SYN_REPORT were seen."""

    def check(events: list[InputEvent]) -> bool:
        return (
            InputEvent(EV_ABS, ABS_X, x) in events
            and InputEvent(EV_ABS, ABS_Y, y) in events
            and InputEvent(EV_KEY, BTN_LEFT, 1) in events
            and InputEvent(EV_SYN, 0, 0) in events
        )

    return check


# ------------------------------------------------------------------------- tests


def test_stack_is_up(agent_stack: AgentStack) -> None:
    assert agent_stack.display.startswith(":")
    assert agent_stack.guest_screen_size() == (1024, 768)
    assert "opening vdagent virtio channel" in agent_stack.daemon_log_text()
    assert agent_stack.relay_connections() == 0


def test_caps_exchange(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as host:
        # The daemon's caps request=1 was sent before we connected: the relay held it.
        mtype, payload = host.recv()
        assert mtype == ANNOUNCE_CAPABILITIES
        assert struct.unpack("<II", payload) == (1, GUEST_CAPS)
        host.send_caps(request=1)
        mtype, payload = host.recv()
        assert mtype == ANNOUNCE_CAPABILITIES
        assert struct.unpack("<II", payload) == (0, GUEST_CAPS)


def test_guest_copy_sends_grab(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as host:
        host.handshake()
        agent_stack.guest_copy(b"hello from the guest")
        sel, serial, types = parse_grab(host.expect(CLIPBOARD_GRAB))
        assert sel == SEL_CLIPBOARD
        assert serial == 0  # request=1 reset the serials
        assert TYPE_UTF8_TEXT in types
        assert "UTF8_STRING" in agent_stack.guest_targets()

        # And the host can fetch it: REQUEST -> CLIPBOARD [sel][type] data.
        host.send(CLIPBOARD_REQUEST, struct.pack("<B3xI", SEL_CLIPBOARD, TYPE_UTF8_TEXT))
        data = host.expect(CLIPBOARD)
        assert struct.unpack_from("<B3xI", data) == (SEL_CLIPBOARD, TYPE_UTF8_TEXT)
        assert data[8:] == b"hello from the guest"


def test_host_grab_and_guest_paste(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as host:
        host.handshake()
        host.send(CLIPBOARD_GRAB, struct.pack("<B3xII", SEL_PRIMARY, 0, TYPE_UTF8_TEXT))
        # The session agent takes PRIMARY in X once it got the GRAB.
        deadline = time.monotonic() + IO_TIMEOUT
        while "UTF8_STRING" not in _targets_or_empty(agent_stack, "primary"):
            assert time.monotonic() < deadline, agent_stack.agent_log_text()[-2000:]
            time.sleep(0.02)
        pasted = agent_stack.guest_paste_async("primary", "UTF8_STRING")
        request = host.expect(CLIPBOARD_REQUEST)
        assert struct.unpack("<B3xI", request) == (SEL_PRIMARY, TYPE_UTF8_TEXT)
        text = "host text \u00e9\u20ac".encode()
        host.send(CLIPBOARD, struct.pack("<B3xI", SEL_PRIMARY, TYPE_UTF8_TEXT) + text)
        assert pasted.result(IO_TIMEOUT + 1) == text


def _targets_or_empty(stack: AgentStack, selection: str) -> list[str]:
    try:
        return stack.guest_targets(selection, timeout=2.0)
    except Exception:
        return []


def test_mouse_state_reaches_uinput(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as host:
        host.handshake()
        host.send(MOUSE_STATE, mouse(321, 123, LBUTTON))
        events = agent_stack.wait_uinput(has_mouse(321, 123), timeout=IO_TIMEOUT)
        # Order per docs/guest-agent.md §10: ABS_X, ABS_Y, buttons, SYN_REPORT.
        assert events[:4] == [
            InputEvent(EV_ABS, ABS_X, 321),
            InputEvent(EV_ABS, ABS_Y, 123),
            InputEvent(EV_KEY, BTN_LEFT, 1),
            InputEvent(EV_SYN, 0, 0),
        ]
        host.send(MOUSE_STATE, mouse(321, 123, 0))
        agent_stack.wait_uinput(lambda ev: InputEvent(EV_KEY, BTN_LEFT, 0) in ev)


def test_second_host_takes_over_without_daemon_noticing(agent_stack: AgentStack) -> None:
    first = RawHost(agent_stack.socket_path)
    try:
        first.handshake()
        agent_stack.guest_copy(b"one")
        assert parse_grab(first.expect(CLIPBOARD_GRAB))[1] == 0
        with RawHost(agent_stack.socket_path) as second:
            first.assert_eof()  # the relay closed the old host
            # No re-announce: caps and serials persist in the daemon.
            second.send(MOUSE_STATE, mouse(10, 20, LBUTTON))
            agent_stack.wait_uinput(has_mouse(10, 20))
            agent_stack.guest_copy(b"two")
            sel, serial, types = parse_grab(second.expect(CLIPBOARD_GRAB))
            assert (sel, serial) == (SEL_CLIPBOARD, 1)
            assert TYPE_UTF8_TEXT in types
            second.send(CLIPBOARD_REQUEST, struct.pack("<B3xI", SEL_CLIPBOARD, TYPE_UTF8_TEXT))
            assert second.expect(CLIPBOARD)[8:] == b"two"
    finally:
        first.close()
    assert agent_stack.relay_connections() == 2
    assert "lost spice client" not in agent_stack.daemon_log_text()
    assert agent_stack.count_log(r"opening vdagent virtio channel") == 1


def test_guest_bytes_held_until_next_host(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as first:
        first.handshake()
    agent_stack.wait_for_log(r"host closed n=1 reason=eof", which="relay")
    mark = len(agent_stack.relay_log_text())  # the start-up caps were held too
    agent_stack.guest_copy(b"while nobody listens")
    # The GRAB reached the relay while no host was connected.
    agent_stack.wait_for_log(r"held chunk port=1 size=\d+", which="relay", start=mark)
    with RawHost(agent_stack.socket_path) as second:
        sel, serial, types = parse_grab(second.expect(CLIPBOARD_GRAB))
        assert (sel, serial) == (SEL_CLIPBOARD, 0)
        assert TYPE_UTF8_TEXT in types
    assert "lost spice client" not in agent_stack.daemon_log_text()


def test_restart_session_agent(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as host:
        host.handshake()
        agent_stack.guest_copy(b"owned by the guest")
        host.expect(CLIPBOARD_GRAB)
        agent_stack.restart_session_agent()
        # 1-byte RELEASE (just the selection number), then a fresh caps request=1.
        mtype, payload = host.recv()
        assert (mtype, payload) == (CLIPBOARD_RELEASE, bytes([SEL_CLIPBOARD]))
        request, caps = struct.unpack("<II", host.expect(ANNOUNCE_CAPABILITIES))
        assert (request, caps) == (1, GUEST_CAPS)
        host.send_caps(request=1)
        assert struct.unpack("<II", host.expect(ANNOUNCE_CAPABILITIES)) == (0, GUEST_CAPS)
        # The new session agent works.
        agent_stack.guest_copy(b"again")
        assert parse_grab(host.expect(CLIPBOARD_GRAB))[1] == 0


def test_monitors_config_resizes_guest(agent_stack: AgentStack) -> None:
    with RawHost(agent_stack.socket_path) as host:
        host.handshake()
        # VDAgentMonitorsConfig: num, flags; VDAgentMonConfig: height, width, depth, x, y.
        host.send(
            MONITORS_CONFIG, struct.pack("<II", 1, 0) + struct.pack("<IIIii", 600, 800, 24, 0, 0)
        )
        assert struct.unpack("<II", host.expect(REPLY)) == (MONITORS_CONFIG, 1)
        agent_stack.wait_screen_size((800, 600))
        # The daemon re-opens the fake uinput at the new size; mouse still works.
        agent_stack.wait_for_log(r"updating uinput size to 800x600")
        host.send(MOUSE_STATE, mouse(799, 599, LBUTTON))
        agent_stack.wait_uinput(has_mouse(799, 599))


def test_two_stacks_run_side_by_side(
    agent_stack: AgentStack, agent_stack_factory: Callable[..., AgentStack]
) -> None:
    other = agent_stack_factory()
    assert other.display != agent_stack.display
    assert other.socket_path != agent_stack.socket_path
    with RawHost(agent_stack.socket_path) as a, RawHost(other.socket_path) as b:
        a.handshake()
        b.handshake()
        other.guest_copy(b"only in the other guest")
        assert TYPE_UTF8_TEXT in parse_grab(b.expect(CLIPBOARD_GRAB))[2]
        with pytest.raises(TimeoutError):
            a.expect(CLIPBOARD_GRAB, timeout=0.3)


def test_large_guest_clipboard_arrives_as_one_chunk(agent_stack: AgentStack) -> None:
    """The daemon sends a whole clipboard as ONE chunk (docs/protocol.md §2.4); the
    relay must pass it whole and fast."""
    text = (b"0123456789abcdef" * 65536 * 4)[: 4 << 20]
    with RawHost(agent_stack.socket_path) as host:
        host.handshake()
        agent_stack.guest_copy(text)
        host.expect(CLIPBOARD_GRAB)
        t0 = time.monotonic()
        host.send(CLIPBOARD_REQUEST, struct.pack("<B3xI", SEL_CLIPBOARD, TYPE_UTF8_TEXT))
        data = host.expect(CLIPBOARD, timeout=15.0)
        elapsed = time.monotonic() - t0
        assert data[8:] == text
        assert host.chunks[-1] == (PORT_CLIENT, 20 + len(data))
        print(f"4 MiB guest->host clipboard in {elapsed:.3f}s")
