"""A minimal host side of the vdagent protocol in raw ``struct``, for the smoke tests of the
real-agent fixtures (tests/system, through the relay; tests/qemu, on a QEMU agent socket).

Why raw bytes and not the engine: those tests check the fixtures and the real agent's
observed behaviour (docs/guest-agent.md, docs/qemu.md §3–§4) independently of the code under
test, so a bug in the engine cannot hide a bug in a fixture or the other way round. The
constants are written out from spice-protocol's vd_agent.h on purpose, for the same reason.
"""

from __future__ import annotations

import socket
import struct
import time

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
CAP_CLIPBOARD_NO_RELEASE_ON_REGRAB = 16
CAP_CLIPBOARD_GRAB_SERIAL = 17

GUEST_CAPS = 0x00038DE7  # spice-vdagentd 0.22.1, docs/protocol.md §4.4 / docs/guest-agent.md §3
#: What these hosts announce unless told otherwise.
HOST_CAPS = sum(1 << cap for cap in (
    CAP_MOUSE_STATE, CAP_MONITORS_CONFIG, CAP_REPLY, CAP_CLIPBOARD_BY_DEMAND,
    CAP_CLIPBOARD_SELECTION, CAP_CLIPBOARD_GRAB_SERIAL,
))
assert HOST_CAPS == 0x00020067

SEL_CLIPBOARD = 0
SEL_PRIMARY = 1
TYPE_NONE = 0
TYPE_UTF8_TEXT = 1


def sel(selection: int) -> bytes:
    """The 4-byte selection prefix (CAP_CLIPBOARD_SELECTION)."""
    return struct.pack("<B3x", selection)


def parse_grab(payload: bytes) -> tuple[int, int, list[int]]:
    """GRAB with SELECTION + GRAB_SERIAL in effect: [u8 sel, 3 pad][u32 serial][u32 types...]."""
    selection, pad, serial = struct.unpack_from("<B3sI", payload)
    assert pad == b"\0\0\0"
    types = list(struct.unpack_from(f"<{(len(payload) - 8) // 4}I", payload, 8))
    return selection, serial, types


class RawHost:
    """A host on an agent socket: whole messages in (reassembled per port), one chunk out.

    ``peer`` names what is at the other end, for the errors ("the relay", "QEMU").
    """

    def __init__(
        self, path: str, *, timeout: float = 5.0, caps: int = HOST_CAPS, peer: str = "the peer"
    ) -> None:
        self.timeout = timeout
        self.caps = caps
        self.peer = peer
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

    def send_caps(self, request: int, caps: int | None = None) -> None:
        self.send(ANNOUNCE_CAPABILITIES,
                  struct.pack("<II", request, self.caps if caps is None else caps))

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
                raise EOFError(f"{self.peer} closed the host connection; seen: {self.seen}")
            self.buf += data

    def recv(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Next whole message (type, payload), reassembled per port."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
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

    def expect(self, mtype: int, timeout: float | None = None) -> bytes:
        """Skip other messages until one of ``mtype`` arrives; return its payload."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            got, payload = self.recv(max(0.0, deadline - time.monotonic()))
            if got == mtype:
                return payload

    def expect_caps(self, timeout: float | None = None) -> tuple[int, int]:
        """(request, first caps word) of the next ANNOUNCE_CAPABILITIES."""
        request, caps = struct.unpack_from("<II", self.expect(ANNOUNCE_CAPABILITIES, timeout))
        return request, caps

    def expect_grab(self, timeout: float | None = None) -> tuple[int, int, list[int]]:
        """(selection, serial, types) of the next CLIPBOARD_GRAB."""
        return parse_grab(self.expect(CLIPBOARD_GRAB, timeout))

    def handshake(self) -> int:
        """Read the daemon's caps request=1, announce ours with request=1 and read the
        daemon's answer (request=0, the same caps). Returns the guest caps word."""
        request, caps = self.expect_caps()
        assert request == 1
        self.send_caps(request=1)
        assert self.expect_caps() == (0, caps)
        return caps

    def request(self, selection: int, ctype: int,
                timeout: float | None = None) -> tuple[int, bytes]:
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

    def assert_eof(self, timeout: float | None = None) -> None:
        """The peer closed this connection (a takeover, a migration)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while self.sock.recv(65536):
            pass
