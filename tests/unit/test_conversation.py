"""The switchover driver (runtime/conversation.py) over real sockets, the migration's facts
given by hand as a follower would: when the source stops with our output unread, those bytes
go to the destination first, and if the migration then fails, the source, which still has
them, gets the rest exactly once.

The real thing, a file sent while QEMU migrates the guest, is tests/qemu/test_migration.py.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.helpers import agent_bytes, quick, until
from vdagent_bridge.protocol import ClipboardType, Selection
from vdagent_bridge.protocol.caps import LINUX_AGENT_CAPS
from vdagent_bridge.protocol.constants import MessageType, Port
from vdagent_bridge.protocol.deframer import Deframer, RawMessage
from vdagent_bridge.protocol.messages import AnnounceCapabilities, ClipboardData
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime
from vdagent_bridge.runtime.switchover import GuestStopped, MigrationStatus, Phase, Progress

CAPS = agent_bytes(AnnounceCapabilities(True, LINUX_AGENT_CAPS.to_words()))
DATA = bytes(range(256)) * 16384  # 4 MiB: more than the socket holds
LATER = b"sent after the source stopped"


def listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> bytes:
    """What the socket holds now, without waiting."""
    out = bytearray()
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not data:
            return bytes(out)
        out += data


def clipboards(stream: bytes) -> list[bytes]:
    """The CLIPBOARD payloads' data in a host → guest stream, which must be well framed."""
    deframer = Deframer(max_message_size=1 << 30, ports=(Port.CLIENT,), max_chunk_size=2048)
    deframer.feed(stream)
    assert deframer.buffered() == 0, "the stream ends inside a message"
    out = []
    for item in deframer.items:
        assert isinstance(item, RawMessage), f"the stream is broken: {item}"
        if item.type == MessageType.CLIPBOARD:
            out.append(item.payload[8:])
    return out


def test_the_unread_tail_goes_to_the_destination_and_a_failed_migration_sends_no_byte_twice(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        with listener(tmp_path / "src.sock") as src_listener, \
                listener(tmp_path / "dst.sock") as dst_listener:
            vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(tmp_path / "src.sock"))),
                                  Site(Endpoint("unix", path=str(tmp_path / "dst.sock")))],
                           delays=quick)
            task = asyncio.create_task(vm.run())
            src, _ = await loop.sock_accept(src_listener)
            src.sendall(CAPS)
            await until(lambda: vm.session.clipboard_ready)
            vm.session.send(ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, DATA))
            vm.flush()
            source_stream = bytearray(await loop.sock_recv(src, 100_000))
            await asyncio.sleep(0.05)  # the runtime fills the source's socket again

            # A migration starts (hold, pre-connect) and the source stops, leaving bytes unread.
            conversation = vm._conversation
            assert conversation is not None
            source = vm.connection
            assert source is not None
            conversation.observe(MigrationStatus(0, Progress.RUNNING))
            dst, _ = await loop.sock_accept(dst_listener)
            await until(lambda: conversation.machine.phase is Phase.PRECONNECTED)
            assert source.hold
            unread = source.unread_by_peer()
            assert unread is not None and unread > 0
            conversation.observe(GuestStopped(0))
            await until(lambda: conversation.machine.phase is Phase.WRITING_TO_DESTINATION)

            # The destination gets the unread bytes first: exactly what the source still has.
            dst.setblocking(False)
            first = bytearray()
            while len(first) < unread:
                first += await loop.sock_recv(dst, unread - len(first))
            src.setblocking(False)
            left_in_source = drain(src)
            assert bytes(first) == left_in_source

            # The migration fails: the source resumes with its unread bytes, and the runtime
            # sends it what went to the destination after them, and the rest, once.
            vm.session.send(ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, LATER))
            vm.flush()
            await asyncio.sleep(0.05)
            conversation.observe(MigrationStatus(0, Progress.FAILED))
            await until(lambda: conversation.machine.phase is Phase.IDLE)
            source_stream += left_in_source
            while clipboards_so_far(source_stream) < 2:
                source_stream += await loop.sock_recv(src, 1 << 20)
            assert clipboards(bytes(source_stream)) == [DATA, LATER]
            await vm.stop()
            await asyncio.wait_for(task, 5)
            src.close()
            dst.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def clipboards_so_far(stream: bytes | bytearray) -> int:
    deframer = Deframer(max_message_size=1 << 30, ports=(Port.CLIENT,))
    deframer.feed(stream)
    return sum(1 for item in deframer.items
               if isinstance(item, RawMessage) and item.type == MessageType.CLIPBOARD)
