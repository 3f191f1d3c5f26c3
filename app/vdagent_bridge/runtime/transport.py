"""The byte pipe under a connection: a socket to a QEMU chardev, or a libvirt stream.

:class:`~vdagent_bridge.runtime.connection.AgentConnection` pumps a session's output into a
:class:`Transport` and its input out of it; everything it needs of the pipe is here, so the
same pump, back-pressure and switchover bookkeeping serve a UNIX or TCP socket
(:class:`SocketTransport`) and a libvirt channel stream (runtime/libvirt/stream.py).

A transport is non-blocking: ``send`` takes what it can now (``BlockingIOError`` when it takes
nothing), ``recv`` returns what there is (``BlockingIOError`` when nothing, ``b""`` at the end
of the stream), and the connection asks to be called back when it becomes readable or
writable again.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import socket
import termios
from collections.abc import Callable, Sequence
from typing import Protocol

from .sockdiag import unread_by_peer

#: A socket's send buffer (SO_SNDBUF; Linux doubles it). The default (~200 KiB) costs a
#: wake-up per 200 KiB of a large transfer; much more would put output out of our reach (a
#: migration can no longer hold back what the source's socket already holds).
SEND_BUFFER = 1024 * 1024

Buffers = Sequence[bytes | bytearray | memoryview]


class Transport(Protocol):
    """A non-blocking byte pipe to a guest agent port; see the module docstring."""

    @property
    def retain(self) -> int:
        """How many of the last written bytes its peer may not have read yet, at most (what
        the connection keeps for a migration's carry-over)."""

    @property
    def knows_send_queue(self) -> bool:
        """Whether :meth:`send_queue` is measured (0 then means "all read")."""

    def send(self, buffers: Buffers) -> int:
        """Write what the pipe takes of ``buffers`` now; how many bytes.

        :raises BlockingIOError: it takes nothing now.
        :raises OSError: the pipe broke.
        """

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the stream.

        :raises BlockingIOError: nothing to read now.
        """

    def recv_into(self, view: memoryview) -> int:
        """Read into ``view``; 0 at the end of the stream.

        :raises BlockingIOError: nothing to read now.
        """

    def peek(self) -> bytes | None:
        """Whether the peer closed the pipe (``b""``), sent something (a byte, left to
        read), or neither yet (None), without consuming anything."""

    def on_readable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever the pipe is readable (None: stop)."""

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever the pipe is writable (None: stop)."""

    def send_queue(self) -> int:
        """Bytes written that the pipe still holds (0 once the peer has read everything;
        for a UNIX socket the kernel counts buffer memory, not bytes)."""

    def unread_by_peer(self) -> int | None:
        """Exactly how many written bytes the peer has not read, or None where that cannot
        be known."""

    def close(self) -> None:
        """Close the pipe (callbacks stop)."""


class SocketTransport:
    """A connected non-blocking socket on the running loop (see :class:`Transport`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        # The peer may leave up to about a send buffer (as the kernel counts it, doubled)
        # unread; keep twice that.
        self._retain = 2 * sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self._reading = False
        self._writing = False

    @property
    def retain(self) -> int:
        return self._retain

    @property
    def knows_send_queue(self) -> bool:
        return True

    def send(self, buffers: Buffers) -> int:
        try:
            return self._sock.sendmsg(buffers)
        except InterruptedError:
            raise BlockingIOError from None

    def recv(self, size: int) -> bytes:
        try:
            return self._sock.recv(size)
        except InterruptedError:
            raise BlockingIOError from None

    def recv_into(self, view: memoryview) -> int:
        try:
            return self._sock.recv_into(view)
        except InterruptedError:
            raise BlockingIOError from None

    def peek(self) -> bytes | None:
        try:
            return self._sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None

    def on_readable(self, callback: Callable[[], None] | None) -> None:
        fd = self._sock.fileno()
        if callback is None:
            if self._reading:
                self._loop.remove_reader(fd)
            self._reading = False
        else:
            self._loop.add_reader(fd, callback)
            self._reading = True

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        fd = self._sock.fileno()
        if callback is None:
            if self._writing:
                self._loop.remove_writer(fd)
            self._writing = False
        else:
            self._loop.add_writer(fd, callback)
            self._writing = True

    def send_queue(self) -> int:
        buf = array.array("i", [0])
        with contextlib.suppress(OSError, ValueError):
            fcntl.ioctl(self._sock.fileno(), termios.TIOCOUTQ, buf)
        return buf[0]

    def unread_by_peer(self) -> int | None:
        return unread_by_peer(self._sock)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self.on_readable(None)
            self.on_writable(None)
        self._sock.close()
