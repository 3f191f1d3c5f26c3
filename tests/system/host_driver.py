"""A small blocking driver for a :class:`HostSession` on a UNIX socket, for system tests.

The engine is sans-IO; this is the few dozen lines of IO around it that a test needs to talk
to the relay (tests/system/relay.py) and through it to the real guest agent. One thread, one
``select()`` loop, ``time.monotonic()`` as the engine's clock:

- :meth:`HostDriver.pump` waits (at most ``timeout``) for the socket or the engine's next
  deadline, reads what is there (at most :attr:`HostDriver.read_size` bytes per read), feeds
  it, fires due timeouts and collects the events; it also writes the engine's output without
  blocking, so a 16 MiB answer goes out while the guest's bytes keep being read (the relay
  stops reading us while 8 MiB wait for the pty, and the daemon may be writing to us at the
  same time; a blocking ``sendall`` could deadlock);
- :meth:`HostDriver.wait_for` pumps until an event matches, and hands it over (each event is
  handed over once; :attr:`HostDriver.events` keeps all of them for assertions);
- :meth:`HostDriver.reconnect` opens a new connection, which the relay lets take over, with
  the same session, another one, or one restored from a snapshot of the old one.

A :class:`RemoteProtocolError` from the engine is logged in :attr:`HostDriver.errors` and the
pump carries on, as the engine's contract asks.

Plain stdlib and the engine's public API only.
"""

from __future__ import annotations

import collections
import errno
import select
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from vdagent_bridge.protocol import Event, HostSession, RemoteProtocolError

E = TypeVar("E")

Predicate = Callable[[Any], bool]
SessionFactory = Callable[[HostSession], HostSession]

DEFAULT_READ_SIZE = 1 << 20
"""Bytes asked for per ``recv``: big enough that 16 MiB take a handful of rounds."""

SEND_SIZE = 1 << 20
"""At most this much is handed to one ``send`` (the kernel takes what fits anyway)."""


class DriverTimeout(AssertionError):
    """A :meth:`HostDriver.wait_for` (or flush) did not complete in time.

    An AssertionError so pytest shows it as a test failure with its message (which lists the
    events seen), not as an error of the harness.
    """


class ConnectionClosed(AssertionError):
    """The relay closed our connection while we were waiting for something."""


