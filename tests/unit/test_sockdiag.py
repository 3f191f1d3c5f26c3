"""What the peer of a UNIX socket has not read (runtime/sockdiag.py), and the written bytes a
connection keeps to cover it: what a migration carries from a stopped source to the
destination (tests/qemu/test_migration.py has the real switchover)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from vdagent_bridge.protocol import ClipboardType, HostSession, Selection
from vdagent_bridge.protocol.messages import ClipboardData
from vdagent_bridge.runtime import AgentConnection, Endpoint
from vdagent_bridge.runtime.sockdiag import unread_by_peer


def fill(sock: socket.socket) -> int:
    """Write until the socket takes no more; how much it took."""
    sock.setblocking(False)
    total = 0
    try:
        while True:
            total += sock.send(bytes(65536))
    except BlockingIOError:
        return total


def test_the_peer_s_unread_bytes_are_counted_exactly() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert unread_by_peer(ours) == 0
        written = fill(ours)
        assert unread_by_peer(ours) == written
        theirs.recv(12345)
        assert unread_by_peer(ours) == written - 12345


def test_what_cannot_be_known_is_none() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert unread_by_peer(tcp) is None  # not a UNIX socket
    ours, theirs = socket.socketpair()
    ours.close()
    theirs.close()
    assert unread_by_peer(ours) is None  # closed


def test_a_connection_gives_back_exactly_what_its_peer_left_unread(tmp_path: Path) -> None:
    """The peer stops reading in the middle of a large answer: the connection's written
    tail of the unread length is the end of what went out, byte for byte."""
    path = tmp_path / "agent.sock"
    data = bytes(range(256)) * 16384  # 4 MiB

    async def scenario() -> None:
        accepted: asyncio.Queue[socket.socket] = asyncio.Queue()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(listener.fileno(), lambda: accepted.put_nowait(listener.accept()[0]))
        session = HostSession()
        conn = AgentConnection(session, lambda event: None)
        await conn.connect(Endpoint("unix", path=str(path)))
        peer = await accepted.get()
        conn.record = bytearray()  # everything written, to compare with
        session.send(ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, data))
        conn.flush()
        peer.recv(100_000)  # the peer reads a little, then no more
        await asyncio.sleep(0.05)
        conn.flush()
        unread = conn.unread_by_peer()
        assert unread is not None and 0 < unread < len(conn.record)
        assert conn.written_tail(unread) == bytes(conn.record[-unread:])
        assert conn.written_tail(conn.bytes_out + 1) is None  # never more than was written
        loop.remove_reader(listener.fileno())
        await asyncio.wait_for(conn.close(), 5)
        peer.close()
        listener.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_a_connection_lets_go_of_what_its_peer_has_read(tmp_path: Path) -> None:
    """The kept writes reference their buffers: once the peer has read everything, they are
    dropped, so a large clipboard does not stay in memory for being the last thing sent."""
    path = tmp_path / "agent.sock"
    data = bytes(8 * 1024 * 1024)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.setblocking(False)
        session = HostSession()
        conn = AgentConnection(session, lambda event: None)
        connecting = asyncio.create_task(conn.connect(Endpoint("unix", path=str(path))))
        peer, _ = await loop.sock_accept(listener)
        await connecting
        session.send(ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, data))
        conn.flush()
        got = 0
        while got < len(data) or got < conn.bytes_out or session.bytes_to_send:
            got += len(await loop.sock_recv(peer, 1 << 20))
            conn.flush()
        for _ in range(200):
            if conn._written_size == 0:
                break
            await asyncio.sleep(0.01)
        assert conn._written_size == 0 and not conn._written
        await asyncio.wait_for(conn.close(), 5)
        peer.close()
        listener.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
