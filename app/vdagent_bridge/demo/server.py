"""The simulated guest behind a UNIX socket, the way QEMU exposes a guest agent port.

A QEMU ``-chardev socket,server=on`` serves one client at a time; the guest's bytes written
while nobody is connected would be lost there, but the demo holds them (like the test relay
does) so that the daemon's first caps announce reaches the host that connects later. A new
connection takes over from the previous one, which is closed.

The socket is created in a directory only the user can enter and is itself chmod 0600, so no
other local user can talk to the "guest".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from .guest import SimulatedGuest

log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024


class GuestServer:
    """Serves one :class:`SimulatedGuest` on ``path``. Use ``async with`` or start/close."""

    def __init__(self, path: str | os.PathLike[str], guest: SimulatedGuest | None = None) -> None:
        self.path = Path(path)
        self.guest = guest or SimulatedGuest()
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._held = bytearray()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        #: Every connection's transport, from the moment asyncio makes it: a connection
        #: accepted just before close() has no serving task yet, only this.
        self._transports: set[asyncio.BaseTransport] = set()
        self._closing = False

    async def start(self) -> None:
        """Listen, and open the guest port (the daemon's caps request=1 is queued)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._closing = False
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Connection(self), path=str(self.path))
        os.chmod(self.path, 0o600)
        self.guest.open_port()
        self.flush()

    async def close(self) -> None:
        """Stop listening and drop every host connection, including one accepted just now
        that no serving task has picked up yet (it would otherwise stay open, unserved)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in list(self._transports):
            transport.close()
        self._writer = None
        # Closing the transports ends the serving tasks with EOF; cancelling them instead would
        # make asyncio's stream callback log the cancellation as an error.
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=2)
            for task in pending:
                task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def __aenter__(self) -> GuestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def flush(self) -> None:
        """Send what the guest queued (after a guest-side action), or hold it."""
        self._held += self.guest.data_to_send()
        if self._writer is not None and self._held:
            self._writer.write(bytes(self._held))
            self._held.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        if self._writer is not None:
            log.info("demo guest: a new host takes over the connection")
            self._writer.close()
        self._writer = writer
        self._writers.add(writer)
        self.connections += 1
        self.flush()
        try:
            while data := await reader.read(_READ_SIZE):
                self.guest.receive_data(data)
                if self._writer is writer:
                    self.flush()
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)


class _Connection(asyncio.StreamReaderProtocol):
    """One host connection's stream protocol, known to its server from ``connection_made``
    on (before the serving task runs), so that close() can close it whatever its stage."""

    def __init__(self, server: GuestServer) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(asyncio.StreamReader(loop=loop), server._serve, loop=loop)
        self._owner = server
        self._own_transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._own_transport = transport
        self._owner._transports.add(transport)
        super().connection_made(transport)
        if self._owner._closing:  # made after close() ran: its serving task sees EOF
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._own_transport is not None:
            self._owner._transports.discard(self._own_transport)
        super().connection_lost(exc)
