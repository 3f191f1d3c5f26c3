"""One asyncio stream to a guest agent port, driving a sans-IO :class:`HostSession`.

This is the thin adapter between the engine and a socket (aioquic's ``asyncio/`` over
``quic/``): it feeds received bytes to the session, hands every event to a callback, writes
what the session queues, and arms one timer for the session's next deadline. The clock is the
event loop's monotonic ``loop.time()``. It holds no protocol state of its own, so the session
can outlive it (reconnects and migration continuations create a new connection around the same
or a restored session).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import termios
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol import Event, HostSession, RemoteProtocolError

log = logging.getLogger(__name__)

_READ_SIZE = 1024 * 1024
#: How long a close waits for the peer to take the output still queued.
_CLOSE_TIMEOUT = 1.0


class EndpointError(ValueError):
    """An endpoint string that cannot be used; the message is one readable line."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a guest agent port (or a QMP monitor) listens: ``unix:PATH`` or ``tcp:HOST:PORT``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``unix:/path/to/sock`` or ``tcp:host:port`` (IPv6 hosts in brackets).

        :raises EndpointError: with a message fit for the user.
        """
        scheme, sep, rest = text.partition(":")
        if not sep or not rest:
            raise EndpointError(f"endpoint {text!r}: expected unix:PATH or tcp:HOST:PORT")
        if scheme == "unix":
            return cls("unix", path=rest)
        if scheme == "tcp":
            host, sep, port_text = rest.rpartition(":")
            host = host.strip("[]")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise EndpointError(
                    f"endpoint {text!r}: expected tcp:HOST:PORT with a port 1-65535"
                )
            return cls("tcp", host=host, port=int(port_text))
        raise EndpointError(f"endpoint {text!r}: unknown scheme {scheme!r} (use unix: or tcp:)")

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect. Raises OSError (retryable by the caller's policy) on failure."""
        if self.kind == "unix":
            return await asyncio.open_unix_connection(self.path, limit=_READ_SIZE)
        return await asyncio.open_connection(self.host, self.port, limit=_READ_SIZE)


class AgentConnection:
    """Drives ``session`` over one stream. ``on_event`` gets every engine event."""

    def __init__(
        self,
        session: HostSession,
        on_event: Callable[[Event], None],
        on_protocol_error: Callable[[RemoteProtocolError], None] | None = None,
        after_input: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        # What to do once received bytes are handled: write the answers. The VM runtime
        # passes its own flush, which writes on whichever connection is current (during a
        # migration switchover the old connection still reads while the new one writes).
        self._after_input = after_input or self.flush
        self._on_event = on_event
        self._on_protocol_error = on_protocol_error
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        #: While True, :meth:`flush` writes nothing: output stays queued in the session
        #: (a migration holds it from the source's STOP to the destination's RESUME).
        self.hold = False
        #: When set, everything written is also kept here (so it can be written elsewhere
        #: if this peer turns out never to read it: a destination whose migration failed).
        self.record: bytearray | None = None
        #: Loop time of the last bytes received.
        self.last_input = 0.0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def connect(self, endpoint: Endpoint, *, fresh: bool = True, hold: bool = False) -> None:
        """Open the stream. ``fresh`` starts a new conversation (caps with request=1);
        ``fresh=False`` continues the session's conversation as it stands. With ``hold``
        nothing is written until :attr:`hold` is cleared (a pre-connected destination)."""
        self._reader, self._writer = await endpoint.open()
        self.hold = hold
        if fresh:
            self.session.start(self.now())
        self.flush()

    def flush(self) -> None:
        """Write what the session queued and re-arm the deadline timer. Call after every
        action method on the session."""
        if self._writer is None or self._writer.is_closing():
            return
        if not self.hold:
            data = self.session.data_to_send()
            if data:
                self.write(data)
        self._arm_timer()

    def write(self, data: bytes) -> None:
        """Write raw bytes (already framed)."""
        assert self._writer is not None
        self.bytes_out += len(data)
        self._writer.write(data)
        if self.record is not None:
            self.record += data

    def unread_output(self) -> int:
        """Roughly how much of our output the peer has not read yet: asyncio's write buffer
        plus the socket's send queue (SIOCOUTQ; for a UNIX socket the kernel counts buffer
        memory, not bytes, so only 0 — "everything was read" — is exact)."""
        if self._writer is None:
            return 0
        transport = self._writer.transport
        pending = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            buf = array.array("i", [0])
            with contextlib.suppress(OSError):
                fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
                pending += buf[0]
        return pending

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
        self._drain_events()
        self._after_input()

    def _drain_events(self) -> None:
        while True:
            try:
                event = self.session.next_event()
            except RemoteProtocolError as err:
                log.warning("guest protocol error: %s", err)
                if self._on_protocol_error is not None:
                    self._on_protocol_error(err)
                continue
            if event is None:
                return
            self._on_event(event)

    async def run(self) -> None:
        """Read until the stream ends. Returns on EOF; raises OSError on a broken stream."""
        assert self._reader is not None and self._writer is not None
        reader, writer = self._reader, self._writer
        try:
            while data := await reader.read(_READ_SIZE):
                self.bytes_in += len(data)
                self.session.receive_data(data, self.now())
                self.last_input = self.now()
                self._drain_events()
                self._after_input()
                if not writer.is_closing():
                    await writer.drain()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def close(self) -> None:
        """Close the stream (the session is kept)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                # A close waits until the peer has read what is still queued: one that
                # stopped reading would hold it forever, so what it did not take is dropped.
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                writer.transport.abort()
            except (OSError, ConnectionError):
                pass
