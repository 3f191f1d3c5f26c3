"""One socket to a guest agent port, driving a sans-IO :class:`HostSession`.

This is the thin adapter between the engine and a socket (aioquic's ``asyncio/`` over
``quic/``): it feeds received bytes to the session, hands every event to a callback, writes
what the session queues, and arms one timer for the session's next deadline. The clock is the
event loop's monotonic ``loop.time()``. It holds no protocol state of its own, so the session
can outlive it (reconnects and migration continuations create a new connection around the same
or a restored session).

Writing, and back-pressure
--------------------------
The session's output queue is the only queue: the connection owns its non-blocking socket (no
asyncio transport, whose Python 3.11 ``write`` copies the unsent rest of a large buffer again
and again) and hands the kernel, with one ``sendmsg``, the buffers the session lists
(:meth:`HostSession.pending_output`: chunk headers and slices of the caller's bytes), then
consumes what the socket took. What the socket does not take stays in the session, and a
writer callback continues when the socket drains. So a guest that stops reading costs the
queued bytes, never copies of them, and a migration can move the unsent rest to another
connection (the session is shared; only one connection at a time is not *held*).

What the socket took is not yet what the peer read: a migration's source that stops takes
the unread rest with it. So the connection keeps references to its latest writes, trimmed
at every write to the socket's send queue (never less than what the peer has not read) and
dropped once that queue is empty, and says exactly how much its peer left unread
(:meth:`unread_by_peer`, from the kernel's sock_diag): at the switchover those bytes are
written to the destination first (:meth:`written_tail`).

An :class:`OutputGate` holds the high-water mark: once more than :data:`HIGH_WATER` bytes are
queued, producers (file data, the read loop answering requests) wait until the queue is down
to :data:`LOW_WATER`. The read loop checks it after every event, so a guest asking for many
large answers in one read gets them one at a time, as it reads them.

Reading yields to the loop at least every :data:`TURN_BUDGET` seconds while a read is worked
through (a storm of thousands of small messages must not stall the UI and the other VMs).
Reads are at most :data:`READ_SIZE` bytes, which bounds the deframer's work per read (it
splits a read into chunks at once; the messages are decoded one event at a time). A read is
fed whole: the deframer keeps views of a read rather than copies only when they cover most
of it, so feeding slices of a large read would copy a large transfer. Inside a large
clipboard the session offers the message's own buffer instead
(:meth:`HostSession.receive_buffer`) and the socket writes the data there: brought into
memory once, never joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable

from ..protocol import Event, HostSession, RemoteProtocolError
from ..sites import Endpoint
from .gate import OutputGate
from .sockets import open_endpoint
from .transport import SocketTransport, Transport

log = logging.getLogger(__name__)

#: Bytes read at most per ``recv`` (see the module docstring).
READ_SIZE = 256 * 1024
#: Bytes received at most per ``recv_into`` straight into a large clipboard's buffer (the
#: socket holds less; this only bounds how far ahead of the data the buffer grows).
DIRECT_READ_SIZE = 1024 * 1024
#: How long a close waits for the peer to take the output still queued (and read it).
_CLOSE_TIMEOUT = 1.0
#: How often a closing connection looks whether the peer has read everything.
_LINGER_POLL = 0.02
#: Bytes handed to one ``sendmsg`` at most, and buffers (Linux IOV_MAX).
_SEND_SIZE = 1024 * 1024
_SEND_BUFFERS = 1024
#: Bytes written per writer callback before the loop gets a turn (the rest follows on the
#: next one: the socket is still writable).
_PUMP_BUDGET = 8 * 1024 * 1024
#: How long after the output is written the connection checks what the peer has read, to
#: let go of the writes it keeps for a migration's switchover (see ``written_tail``).
_TRIM_DELAY = 0.25
#: Longest stretch of event handling between two turns of the loop.
TURN_BUDGET = 0.005


class AgentConnection:
    """Drives ``session`` over one transport (runtime/transport.py: a socket, a libvirt
    stream). ``on_event`` gets every engine event.

    ``gate`` is the high-water mark the read loop respects (by default one of its own over
    :meth:`backlog`); the VM runtime passes one gate to all the connections of a VM, since
    they share its session's output queue.
    """

    def __init__(
        self,
        session: HostSession,
        on_event: Callable[[Event], None],
        on_protocol_error: Callable[[RemoteProtocolError], None] | None = None,
        after_input: Callable[[], None] | None = None,
        gate: OutputGate | None = None,
    ) -> None:
        self.session = session
        # What to do once received bytes are handled: write the answers. The VM runtime
        # passes its own flush, which writes on whichever connection is current (during a
        # migration switchover the old connection still reads while the new one writes).
        self._after_input = after_input or self.flush
        self._on_event = on_event
        self._on_protocol_error = on_protocol_error
        self.gate = gate or OutputGate(self.backlog)
        self._sock: Transport | None = None
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        #: Raw bytes written before the session's output (see :meth:`write`).
        self._front: deque[memoryview] = deque()
        self._front_size = 0
        self._writing = False  # a writer callback is registered
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_error: OSError | None = None
        self._drained: asyncio.Future[None] | None = None
        #: Whether the read loop is waiting for the output to drain (events stay queued).
        self._gated = False
        self.bytes_in = 0
        self.bytes_out = 0
        #: While True, nothing of the session's output is written: it stays queued in the
        #: session (a migration holds it from the source's STOP to the destination's RESUME).
        self.hold = False
        #: When set, everything written is also kept here (so it can be written elsewhere
        #: if this peer turns out never to read it: a destination whose migration failed).
        self.record: bytearray | None = None
        #: Loop time of the last bytes received.
        self.last_input = 0.0
        #: The latest writes, as (buffers, bytes the socket took of them): at least
        #: ``_retain`` bytes, enough to cover what the peer may not have read yet (see
        #: :meth:`written_tail`). References, not copies.
        self._written: deque[tuple[list[bytes | memoryview], int]] = deque()
        self._written_size = 0
        self._retain = 0
        self._trim_handle: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._sock is not None and not self._closing

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def connect(self, endpoint: Endpoint, *, fresh: bool = True, hold: bool = False) -> None:
        """Open the socket. ``fresh`` starts a new conversation (caps with request=1);
        ``fresh=False`` continues the session's conversation as it stands. With ``hold``
        nothing is written until :attr:`hold` is cleared (a pre-connected destination)."""
        self.attach(SocketTransport(await open_endpoint(endpoint)), fresh=fresh, hold=hold)

    def attach(self, transport: Transport, *, fresh: bool = True, hold: bool = False) -> None:
        """Drive the session over an open ``transport`` (see :meth:`connect`)."""
        self._sock = transport
        self._retain = transport.retain
        self._write_error = None
        self._closing = False
        self.hold = hold
        if fresh:
            self.session.start(self.now())
        self.flush()

    # ---------------------------------------------------------------- output

    def flush(self) -> None:
        """Write what the socket takes of the queued output (the rest follows as it drains)
        and re-arm the deadline timer. Call after every action method on the session."""
        if not self.connected:
            return
        self._pump()
        self._arm_timer()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write raw bytes (already framed), before anything of the session's output and
        even while held."""
        if self._sock is None:
            return
        view = memoryview(data).cast("B")
        if view.nbytes:
            self._front.append(view)
            self._front_size += view.nbytes
            self._pump()

    def backlog(self) -> int:
        """Bytes this connection would still write: its own raw bytes and, unless held, the
        session's queue. (The kernel's socket buffer is not counted: see unread_output.)"""
        return self._front_size + (0 if self.hold else self.session.bytes_to_send)

    @property
    def writable(self) -> bool:
        """Whether producers may queue more output (see :class:`OutputGate`)."""
        return self.gate.writable

    async def wait_writable(self) -> None:
        """Wait until the output is below the low-water mark (see :class:`OutputGate`)."""
        await self.gate.wait_writable()

    def unread_output(self) -> int:
        """Roughly how much of what we wrote the peer has not read yet: the raw bytes not
        yet taken by the socket plus the socket's send queue (SIOCOUTQ; for a UNIX socket
        the kernel counts buffer memory, not bytes, so only 0, "everything was read", is
        exact). The session's queue is not included: see :meth:`backlog`."""
        return self._front_size + self._send_queue()

    def _send_queue(self) -> int:
        """The transport's send queue: 0 once the peer has read everything."""
        return 0 if self._sock is None else self._sock.send_queue()

    def _buffers(self) -> tuple[list[bytes | memoryview], bool]:
        """What to hand the socket next, and whether it comes from the session."""
        if self._front:
            front: list[bytes | memoryview] = [*itertools.islice(self._front, _SEND_BUFFERS)]
            return front, False
        if self.hold or not self.session.bytes_to_send:
            return [], False
        return self.session.pending_output(_SEND_SIZE, _SEND_BUFFERS), True

    def _pump(self) -> None:
        """Write until the socket is full (then continue from a writer callback), the output
        is all written, or the budget for one turn of the loop is spent."""
        sock = self._sock
        if sock is None or self._write_error is not None:
            return
        budget = _PUMP_BUDGET
        wrote = False
        while budget > 0:
            buffers, from_session = self._buffers()
            if not buffers:
                break
            try:
                sent = sock.send(buffers)
            except BlockingIOError:
                break
            except OSError as err:
                # The peer is gone: the reader will see it too. What we could not write
                # stays queued in the session for the next connection to drop or resend.
                log.debug("write failed: %s", err)
                self._write_error = err
                self._stop_writing()
                self._wake_reader()
                break
            if self.record is not None:
                self._record(buffers, sent)
            self._keep_written(buffers, sent)
            self.bytes_out += sent
            budget -= sent
            wrote = True
            if from_session:
                self.session.consume_output(sent)
            else:
                self._consume_front(sent)
        if self._front or (not self.hold and self.session.bytes_to_send):
            if self._write_error is None and not self._writing:
                sock.on_writable(self._pump)
                self._writing = True
        else:
            self._stop_writing()
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
            self._schedule_trim()
        if wrote:
            self.gate.notify()

    def _stop_writing(self) -> None:
        if self._writing and self._sock is not None:
            self._sock.on_writable(None)
        self._writing = False

    def _consume_front(self, count: int) -> None:
        self._front_size -= count
        front = self._front
        while count:
            head = front[0]
            if count >= head.nbytes:
                count -= head.nbytes
                front.popleft()
            else:
                front[0] = head[count:]
                count = 0

    def _keep_written(self, buffers: list[bytes | memoryview], count: int) -> None:
        written = self._written
        written.append((buffers, count))
        self._written_size += count
        # The peer's unread bytes are never more than the socket's send queue (counted in
        # buffer memory for a UNIX socket): older writes can go, and the buffers they hold.
        self._trim_written(min(self._send_queue(), self._retain))

    def _trim_written(self, keep: int) -> None:
        """Keep at least the last ``keep`` written bytes, as few entries as that takes."""
        written = self._written
        while written and self._written_size - written[0][1] >= keep:
            self._written_size -= written.popleft()[1]

    def _schedule_trim(self) -> None:
        if self._written and self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(
                _TRIM_DELAY, self._trim_read
            )

    def _trim_read(self) -> None:
        """Once the output is written, let go of what the peer has read: the kept writes
        reference their buffers, and a large clipboard must not stay in memory because it
        was the last thing sent. The socket's send queue (SIOCOUTQ, counted in buffer
        memory for a UNIX socket) is never less than what the peer has left unread."""
        self._trim_handle = None
        queued = self._send_queue()
        self._trim_written(queued)
        if queued == 0:
            self._written.clear()
            self._written_size = 0
        self._schedule_trim()

    def written_tail(self, count: int) -> bytes | None:
        """The last ``count`` bytes written to the socket, or None if fewer are kept (at
        least twice the send buffer is: what a peer can have left unread).

        A migration's source that stops with some of our output unread
        (:meth:`unread_by_peer`) takes it with it; these bytes go to the destination first.
        """
        if count > self._written_size:
            return None
        parts: list[bytes] = []
        need = count
        for buffers, sent in reversed(self._written):
            if need <= 0:
                break
            data = b"".join(buffers)[:sent]
            parts.append(data[-need:])
            need -= len(parts[-1])
        return b"".join(reversed(parts))

    @property
    def knows_unread(self) -> bool:
        """Whether :meth:`unread_output` is measured (0 then means "all read")."""
        return self._sock is not None and self._sock.knows_send_queue

    def keeps(self, count: int) -> bool:
        """Whether the last ``count`` written bytes are still at hand (see
        :meth:`written_tail`)."""
        return count <= self._written_size

    def unread_by_peer(self) -> int | None:
        """Exactly how many written bytes the peer has not read (a UNIX socket's peer, from
        the kernel's sock_diag), or None where that cannot be known."""
        sock = self._sock
        return None if sock is None else sock.unread_by_peer()

    def _record(self, buffers: list[bytes | memoryview], count: int) -> None:
        assert self.record is not None
        for buf in buffers:
            if count <= 0:
                break
            piece = buf[:count]
            self.record += piece
            count -= len(piece)

    # ---------------------------------------------------------------- timer

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timeout(self.now())
        if not self._gated:  # otherwise the read loop hands the events out once it may
            self._drain_events()
        self._after_input()

    # ---------------------------------------------------------------- input

    def _next_event(self) -> Event | None:
        while True:
            try:
                return self.session.next_event()
            except RemoteProtocolError as err:
                log.warning("guest protocol error: %s", err)
                if self._on_protocol_error is not None:
                    self._on_protocol_error(err)

    def _drain_events(self) -> None:
        while (event := self._next_event()) is not None:
            self._on_event(event)

    async def _handle_input(self, turn: list[float]) -> None:
        """Hand out the events of what was received, one at a time: wait for the output to
        drain when it is over the high-water mark, and give the loop a turn every
        TURN_BUDGET seconds. ``turn`` holds when the current turn started."""
        loop = asyncio.get_running_loop()
        while (event := self._next_event()) is not None:
            self._on_event(event)
            if not self.gate.writable:
                self._after_input()
                self._gated = True
                try:
                    drained = await self.gate.wait_writable(unless=lambda: not self.connected)
                finally:
                    self._gated = False
                if not drained:
                    return  # closed: what is left stays queued in the session
                turn[0] = loop.time()
            elif loop.time() - turn[0] > TURN_BUDGET:
                self._after_input()
                await asyncio.sleep(0)
                turn[0] = loop.time()

    async def _receive(self, sock: Transport) -> int:
        """Read the next bytes from the socket into the session: how many, 0 at EOF or
        once the connection is closed. A large clipboard is received straight into its own
        buffer (:meth:`HostSession.receive_buffer`), anything else as bytes."""
        while True:
            if self._sock is None:
                return 0
            if self._write_error is not None:
                raise self._write_error
            try:
                view = self.session.receive_buffer(DIRECT_READ_SIZE)
                if view is None:
                    data = sock.recv(READ_SIZE)
                    if data:
                        self.last_input = self.now()
                        self.session.receive_data(data, self.last_input)
                    return len(data)
                with view:  # released at once: the buffer may have to grow for the next
                    count = sock.recv_into(view)
                if count:
                    self.last_input = self.now()
                    self.session.received_into(count, self.last_input)
                return count
            except BlockingIOError:
                pass
            await self._readable(sock)

    async def _readable(self, sock: Transport) -> None:
        """Wait until ``sock`` is readable (or :meth:`close` wakes us)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._read_waiter = waiter
        sock.on_readable(lambda: _wake(waiter))
        try:
            await waiter
        finally:
            self._read_waiter = None
            if self._sock is not None:
                sock.on_readable(None)

    async def watch_for_close(self) -> str:
        """For a connection nobody reads (a migration's held destination): return, with the
        reason, once the peer closed it or it broke; wait forever while it stays open.

        It only peeks: bytes the peer sends stay in the socket for :meth:`run` to read later
        (when the peer sends something, the watch ends quietly: waiting would spin)."""
        loop = asyncio.get_running_loop()
        sock = self._sock
        while sock is not None:
            if self._write_error is not None:
                return self._write_error.strerror or str(self._write_error)
            try:
                data = sock.peek()
            except OSError as err:
                return err.strerror or str(err)
            if data == b"":
                return "the agent port closed"
            if data:
                await loop.create_future()  # readable for run(): nothing more to watch
            await self._readable(sock)
            sock = self._sock
        return "closed"

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and self._sock is not None:
            self._sock.on_readable(None)
            _wake(waiter)

    async def run(self) -> None:
        """Read until the stream ends. Returns on EOF; raises OSError on a broken stream."""
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        turn = [loop.time()]
        try:
            # Events a previous connection left undelivered (it was retired while waiting
            # for the output to drain) come first.
            await self._handle_input(turn)
            self._after_input()
            while count := await self._receive(sock):
                self.bytes_in += count
                await self._handle_input(turn)
                self._after_input()
                if loop.time() - turn[0] > TURN_BUDGET:
                    await asyncio.sleep(0)
                    turn[0] = loop.time()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # ---------------------------------------------------------------- close

    async def close(self, *, linger: bool = True) -> None:
        """Close the socket (the session is kept), after giving the peer up to a second to
        take what is still queued and to read what the socket holds: a peer that stopped
        reading would hold it forever, so what it did not take is dropped (the session's rest
        stays queued in the session).

        Why wait for the peer to read: a guest sees the host's close only once it has read
        what came before it (QEMU drains the socket, then closes the guest's port). A host
        that reconnects before that is taken for the same client: the guest may answer the
        new announce and only then see the old close, reset, and silently discard every
        grab that follows. ``linger=False`` closes at once (a migration's source that
        stopped: it never reads again)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sock = self._sock
        if sock is None or self._closing:
            return
        self._closing = True
        self._pump()
        loop = asyncio.get_running_loop()
        end = loop.time() + _CLOSE_TIMEOUT
        if self._writing and linger:
            self._drained = loop.create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drained), _CLOSE_TIMEOUT)
            self._drained = None
        while linger and loop.time() < end and (sock.unread_by_peer() or 0) > 0:
            await asyncio.sleep(_LINGER_POLL)
        self._stop_writing()
        self._wake_reader()
        self._sock = None
        self._closing = False
        self._front.clear()
        self._front_size = 0
        self._written.clear()  # what it kept for a migration's switchover: no longer needed
        self._written_size = 0
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None
        sock.close()
        self.gate.notify()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
