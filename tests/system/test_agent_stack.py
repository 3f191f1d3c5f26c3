"""Smoke tests of the AgentStack fixture, speaking raw vdagent bytes.

Why raw ``struct`` and not the engine: these tests check the fixture and the
real agent's observed behaviour (protocol.md §12) independently of the code
under test, so a bug in the engine cannot hide a bug in the fixture or vice
versa.
"""

from __future__ import annotations

import socket
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

pytestmark = pytest.mark.system

# --- protocol constants (spice-protocol vd_agent.h), written out on purpose
CHUNK = struct.Struct("<II")  # port, size
MSG = struct.Struct("<IIQI")  # protocol, type, opaque, size
VD_AGENT_PROTOCOL = 1
PORT_CLIENT = 1

MOUSE_STATE = 1
MONITORS_CONFIG = 2
REPLY = 3
CLIPBOARD = 4
ANNOUNCE_CAPABILITIES = 6
CLIPBOARD_GRAB = 7
CLIPBOARD_REQUEST = 8
CLIPBOARD_RELEASE = 9

CAP_MOUSE_STATE = 0
CAP_MONITORS_CONFIG = 1
CAP_REPLY = 2
CAP_CLIPBOARD_BY_DEMAND = 5
CAP_CLIPBOARD_SELECTION = 6
CAP_CLIPBOARD_GRAB_SERIAL = 17

GUEST_CAPS = 0x00038DE7  # spice-vdagentd 0.22.1, protocol.md §3 / §12
HOST_CAPS = (
    (1 << CAP_MOUSE_STATE)
    | (1 << CAP_MONITORS_CONFIG)
    | (1 << CAP_REPLY)
    | (1 << CAP_CLIPBOARD_BY_DEMAND)
    | (1 << CAP_CLIPBOARD_SELECTION)
    | (1 << CAP_CLIPBOARD_GRAB_SERIAL)
)
assert HOST_CAPS == 0x00020067

SEL_CLIPBOARD = 0
SEL_PRIMARY = 1
TYPE_UTF8_TEXT = 1
LBUTTON = 1 << 1

IO_TIMEOUT = 5.0


class RawHost:
    """A minimal host side over the relay socket: whole messages in, one chunk out."""

    def __init__(self, path: str, timeout: float = IO_TIMEOUT) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = bytearray()
        self.partial: dict[int, bytearray] = {}
        self.seen: list[tuple[int, bytes]] = []
        self.chunks: list[tuple[int, int]] = []  # (port, size) of every chunk received

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending
    def send(self, mtype: int, payload: bytes = b"", port: int = PORT_CLIENT) -> None:
        msg = MSG.pack(VD_AGENT_PROTOCOL, mtype, 0, len(payload)) + payload
        assert len(msg) <= 2048, "the daemon rejects chunks > 2048 bytes"
        self.sock.sendall(CHUNK.pack(port, len(msg)) + msg)

    def send_caps(self, request: int, caps: int = HOST_CAPS) -> None:
        self.send(ANNOUNCE_CAPABILITIES, struct.pack("<II", request, caps))

    # -- receiving
    def _fill(self, need: int, deadline: float) -> None:
        while len(self.buf) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"host got {len(self.buf)}/{need} bytes; messages so far: {self.seen}"
                )
            self.sock.settimeout(remaining)
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("relay closed the host connection")
            self.buf += data

    def recv(self, timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
        """Next whole message (type, payload), reassembled per port."""
        deadline = time.monotonic() + timeout
        while True:
            self._fill(CHUNK.size, deadline)
            port, size = CHUNK.unpack_from(self.buf)
            self._fill(CHUNK.size + size, deadline)
            body = bytes(self.buf[CHUNK.size : CHUNK.size + size])
            del self.buf[: CHUNK.size + size]
            self.chunks.append((port, size))
            acc = self.partial.setdefault(port, bytearray())
            acc += body
            if len(acc) < MSG.size:
                continue
            protocol, mtype, _opaque, msize = MSG.unpack_from(acc)
            assert protocol == VD_AGENT_PROTOCOL, acc[:20].hex()
            if len(acc) < MSG.size + msize:
                continue
            assert len(acc) == MSG.size + msize, "a chunk carried bytes of two messages"
            payload = bytes(acc[MSG.size :])
            del self.partial[port]
            self.seen.append((mtype, payload))
            return mtype, payload

    def expect(self, mtype: int, timeout: float = IO_TIMEOUT) -> bytes:
        """Skip other messages until one of ``mtype`` arrives; return its payload."""
        deadline = time.monotonic() + timeout
        while True:
            got, payload = self.recv(max(0.0, deadline - time.monotonic()))
            if got == mtype:
                return payload

    def assert_eof(self, timeout: float = IO_TIMEOUT) -> None:
        """The relay closed this connection (e.g. after a takeover)."""
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(65536)
            if not data:
                return

    def handshake(self) -> int:
        """Read the daemon's caps request=1, announce ours with request=1 and
        read the daemon's answer (request=0).  Returns the guest caps word."""
        request, caps = struct.unpack("<II", self.expect(ANNOUNCE_CAPABILITIES))
        assert request == 1
        self.send_caps(request=1)
        request2, caps2 = struct.unpack("<II", self.expect(ANNOUNCE_CAPABILITIES))
        assert request2 == 0
        assert caps2 == caps
        return int(caps)


def parse_grab(payload: bytes) -> tuple[int, int, list[int]]:
    """GRAB with SELECTION + GRAB_SERIAL in effect: [u8 sel, 3 pad][u32 serial][u32 types...]."""
    sel, pad, serial = struct.unpack_from("<B3sI", payload)
    assert pad == b"\0\0\0"
    types = list(struct.unpack_from(f"<{(len(payload) - 8) // 4}I", payload, 8))
    return sel, serial, types


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
        # Order per protocol.md §7.8: ABS_X, ABS_Y, buttons, SYN_REPORT.
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
    """The daemon sends a whole clipboard as ONE chunk (protocol.md §1.4); the
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
