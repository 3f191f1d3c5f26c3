"""A pty relay standing in for QEMU's virtio-serial port, for system tests.

Why this exists: the real guest daemon (``spice-vdagentd``) wants a character
device to talk to.  ``socat PTY,...`` is not enough: it ends (or makes a new
pty) per connection, and when the last fd of a pty's master side goes away the
daemon sees EOF/EIO and starts its "lost spice client" dance.  This relay:

* opens a pty pair in raw mode (cfmakeraw, ``VMIN=1``) and symlinks the slave
  to ``--pty-link`` (give that path to ``spice-vdagentd -s``);
* keeps the master **and one slave fd** open for its whole life, so the
  guest never sees EOF/EIO however hosts come and go, and the slave's termios
  (raw mode) survive the daemon closing and reopening the port;
* listens on a UNIX socket (``--socket``) and serves ONE host at a time, like
  a QEMU socket chardev, except that a new connection *takes over* from the
  old one (the old one is drained, then closed);
* relays bytes both ways, with large reads and no per-byte Python work.

Guest->host options (both on by default):

* ``--hold`` / ``--no-hold``: keep guest bytes while no host is connected and
  deliver them on the next connect (otherwise the daemon's first caps
  request=1 would be lost, as on a QEMU chardev with no peer).  With
  ``--no-hold`` they are dropped.
* ``--whole-chunks`` / ``--raw``: forward only whole chunks (8-byte header
  ``<II port, size`` + ``size`` bytes).  A chunk is handed to the host socket
  only once it is complete; if a host goes away while a chunk is only partly
  written to it, the *whole* chunk is written again to the next host.  So a
  new host's stream always starts at a chunk boundary.

Host->guest bytes are never dropped: whatever the relay has read from a host
socket is written to the pty, even after that host has gone (on a takeover
the old socket is drained first, so everything it sent before the new host
connected reaches the guest, in order).

Log lines (stdout, flushed; the fixture redirects them to a file):

* ``relay ready socket=... pty=... link=...`` once it accepts connections;
* ``host connected n=N takeover=0|1`` per accepted host connection;
* ``host closed n=N reason=...`` when a host connection ends;
* ``held chunk port=P size=N`` / ``dropped chunk ...`` for each guest chunk
  that arrives while no host is connected (whole-chunk mode only).

Exits cleanly (removing its socket and symlink) on SIGTERM or SIGINT.

Run: ``python tests/system/relay.py --socket PATH --pty-link PATH`` (or
``python -m tests.system.relay`` from the repository root).
"""

from __future__ import annotations

import argparse
import collections
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import termios

READ_SIZE = 1 << 20
"""Bytes asked for per read; a pty master gives at most ~4 KiB, a socket more."""

MAX_TO_GUEST = 8 << 20
"""Stop reading the host socket while this much is waiting for the guest."""

CHUNK_HEADER = struct.Struct("<II")
SUSPICIOUS_CHUNK_SIZE = 1 << 30


def log(message: str) -> None:
    """Write one log line and flush it, so the fixture can poll the file."""
    sys.stdout.write(f"relay[{os.getpid()}]: {message}\n")
    sys.stdout.flush()


