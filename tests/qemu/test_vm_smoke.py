"""Smoke tests of the QEMU fixture: real guests, real agent, real live migration, raw bytes.

Why raw ``struct`` and not the engine: these tests prove the fixture and the guest behaviour
the bridge is designed around (protocol.md §12) independently of the code under test.

Both tests: boot a source VM (and an incoming destination), speak the vdagent protocol on the
source's agent socket, copy in the guest, then migrate.  They differ in when the host reaches
the destination's socket:

- pre-connect (connected during the incoming phase): the guest sees no disconnect, caps,
  serials and the guest-owned clipboard carry over;
- late connect (after the switchover): the guest sees the host go away, reopens the port and
  needs a new caps announce with request=1; serials restart.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

import pytest
from vm import LOST_CLIENT_LINE, READY_LINE, QmpClient, Vm, migrate

pytestmark = pytest.mark.qemu

# --- protocol constants (spice-protocol vd_agent.h), written out on purpose
CHUNK = struct.Struct("<II")  # port, size
MSG = struct.Struct("<IIQI")  # protocol, type, opaque, size
VD_AGENT_PROTOCOL = 1
PORT_CLIENT = 1

CLIPBOARD = 4
ANNOUNCE_CAPABILITIES = 6
CLIPBOARD_GRAB = 7
CLIPBOARD_REQUEST = 8
CLIPBOARD_RELEASE = 9

GUEST_CAPS = 0x00038DE7  # spice-vdagentd 0.22.1, protocol.md §12
HOST_CAPS = sum(1 << bit for bit in (0, 1, 2, 5, 6, 16, 17))
# MOUSE_STATE, MONITORS_CONFIG, REPLY, CLIPBOARD_BY_DEMAND, CLIPBOARD_SELECTION,
# CLIPBOARD_NO_RELEASE_ON_REGRAB, CLIPBOARD_GRAB_SERIAL
assert HOST_CAPS == 0x00030067

SEL_CLIPBOARD = 0
TYPE_NONE = 0
TYPE_UTF8_TEXT = 1

IO_TIMEOUT = 10.0  # generous: TCG, and the first message after a migration is slower


def sel(selection: int) -> bytes:
    """The 4-byte selection prefix (CAP_CLIPBOARD_SELECTION)."""
    return struct.pack("<B3x", selection)


class RawHost:
    """A minimal host side on a QEMU agent socket: whole messages in, one chunk out."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(path)
        self.buf = bytearray()
        self.partial: dict[int, bytearray] = {}
        self.seen: list[tuple[int, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, mtype: int, payload: bytes = b"") -> None:
        msg = MSG.pack(VD_AGENT_PROTOCOL, mtype, 0, len(payload)) + payload
        assert len(msg) <= 2048, "the daemon rejects chunks > 2048 bytes"
        self.sock.sendall(CHUNK.pack(PORT_CLIENT, len(msg)) + msg)

    def send_caps(self, request: int) -> None:
        self.send(ANNOUNCE_CAPABILITIES, struct.pack("<II", request, HOST_CAPS))

    def _fill(self, need: int, deadline: float) -> None:
        while len(self.buf) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"host got {len(self.buf)}/{need} bytes; seen: {self.seen}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError(f"QEMU closed the agent connection; seen: {self.seen}")
            self.buf += data

    def recv(self, timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
        """Next whole message (type, payload), reassembled per port."""
        deadline = time.monotonic() + timeout
        while True:
            self._fill(CHUNK.size, deadline)
            port, size = CHUNK.unpack_from(self.buf)
            self._fill(CHUNK.size + size, deadline)
            acc = self.partial.setdefault(port, bytearray())
            acc += self.buf[CHUNK.size : CHUNK.size + size]
            del self.buf[: CHUNK.size + size]
            if len(acc) < MSG.size:
                continue
            protocol, mtype, _opaque, msize = MSG.unpack_from(acc)
            assert protocol == VD_AGENT_PROTOCOL, acc[:20].hex()
            if len(acc) < MSG.size + msize:
                continue
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

    def expect_caps(self, timeout: float = IO_TIMEOUT) -> tuple[int, int]:
        """(request, first caps word) of the next ANNOUNCE_CAPABILITIES."""
        payload = self.expect(ANNOUNCE_CAPABILITIES, timeout)
        request, caps = struct.unpack_from("<II", payload)
        return request, caps

    def expect_grab(self, timeout: float = IO_TIMEOUT) -> tuple[int, int, list[int]]:
        """(selection, serial, types) of the next CLIPBOARD_GRAB."""
        payload = self.expect(CLIPBOARD_GRAB, timeout)
        selection, serial = struct.unpack_from("<B3xI", payload)
        types = list(struct.unpack_from(f"<{(len(payload) - 8) // 4}I", payload, 8))
        return selection, serial, types

    def request(self, selection: int, ctype: int, timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
        """Send CLIPBOARD_REQUEST; return (type, data) of the CLIPBOARD answer."""
        self.send(CLIPBOARD_REQUEST, sel(selection) + struct.pack("<I", ctype))
        payload = self.expect(CLIPBOARD, timeout)
        got_sel, got_type = struct.unpack_from("<B3xI", payload)
        assert got_sel == selection
        return got_type, payload[8:]

    def assert_silent(self, seconds: float) -> None:
        """Nothing (no byte, no EOF) arrives for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        raise AssertionError(
            f"expected silence, got {data!r}" if data else "expected silence, got EOF"
        )

    def assert_eof(self, timeout: float = IO_TIMEOUT) -> None:
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(65536)
            if not data:
                return


def announce(host: RawHost) -> None:
    """The daemon's caps (request=1) → ours (request=1) → its answer (request=0)."""
    request, caps = host.expect_caps()
    assert (request, caps) == (1, GUEST_CAPS), f"guest caps {caps:#010x} request={request}"
    host.send_caps(request=1)
    request, caps = host.expect_caps()
    assert (request, caps) == (0, GUEST_CAPS)


def copy_in_guest(vm: Vm, host: RawHost, text: bytes) -> int:
    """Copy ``text`` in the guest; return the serial of the GRAB the host receives."""
    vm.guest_copy(text)
    selection, serial, types = host.expect_grab()
    assert selection == SEL_CLIPBOARD
    assert TYPE_UTF8_TEXT in types, types
    return serial


def test_pre_connected_host_sees_no_disconnect(vm_factory: Callable[..., Vm]) -> None:
    """Host on the destination socket before the switchover: nothing is lost."""
    dst = vm_factory("dst", incoming=True)
    src = vm_factory("src")
    guest_text = b"copied in the guest before the migration \xe2\x9c\x93"
    host_text = b"host clipboard after the migration"

    with (
        RawHost(src.agent_socket) as host,
        RawHost(dst.agent_socket) as dst_host,
        QmpClient(src.qmp_socket) as app_src_qmp,
        QmpClient(dst.qmp_socket) as app_dst_qmp,
    ):
        announce(host)
        serial = copy_in_guest(src, host, guest_text)

        result = migrate(src, dst)
        assert result.status == "completed"
        assert "RESUME" in result.destination_events
        print(f"boot {src.boot_seconds:.1f} s; {result}")

        # The app's own monitors (beside the fixture's) see the switchover too: the events
        # capability the fixture set is per VM, not per monitor.
        app_src_qmp.wait_event("MIGRATION", match=lambda e: e["data"]["status"] == "completed")
        app_dst_qmp.wait_event("RESUME")

        # The old connection: no bytes and no EOF while the source QEMU lives.
        host.assert_silent(0.3)

        # The guest-owned clipboard is still served through the destination.
        assert dst_host.request(SEL_CLIPBOARD, TYPE_UTF8_TEXT) == (TYPE_UTF8_TEXT, guest_text)

        # The daemon's serial count carried over: the next serial is accepted.
        dst_host.send(
            CLIPBOARD_GRAB, sel(SEL_CLIPBOARD) + struct.pack("<II", serial + 1, TYPE_UTF8_TEXT)
        )
        paste = dst.guest_paste_async()
        assert dst_host.expect(CLIPBOARD_REQUEST) == sel(SEL_CLIPBOARD) + struct.pack(
            "<I", TYPE_UTF8_TEXT
        )
        dst_host.send(CLIPBOARD, sel(SEL_CLIPBOARD) + struct.pack("<I", TYPE_UTF8_TEXT) + host_text)
        assert paste.result(IO_TIMEOUT + 5) == host_text

        log = dst.daemon_log()
        assert LOST_CLIENT_LINE not in log
        assert "grab discard" not in log
        assert log.count(READY_LINE) == 1, "the daemon reopened the port"

        # Only quitting the source ends the old connection.
        src.quit()
        host.assert_eof()


def test_late_connected_host_must_reannounce(vm_factory: Callable[..., Vm]) -> None:
    """Host reaches the destination only after the switchover: the guest saw it leave."""
    dst = vm_factory("dst", incoming=True)
    src = vm_factory("src")

    with RawHost(src.agent_socket) as host:
        announce(host)
        copy_in_guest(src, host, b"lost with the connection")
        result = migrate(src, dst, quit_source=True)
        assert result.status == "completed"
        print(f"boot {src.boot_seconds:.1f} s; {result}")
        host.assert_eof()

    # At RESUME the guest sees the host side closed; the daemon reopens the port at once
    # (silently: no second READY_LINE) and waits for a host.
    dst.wait_log(LOST_CLIENT_LINE, timeout=IO_TIMEOUT)
    with RawHost(dst.agent_socket) as dst_host:
        dst_host.send_caps(request=1)
        request, caps = dst_host.expect_caps()
        assert (request, caps) == (0, GUEST_CAPS)
        # The guest-owned clipboard was dropped at the disconnect (protocol.md §12).
        assert (CLIPBOARD_RELEASE, sel(SEL_CLIPBOARD)) in dst_host.seen
        assert dst_host.request(SEL_CLIPBOARD, TYPE_UTF8_TEXT) == (TYPE_NONE, b"")

        # After the re-announce the serial count restarts and copy/paste works again.
        assert copy_in_guest(dst, dst_host, b"copied after the migration") == 0
        assert dst_host.request(SEL_CLIPBOARD, TYPE_UTF8_TEXT) == (
            TYPE_UTF8_TEXT,
            b"copied after the migration",
        )
