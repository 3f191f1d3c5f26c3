"""Tests of the pty relay alone (no agent binaries needed, only a pty).

Why: every system test depends on the relay being byte-transparent, fast,
and predictable on takeovers; a relay bug would look like an agent or
engine bug.  Here a test plays both the host (socket) and the guest (the
pty slave, as spice-vdagentd would open it).
"""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_stack import RELAY_SCRIPT

pytestmark = pytest.mark.system

CHUNK = struct.Struct("<II")
TIMEOUT = 5.0
BIG = 16 << 20


class RelayProc:
    """A relay process in a short temp dir, with helpers for both ends."""

    def __init__(self, *options: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="vdrelay-")
        self.dir = Path(self._tmp.name)
        self.socket_path = str(self.dir / "host.sock")
        self.link = str(self.dir / "vport")
        self.log_path = self.dir / "relay.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-u",
                    str(RELAY_SCRIPT),
                    "--socket",
                    self.socket_path,
                    "--pty-link",
                    self.link,
                    *options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_log("relay ready")
        self.guest_fd = os.open(self.link, os.O_RDWR | os.O_NOCTTY)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, start: int = 0) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not re.search(pattern, self.log()[start:]):
            assert self.proc.poll() is None, f"relay exited: {self.log()}"
            assert time.monotonic() < deadline, f"{pattern!r} not in relay log:\n{self.log()}"
            time.sleep(0.005)

    def host(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(self.socket_path)
        return sock

    def guest_write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.guest_fd, view)
            view = view[n:]

    def guest_read(self, n: int, timeout: float = TIMEOUT) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"guest got {len(out)}/{n} bytes: {bytes(out[:64])!r}"
            ready, _, _ = select.select([self.guest_fd], [], [], remaining)
            if ready:
                out += os.read(self.guest_fd, n - len(out))
        return bytes(out)

    def close(self) -> None:
        os.close(self.guest_fd)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        self._tmp.cleanup()


@pytest.fixture
def relay() -> Iterator[RelayProc]:
    r = RelayProc()
    try:
        yield r
    finally:
        r.close()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = sock.recv(min(1 << 20, n - len(out)))
        if not data:
            raise EOFError(f"EOF after {len(out)}/{n} bytes")
        out += data
    return bytes(out)


def assert_nothing(sock: socket.socket, wait: float = 0.2) -> None:
    sock.settimeout(wait)
    with pytest.raises(socket.timeout):
        data = sock.recv(1)
        raise AssertionError(f"unexpected bytes {data!r}")
    sock.settimeout(TIMEOUT)


def assert_eof(sock: socket.socket) -> None:
    sock.settimeout(TIMEOUT)
    assert sock.recv(1) == b""


def chunk(payload: bytes, port: int = 1) -> bytes:
    return CHUNK.pack(port, len(payload)) + payload


# ----------------------------------------------------------------------------


def test_binary_transparent_both_ways(relay: RelayProc) -> None:
    """Raw mode: CR/LF, ^C, ^S/^Q, ^D, 0x7f, 0xff... pass untouched (no echo)."""
    every_byte = bytes(range(256)) * 4
    host = relay.host()
    relay.wait_log("host connected n=1")
    host.sendall(every_byte)
    assert relay.guest_read(len(every_byte)) == every_byte
    relay.guest_write(chunk(every_byte))
    assert recv_exact(host, 8 + len(every_byte)) == chunk(every_byte)
    assert_nothing(host)  # no echo of what the host wrote
    host.close()


def test_held_until_first_host(relay: RelayProc) -> None:
    relay.guest_write(chunk(b"early"))
    relay.wait_log("held chunk port=1 size=5")
    host = relay.host()
    assert recv_exact(host, 13) == chunk(b"early")
    host.close()


def test_no_hold_drops_while_nobody_connected() -> None:
    r = RelayProc("--no-hold")
    try:
        r.guest_write(chunk(b"lost"))
        r.wait_log("dropped chunk port=1 size=4")
        host = r.host()
        r.wait_log("host connected n=1")
        r.guest_write(chunk(b"kept"))
        assert recv_exact(host, 12) == chunk(b"kept")
        host.close()
    finally:
        r.close()


def test_takeover_starts_new_host_at_a_chunk_boundary(relay: RelayProc) -> None:
    first = relay.host()
    relay.wait_log("host connected n=1")
    relay.guest_write(chunk(b"A" * 10))
    assert recv_exact(first, 18) == chunk(b"A" * 10)
    body = bytes(range(100))
    relay.guest_write(CHUNK.pack(1, 100) + body[:50])  # half a chunk
    assert_nothing(first)  # whole chunks only
    second = relay.host()
    relay.wait_log("host connected n=2 takeover=1")
    assert_eof(first)
    relay.guest_write(body[50:] + chunk(b"next"))
    assert recv_exact(second, 108) == CHUNK.pack(1, 100) + body
    assert recv_exact(second, 12) == chunk(b"next")
    first.close()
    second.close()