def make_raw(fd: int) -> None:
    """Put a tty in the state ``cfmakeraw`` produces, with VMIN=1 VTIME=0.

    Python's ``tty.setraw`` leaves IGNCR/INLCR/IGNBRK/PARMRK/ECHONL alone,
    which would corrupt binary data if they ever were set; be explicit.
    """
    attrs = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag = attrs[0], attrs[1], attrs[2], attrs[3]
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.INPCK
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8 | termios.CREAD
    attrs[0], attrs[1], attrs[2], attrs[3] = iflag, oflag, cflag, lflag
    cc = attrs[6]
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class Relay:
    """The relay's state and event loop (single-threaded, selector based)."""

    def __init__(self, socket_path: str, pty_link: str, hold: bool, whole_chunks: bool) -> None:
        self.socket_path = socket_path
        self.pty_link = pty_link
        self.hold = hold
        self.whole_chunks = whole_chunks

        self.master_fd, self.slave_fd = os.openpty()
        make_raw(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        self.slave_name = os.ttyname(self.slave_fd)
        if os.path.lexists(pty_link):
            os.unlink(pty_link)
        os.symlink(self.slave_name, pty_link)

        if os.path.lexists(socket_path):
            os.unlink(socket_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        self.listener.listen(8)
        self.listener.setblocking(False)

        # Wake-up pipe for signals: the handler only sets a flag, the
        # wakeup fd makes select() return.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.stopping = False

        self.host: socket.socket | None = None
        self.host_serial = 0

        # guest -> host
        self.from_guest = bytearray()  # bytes not yet cut into whole chunks
        self.to_host: collections.deque[memoryview] = collections.deque()  # complete units
        self.to_host_offset = 0  # bytes of to_host[0] already sent to self.host

        # host -> guest
        self.to_guest: collections.deque[memoryview] = collections.deque()
        self.to_guest_len = 0

        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.master_events = 0
        self.host_events = 0
        self._update_master()

    # ----------------------------------------------------------------- helpers
    def _update_master(self) -> None:
        """Always read the guest; also wait for writability while bytes wait."""
        events = selectors.EVENT_READ
        if self.to_guest:
            events |= selectors.EVENT_WRITE
        if events != self.master_events:
            if self.master_events:
                self.sel.modify(self.master_fd, events, "master")
            else:
                self.sel.register(self.master_fd, events, "master")
            self.master_events = events

    def _update_host(self) -> None:
        if self.host is None:
            return
        events = 0
        if self.to_guest_len < MAX_TO_GUEST:
            events |= selectors.EVENT_READ
        if self.to_host:
            events |= selectors.EVENT_WRITE
        if events == self.host_events:
            return
        if self.host_events and events:
            self.sel.modify(self.host, events, "host")
        elif events:
            self.sel.register(self.host, events, "host")
        else:
            self.sel.unregister(self.host)
        self.host_events = events

    def _queue_to_guest(self, data: bytes) -> None:
        if data:
            self.to_guest.append(memoryview(data))
            self.to_guest_len += len(data)

    def _drop_host(self, reason: str) -> None:
        """Forget the current host; a partly sent chunk is resent whole later."""
        if self.host is None:
            return
        if self.host_events:
            self.sel.unregister(self.host)
        self.host_events = 0
        try:
            self.host.close()
        except OSError:
            pass
        self.host = None
        log(f"host closed n={self.host_serial} reason={reason}")
        if self.whole_chunks:
            self.to_host_offset = 0
        elif self.to_host and self.to_host_offset:
            # Raw mode: the unsent tail of a read is still delivered, as a
            # plain byte stream would.
            self.to_host[0] = self.to_host[0][self.to_host_offset :]
            self.to_host_offset = 0
        if not self.hold:
            self.to_host.clear()
            self.to_host_offset = 0

    def _drain_old_host(self, old: socket.socket) -> None:
        """Read what the old host already sent, so it reaches the guest in order."""
        while True:
            try:
                data = old.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            self._queue_to_guest(data)

    # ----------------------------------------------------------------- events
    def on_accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            takeover = self.host is not None
            if self.host is not None:
                self._drain_old_host(self.host)
                self._drop_host("takeover")
            self.host = conn
            self.host_serial += 1
            log(f"host connected n={self.host_serial} takeover={int(takeover)}")
            self._update_host()
            self._update_master()

    def on_master(self, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self._read_guest()
        if mask & selectors.EVENT_WRITE:
            self._write_guest()
        self._update_master()
        self._update_host()

    def _read_guest(self) -> None:
        # A pty master read returns at most about 4 KiB: loop until EAGAIN
        # (bounded, so the host side gets its turn too).
        for _ in range(256):
            try:
                data = os.read(self.master_fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.EIO:
                    # Cannot happen while we hold the slave open; be safe.
                    log("EIO on pty master")
                    break
                raise
            if not data:
                break
            if self.whole_chunks:
                # Always cut chunks, even when they are dropped (--no-hold),
                # so a host connecting mid-chunk still starts at a boundary.
                self.from_guest += data
                self._cut_chunks()
            elif self.host is not None or self.hold:
                self.to_host.append(memoryview(data))

    def _cut_chunks(self) -> None:
        buf = self.from_guest
        start = 0
        while len(buf) - start >= CHUNK_HEADER.size:
            port, size = CHUNK_HEADER.unpack_from(buf, start)
            if port >= 3 or size >= SUSPICIOUS_CHUNK_SIZE:
                log(f"suspicious chunk header port={port} size={size}")
            end = start + CHUNK_HEADER.size + size
            if end > len(buf):
                break
            if self.host is not None:
                self.to_host.append(memoryview(bytes(memoryview(buf)[start:end])))
            elif self.hold:
                self.to_host.append(memoryview(bytes(memoryview(buf)[start:end])))
                log(f"held chunk port={port} size={size}")
            else:
                log(f"dropped chunk port={port} size={size}")
            start = end
        if start:
            del buf[:start]

    def _write_guest(self) -> None:
        while self.to_guest:
            head = self.to_guest[0]
            try:
                n = os.write(self.master_fd, head)
            except (BlockingIOError, InterruptedError):
                return
            self.to_guest_len -= n
            if n == len(head):
                self.to_guest.popleft()
            else:
                self.to_guest[0] = head[n:]
                return

    def on_host(self, mask: int) -> None:
        if self.host is None:
            return
        if mask & selectors.EVENT_READ:
            try:
                data = self.host.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as exc:
                self._drop_host(f"recv-error:{exc.errno}")
                data = None
            if data is not None:
                if data:
                    self._queue_to_guest(data)
                    self._write_guest()
                else:
                    self._drop_host("eof")
        if self.host is not None and mask & selectors.EVENT_WRITE:
            self._write_host()
        self._update_master()
        self._update_host()

    def _write_host(self) -> None:
        assert self.host is not None
        while self.to_host:
            head = self.to_host[0]
            try:
                n = self.host.send(head[self.to_host_offset :])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._drop_host(f"send-error:{exc.errno}")
                return
            self.to_host_offset += n
            if self.to_host_offset >= len(head):
                self.to_host.popleft()
                self.to_host_offset = 0
            else:
                return

    # ----------------------------------------------------------------- main
    def run(self) -> None:
        def on_signal(signum: int, frame: object) -> None:
            self.stopping = True
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log(
            f"relay ready socket={self.socket_path} pty={self.slave_name} link={self.pty_link} "
            f"hold={int(self.hold)} whole_chunks={int(self.whole_chunks)}"
        )
        while not self.stopping:
            try:
                ready = self.sel.select()
            except InterruptedError:
                continue
            for key, mask in ready:
                if key.data == "listen":
                    self.on_accept()
                elif key.data == "master":
                    self.on_master(mask)
                elif key.data == "host":
                    self.on_host(mask)
                elif key.data == "wake":
                    try:
                        os.read(self.wake_r, 64)
                    except BlockingIOError:
                        pass
            # A host may have connected with bytes already waiting for it.
            if self.host is not None and self.to_host:
                self._write_host()
                self._update_host()
        self.close()

    def close(self) -> None:
        """Release everything; remove only the socket and link we created."""
        if self.host is not None:
            self._drop_host("relay-exit")
        for path in (self.socket_path, self.pty_link):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.sel.close()
        self.listener.close()
        for fd in (self.master_fd, self.slave_fd, self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        log("relay exit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, help="UNIX socket the host connects to")
    parser.add_argument("--pty-link", required=True, help="symlink to the pty slave (daemon -s)")
    parser.add_argument("--hold", dest="hold", action="store_true", default=True)
    parser.add_argument("--no-hold", dest="hold", action="store_false")
    parser.add_argument("--whole-chunks", dest="whole_chunks", action="store_true", default=True)
    parser.add_argument("--raw", dest="whole_chunks", action="store_false")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    relay = Relay(args.socket, args.pty_link, hold=args.hold, whole_chunks=args.whole_chunks)
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
