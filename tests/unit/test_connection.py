"""The connection's writer (runtime/connection.py) over real sockets: hold, raw writes,
record, a queue handed over mid-message to another connection, the high-water mark, TCP.

The peer is a plain asyncio server that keeps every byte it reads and reads only when told,
so a test can fill the socket, then let it drain.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from pathlib import Path

from tests import helpers
from vdagent_bridge.protocol import ClipboardType, Event, HostSession, Selection
from vdagent_bridge.protocol.messages import ClipboardData
from vdagent_bridge.runtime import AgentConnection, Endpoint, OutputGate
from vdagent_bridge.runtime.transport import SocketTransport

MIB = 1024 * 1024


class Peer:
    """A server keeping what it reads; it reads only while :attr:`reading` is set."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.reading = asyncio.Event()
        self.reading.set()
        self.connected = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def unix(self, path: Path) -> Endpoint:
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        return Endpoint("unix", path=str(path))

    async def tcp(self) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return Endpoint("tcp", host="127.0.0.1", port=port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        try:
            while True:
                await self.reading.wait()
                data = await reader.read(MIB)
                if not data:
                    return
                self.received += data
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


#: Socket round trips here may take a while on a loaded machine.
until = functools.partial(helpers.until, timeout=10.0)


def connection(session: HostSession) -> AgentConnection:
    events: list[Event] = []
    return AgentConnection(session, events.append)


def big_answer(session: HostSession, size: int) -> None:
    session.send(ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, bytes(size)))


def run(scenario: Callable[[], object]) -> None:
    async def main() -> None:
        await asyncio.wait_for(scenario(), 30)  # type: ignore[arg-type]

    asyncio.run(main())


def test_held_output_stays_queued_and_raw_writes_go_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        peer = Peer()
        endpoint = await peer.unix(tmp_path / "s")
        session = HostSession()
        conn = connection(session)
        await conn.connect(endpoint, fresh=False, hold=True)
        big_answer(session, 100)
        conn.flush()
        conn.write(b"raw bytes first")
        await until(lambda: len(peer.received) == 15)
        await asyncio.sleep(0.05)
        assert bytes(peer.received) == b"raw bytes first"  # the answer is held
        assert session.bytes_to_send > 100 and conn.backlog() == 0  # held: not counted
        conn.hold = False
        expected = b"raw bytes first" + HostSession.restore(
            session.snapshot(0.0), 0.0).data_to_send()
        conn.flush()
        await until(lambda: len(peer.received) == len(expected))
        assert bytes(peer.received) == expected
        await conn.close()
        await peer.close()

    run(scenario)


def test_a_queue_half_written_on_one_connection_continues_on_the_next(tmp_path: Path) -> None:
    """What a migration switchover relies on: the session is the only queue, consumed
    byte by byte, so a large message cut anywhere by a full socket goes on, in order, on
    the next connection; and what the recording connection wrote is exactly recorded."""

    async def scenario() -> None:
        source, destination = Peer(), Peer()
        source.reading.clear()  # the source stops reading
        session = HostSession()
        big_answer(session, 16 * MIB)
        whole = HostSession.restore(session.snapshot(0.0), 0.0).data_to_send()
        first = connection(session)
        await first.connect(await source.unix(tmp_path / "src"), fresh=False)
        await until(lambda: first.bytes_out > 0 and session.bytes_to_send > 0)
        first.hold = True
        second = connection(session)
        # As the runtime does it: pre-connected held, recording from when it may write.
        await second.connect(await destination.unix(tmp_path / "dst"), fresh=False, hold=True)
        second.record = bytearray()
        second.hold = False
        second.flush()
        await until(lambda: len(destination.received) == len(whole) - first.bytes_out)
        assert bytes(second.record) == bytes(destination.received)
        source.reading.set()
        await until(lambda: len(source.received) == first.bytes_out)
        assert bytes(source.received) + bytes(destination.received) == whole
        for conn in (first, second):
            await conn.close()
        for peer in (source, destination):
            await peer.close()

    run(scenario)


def test_producers_wait_at_the_high_water_mark_until_the_peer_reads(tmp_path: Path) -> None:
    async def scenario() -> None:
        peer = Peer()
        peer.reading.clear()
        session = HostSession()
        conn = AgentConnection(session, lambda _: None)
        conn.gate = OutputGate(conn.backlog, high=MIB, low=MIB // 4)
        await conn.connect(await peer.unix(tmp_path / "s"), fresh=False)
        big_answer(session, 8 * MIB)
        conn.flush()
        assert not conn.writable
        waiter = asyncio.create_task(conn.wait_writable())
        await asyncio.sleep(0.1)
        assert not waiter.done()  # the peer reads nothing
        peer.reading.set()
        await asyncio.wait_for(waiter, 10)
        assert conn.backlog() <= MIB // 4
        await conn.close()
        await peer.close()

    run(scenario)


def test_a_tcp_endpoint_carries_a_large_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        peer = Peer()
        endpoint = await peer.tcp()
        session = HostSession()
        conn = connection(session)
        await conn.connect(endpoint, fresh=False)
        transport = conn._sock
        assert isinstance(transport, SocketTransport)
        assert transport._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        big_answer(session, 4 * MIB)
        whole = HostSession.restore(session.snapshot(0.0), 0.0).data_to_send()
        conn.flush()
        await until(lambda: len(peer.received) == len(whole))
        assert bytes(peer.received) == whole
        await conn.close()
        await peer.close()

    run(scenario)


def test_close_delivers_what_is_queued_to_a_reading_peer(tmp_path: Path) -> None:
    async def scenario() -> None:
        peer = Peer()
        session = HostSession()
        conn = connection(session)
        await conn.connect(await peer.unix(tmp_path / "s"), fresh=False)
        big_answer(session, 8 * MIB)
        whole = HostSession.restore(session.snapshot(0.0), 0.0).data_to_send()
        conn.flush()
        await conn.close()
        await until(lambda: len(peer.received) == len(whole))
        assert not conn.connected
        await peer.close()

    run(scenario)