class HostDriver:
    """Drive a :class:`HostSession` over one UNIX-socket connection to the relay.

    ``session=None`` makes a fresh session and calls its ``start`` (announce caps with
    request=1), as a host does on a fresh connection. A session passed in is used as it is
    unless ``start=True`` (a session configured by the caller, on a fresh connection): a
    restored one must not be started (that would re-announce).
    """

    def __init__(
        self,
        socket_path: str,
        session: HostSession | None = None,
        *,
        start: bool | None = None,
        read_size: int = DEFAULT_READ_SIZE,
        connect_timeout: float = 10.0,
    ) -> None:
        self.socket_path = socket_path
        self.read_size = read_size
        self.connect_timeout = connect_timeout
        if start is None:
            start = session is None
        if session is None:
            session = HostSession()
        if start:
            session.start(self.now())
        self.session: HostSession = session
        #: Every event of this driver's sessions, in order (never consumed).
        self.events: list[Event] = []
        #: Every RemoteProtocolError the engine raised, in order.
        self.errors: list[RemoteProtocolError] = []
        #: Events not yet handed over by :meth:`wait_for` / :meth:`take_events`.
        self._unclaimed: collections.deque[Event] = collections.deque()
        self._out: collections.deque[memoryview] = collections.deque()
        self._out_len = 0
        #: Bytes read from the current connection.
        self.bytes_received = 0
        #: Bytes written to the current connection.
        self.bytes_sent = 0
        #: The relay closed the current connection (EOF or error).
        self.eof = False
        self.sock: socket.socket | None = self._connect()
        self._collect_output()

    # ------------------------------------------------------------------ basics
    @staticmethod
    def now() -> float:
        """The engine's clock."""
        return time.monotonic()

    def __enter__(self) -> HostDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent). Unwritten output is dropped: :meth:`flush`
        first if it matters."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout)
            sock.connect(self.socket_path)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _require_sock(self) -> socket.socket:
        if self.sock is None:
            raise ConnectionClosed("the driver is closed")
        return self.sock

    @property
    def pending_output(self) -> int:
        """Bytes taken from the session and not yet written to the socket."""
        return self._out_len + self.session.bytes_to_send

    # ------------------------------------------------------------------ engine glue
    def _collect_output(self) -> None:
        data = self.session.data_to_send()
        if data:
            self._out.append(memoryview(data))
            self._out_len += len(data)

    def _drain_events(self) -> list[Event]:
        new: list[Event] = []
        while True:
            try:
                event = self.session.next_event()
            except RemoteProtocolError as err:
                self.errors.append(err)
                continue
            if event is None:
                break
            new.append(event)
        self.events += new
        self._unclaimed.extend(new)
        return new

    def _fire_timeouts(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is not None:
            now = self.now()
            if deadline <= now:
                self.session.handle_timeout(now)

    def feed(self, data: bytes) -> list[Event]:
        """Feed bytes to the session as if they had been read; returns the new events."""
        self.session.receive_data(data, self.now())
        new = self._drain_events()
        self._collect_output()
        return new

    # ------------------------------------------------------------------ IO
    def _write_some(self, sock: socket.socket) -> None:
        while self._out:
            head = self._out[0]
            try:
                sent = sock.send(head[:SEND_SIZE])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    self.eof = True
                    return
                raise
            self._out_len -= sent
            self.bytes_sent += sent
            if sent == len(head):
                self._out.popleft()
            else:
                self._out[0] = head[sent:]

    def _write_pending(self) -> None:
        """Write what the socket takes now, without waiting (what the session queued in
        answer to the events just handed over should not wait for the next pump)."""
        self._collect_output()
        if self.sock is not None and self._out and not self.eof:
            self._write_some(self.sock)

    def _read_some(self, sock: socket.socket) -> bool:
        """One recv; True when bytes (or EOF) came."""
        try:
            data = sock.recv(self.read_size)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return True
        self.bytes_received += len(data)
        self.session.receive_data(data, self.now())
        return True

    def pump(self, timeout: float = 0.0) -> list[Event]:
        """One round of IO: wait up to ``timeout`` for input, the socket to take output, or
        the engine's next deadline; then read once, write what fits, fire due timeouts.

        Returns the events this round produced (they stay claimable by :meth:`wait_for`).
        Returns early as soon as a round did something; returns [] at ``timeout``.
        """
        sock = self._require_sock()
        self._collect_output()
        deadline = self.now() + max(timeout, 0.0)
        new: list[Event] = []
        while True:
            now = self.now()
            wait = deadline - now
            engine_deadline = self.session.next_deadline()
            if engine_deadline is not None:
                wait = min(wait, engine_deadline - now)
            wait = max(wait, 0.0)
            want_write = bool(self._out) and not self.eof
            want_read = not self.eof
            if not (want_read or want_write):
                # Nothing to wait for on the socket: only the clock can do something.
                time.sleep(wait)
                readable: list[socket.socket] = []
                writable: list[socket.socket] = []
            else:
                readable, writable, _ = select.select(
                    [sock] if want_read else [], [sock] if want_write else [], [], wait
                )
            progressed = False
            if writable:
                before = self._out_len
                self._write_some(sock)
                progressed = self._out_len != before
            if readable:
                progressed = self._read_some(sock) or progressed
            self._fire_timeouts()
            new += self._drain_events()
            self._collect_output()
            if progressed or new or self.now() >= deadline:
                return new

    def flush(self, timeout: float = 10.0) -> None:
        """Pump until everything the session queued has been written to the socket.

        (Written, not yet delivered: the relay and the daemon still have to carry it.)
        """
        deadline = self.now() + timeout
        self._collect_output()
        while self._out:
            if self.eof:
                raise ConnectionClosed(f"connection closed with {self._out_len} bytes unsent")
            remaining = deadline - self.now()
            if remaining <= 0:
                raise DriverTimeout(f"{self._out_len} bytes still unsent after {timeout}s")
            self.pump(remaining)

    @overload
    def wait_for(  # type: ignore[overload-overlap]  # a class is callable too
        self, what: type[E], timeout: float = ..., *, where: Callable[[E], bool] | None = ...
    ) -> E: ...

    @overload
    def wait_for(self, what: Predicate, timeout: float = ...) -> Event: ...

    def wait_for(
        self,
        what: type[Any] | Predicate,
        timeout: float = 10.0,
        *,
        where: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Pump until an unclaimed event is of type ``what`` (and passes ``where``), or
        satisfies the predicate ``what``; claim and return it. Earlier unclaimed events stay
        claimable. Output queued so far is written as far as the socket takes it without
        waiting; call :meth:`flush` when all of it must be out.

        :raises DriverTimeout: nothing matched within ``timeout`` (lists the events seen).
        :raises ConnectionClosed: the relay closed the connection first.
        """
        match: Predicate
        if isinstance(what, type):
            kind = what
            match = lambda event: isinstance(event, kind) and (where is None or where(event))  # noqa: E731
            label = kind.__name__
        else:
            match = what
            label = getattr(what, "__name__", repr(what))
        deadline = self.now() + timeout
        while True:
            for event in self._unclaimed:
                if match(event):
                    self._unclaimed.remove(event)
                    self._write_pending()
                    return event
            if self.eof:
                raise ConnectionClosed(
                    f"connection closed while waiting for {label}; events: {list(self._unclaimed)}"
                )
            remaining = deadline - self.now()
            if remaining <= 0:
                raise DriverTimeout(
                    f"no {label} within {timeout}s; unclaimed events: {list(self._unclaimed)}; "
                    f"protocol errors: {self.errors}"
                )
            self.pump(remaining)

    def take_events(self) -> list[Event]:
        """Claim and return every unclaimed event."""
        events = list(self._unclaimed)
        self._unclaimed.clear()
        return events

    def settle(self, quiet: float = 0.2, timeout: float = 10.0) -> list[Event]:
        """Pump until nothing happened for ``quiet`` seconds; returns the new events."""
        deadline = self.now() + timeout
        new: list[Event] = []
        quiet_until = self.now() + quiet
        while self.now() < deadline:
            before = (self.bytes_received, self.bytes_sent)
            new += self.pump(max(0.0, min(quiet_until, deadline) - self.now()))
            if (self.bytes_received, self.bytes_sent) != before:
                quiet_until = self.now() + quiet
            elif self.now() >= quiet_until:
                break
        return new

    def pump_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Pump until ``condition()`` is true."""
        deadline = self.now() + timeout
        while not condition():
            if self.eof:
                raise ConnectionClosed("connection closed while pumping")
            remaining = deadline - self.now()
            if remaining <= 0:
                raise DriverTimeout(f"condition not met within {timeout}s")
            self.pump(remaining)

    # ------------------------------------------------------------------ peeking
    def unread(self) -> bytes:
        """The bytes waiting on the socket, without reading them (at most 1 MiB)."""
        sock = self._require_sock()
        try:
            return sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return b""

    def unread_chunks(self) -> int:
        """How many whole chunks wait unread on the socket (assumes we are at a chunk
        boundary, i.e. the session holds no partial chunk)."""
        data = self.unread()
        count = pos = 0
        while len(data) - pos >= 8:
            size = int.from_bytes(data[pos + 4 : pos + 8], "little")
            if len(data) - pos - 8 < size:
                break
            pos += 8 + size
            count += 1
        return count

    def wait_unread_chunks(self, count: int, timeout: float = 10.0) -> None:
        """Wait, WITHOUT reading, until ``count`` whole chunks wait on the socket.

        For races: the guest's message has passed the daemon and the relay, but the session
        has not seen it yet.
        """
        deadline = self.now() + timeout
        delay = 0.001
        while self.unread_chunks() < count:
            if self.now() > deadline:
                raise DriverTimeout(
                    f"{self.unread_chunks()} of {count} chunks waiting after {timeout}s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # ------------------------------------------------------------------ reconnect
    def drain_until_eof(self, timeout: float = 10.0) -> None:
        """Read the current connection until the relay closes it (after a takeover), feeding
        everything to the session: nothing the relay sent to it is lost."""
        sock = self._require_sock()
        deadline = self.now() + timeout
        while not self.eof:
            remaining = deadline - self.now()
            if remaining <= 0:
                raise DriverTimeout(f"no EOF within {timeout}s")
            readable, _, _ = select.select([sock], [], [], remaining)
            if readable:
                self._read_some(sock)
            self._drain_events()

    def reconnect(
        self,
        session: HostSession | SessionFactory | None = None,
        *,
        drain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Continue on a new connection to the relay.

        Pending output is flushed to the old connection first. Then:

        - ``drain=False``: the old connection is closed, then a new one is opened (the relay
          sees the old host leave, then a new one arrive);
        - ``drain=True``: the new connection is opened while the old one is still open, the
          relay takes over (it closes the old one), and the old one is read to its EOF, so
          every byte the relay wrote to it reaches the old session before the switch.

        ``session``: None keeps the current session; a :class:`HostSession` replaces it; a
        callable gets the old session (after the drain) and returns the new one, e.g. one
        restored from its snapshot. A new session is never started here.

        Events of the old session that were not claimed stay claimable.
        """
        self.flush(timeout)
        old = self._require_sock()
        if drain:
            new_sock = self._connect()
            try:
                self.drain_until_eof(timeout)
            except BaseException:
                new_sock.close()
                raise
        else:
            old.close()
            self.sock = None
            new_sock = self._connect()
        if self.sock is not None:
            self.sock.close()
        self.sock = new_sock
        self.eof = False
        self.bytes_received = self.bytes_sent = 0
        self._out.clear()
        self._out_len = 0
        if session is not None:
            new_session = session if isinstance(session, HostSession) else session(self.session)
            self.session = new_session
        self._collect_output()