def test_takeover_drains_old_host_first(relay: RelayProc) -> None:
    first = relay.host()
    first.sendall(b"from-first;")
    second = relay.host()
    second.sendall(b"from-second")
    assert relay.guest_read(22) == b"from-first;from-second"
    relay.wait_log("host closed n=1 reason=takeover")
    first.close()
    second.close()


def test_host_goes_and_comes_back(relay: RelayProc) -> None:
    first = relay.host()
    relay.wait_log("host connected n=1")
    first.close()
    relay.wait_log("host closed n=1 reason=eof")
    relay.guest_write(chunk(b"for the next one"))
    relay.wait_log("held chunk")
    second = relay.host()
    assert recv_exact(second, 24) == chunk(b"for the next one")
    second.close()


def test_raw_mode_forwards_partial_bytes() -> None:
    r = RelayProc("--raw")
    try:
        host = r.host()
        r.wait_log("host connected n=1")
        r.guest_write(b"not a chunk")
        assert recv_exact(host, 11) == b"not a chunk"
        host.close()
    finally:
        r.close()


_GUEST_WRITER = """
import os, random, struct, sys
n = int(sys.argv[2])
data = struct.pack('<II', 1, n) + random.Random(7).randbytes(n)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
view = memoryview(data)
while view:
    view = view[os.write(fd, view[: 1 << 20]):]
"""

_GUEST_READER = """
import hashlib, os, sys
n = int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
h = hashlib.sha256(); got = 0
print('ready', flush=True)
while got < n:
    b = os.read(fd, 1 << 20); h.update(b); got += len(b)
print(h.hexdigest(), flush=True)
"""


class _LineReader:
    """Read lines from a child's stdout pipe with a timeout (readline() has none)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def readline(self, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line from child within {timeout}s (got {self.buf!r})"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                data = os.read(self.fd, 4096)
                assert data, f"child closed stdout (got {self.buf!r})"
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode().strip()


def _throughput(relay: RelayProc) -> tuple[float, float]:
    import hashlib
    import random

    payload = random.Random(7).randbytes(BIG)
    host = relay.host()
    relay.wait_log("host connected n=1")

    # guest -> host: one 16 MiB chunk (the daemon sends a whole clipboard as one chunk)
    t0 = time.monotonic()
    writer = subprocess.Popen([sys.executable, "-c", _GUEST_WRITER, relay.link, str(BIG)])
    got = recv_exact(host, 8 + BIG)
    g2h = time.monotonic() - t0
    assert writer.wait(TIMEOUT) == 0
    assert got[:8] == CHUNK.pack(1, BIG) and got[8:] == payload

    # host -> guest
    with subprocess.Popen(
        [sys.executable, "-c", _GUEST_READER, relay.link, str(BIG)], stdout=subprocess.PIPE
    ) as reader:
        assert reader.stdout is not None
        lines = _LineReader(reader.stdout.fileno())
        assert lines.readline() == "ready"
        t0 = time.monotonic()
        host.sendall(payload)
        digest = lines.readline()
        h2g = time.monotonic() - t0
        assert reader.wait(TIMEOUT) == 0
    assert digest == hashlib.sha256(payload).hexdigest()
    host.close()
    return g2h, h2g


def test_throughput_16_mib_each_way(relay: RelayProc) -> None:
    # The writer/reader run in subprocesses: in-process threads would share the
    # GIL with the test's own socket loop and measure Python, not the relay.
    g2h, h2g = _throughput(relay)
    print(f"16 MiB guest->host {g2h:.3f}s, host->guest {h2g:.3f}s")
    # Target is < 1 s each way (measured 0.2-0.5 s on 2 cores); the assertion is
    # looser so a loaded CI machine does not flake, but catches per-byte work.
    assert g2h < 3.0 and h2g < 3.0


def test_sigterm_exits_cleanly_and_removes_its_files() -> None:
    r = RelayProc()
    host = r.host()
    r.wait_log("host connected n=1")
    r.proc.terminate()
    assert r.proc.wait(TIMEOUT) == 0
    assert_eof(host)
    assert not os.path.lexists(r.socket_path)
    assert not os.path.lexists(r.link)
    assert "relay exit" in r.log()
    host.close()
    r.close()


def test_relay_listing_is_one_line_per_connection(relay: RelayProc) -> None:
    socks: list[socket.socket] = []
    for i in range(1, 4):
        socks.append(relay.host())
        relay.wait_log(f"host connected n={i}")
    assert len(re.findall(r"host connected n=\d+", relay.log())) == 3
    for s in socks:
        s.close()
