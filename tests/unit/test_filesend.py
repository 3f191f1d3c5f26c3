"""Sending files through the VM runtime (runtime/filesend.py), against the simulated agent.

What is specified: files land whole and in order with their number in the batch; every path
is checked before anything is sent; the guest's refusals, a guest that does not answer, a
lost connection and a cancelled task each end in one sentence for the user (and a cancelled
or abandoned transfer is cancelled in the guest); a guest that stops reading holds the
sender back instead of filling the memory.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import agent_bytes
from vdagent_bridge.demo import GuestServer, SimulatedGuest
from vdagent_bridge.protocol import (
    Capability,
    Caps,
    Event,
    FileTransferFinished,
    FileTransferReady,
    FileXferStatus,
)
from vdagent_bridge.protocol.caps import LINUX_AGENT_CAPS
from vdagent_bridge.protocol.constants import MessageType
from vdagent_bridge.protocol.deframer import RawMessage
from vdagent_bridge.protocol.messages import (
    AnnounceCapabilities,
    FileXferStart,
    FileXferStatusMessage,
)
from vdagent_bridge.runtime import (
    HIGH_WATER,
    Endpoint,
    FileProgress,
    FileSendError,
    Site,
    VmRuntime,
)
from vdagent_bridge.runtime.filesend import READ_BLOCK

MIB = 1024 * 1024


def quick() -> Iterator[float]:
    return itertools.repeat(0.02)


#: Socket round trips here may take a while on a loaded machine.
until = functools.partial(helpers.until, timeout=10.0)


class Vm:
    """A running VmRuntime on one UNIX socket, its events in a list."""

    def __init__(self, path: Path) -> None:
        self.events: list[Event] = []
        self.runtime = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))],
                                 on_event=self.events.append, delays=quick)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> VmRuntime:
        self.task = asyncio.create_task(self.runtime.run())
        await until(lambda: self.runtime.session.guest_caps is not None)
        return self.runtime

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def run(scenario: Callable[[], object]) -> None:
    async def main() -> None:
        await asyncio.wait_for(scenario(), 60)  # type: ignore[arg-type]

    asyncio.run(main())


# ----- files land ----------------------------------------------------------------------------


def test_two_files_land_whole_in_order_with_progress(tmp_path: Path) -> None:
    big = write(tmp_path / "big.bin", random.Random(1).randbytes(3 * MIB + 123))
    small = write(tmp_path / "notes.txt", b"hello guest\n")
    reports: list[FileProgress] = []

    async def scenario() -> None:
        guest = SimulatedGuest()
        async with GuestServer(tmp_path / "agent.sock", guest), \
                Vm(tmp_path / "agent.sock") as vm:
            await vm.send_files([big, small], reports.append)
            assert guest.files == {"big.bin": big.read_bytes(), "notes.txt": small.read_bytes()}
            assert vm.session.transfer(1) is None and vm.session.transfer(2) is None

    run(scenario)
    firsts = [r for r in reports if r.number == 1]
    assert firsts[0] == FileProgress("big.bin", 0, 3 * MIB + 123, 1, 2)
    assert firsts[-1] == FileProgress("big.bin", 3 * MIB + 123, 3 * MIB + 123, 1, 2)
    assert [r.sent for r in firsts] == sorted(r.sent for r in firsts)
    # Not one report per 64 KiB piece: at most one per read block, plus the first and last.
    assert len(firsts) <= 2 + (3 * MIB + 123) // READ_BLOCK + 1
    assert [r for r in reports if r.number == 2] == [
        FileProgress("notes.txt", 0, 12, 2, 2), FileProgress("notes.txt", 12, 12, 2, 2)
    ]


def test_an_empty_file_and_an_empty_batch(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty", b"")

    async def scenario() -> None:
        guest = SimulatedGuest()
        async with GuestServer(tmp_path / "agent.sock", guest), \
                Vm(tmp_path / "agent.sock") as vm:
            await vm.send_files([])
            await vm.send_files([empty])
            assert guest.files == {"empty": b""}

    run(scenario)


def test_the_transfer_events_still_reach_on_event(tmp_path: Path) -> None:
    small = write(tmp_path / "a.txt", b"a")
    vm = Vm(tmp_path / "agent.sock")

    async def scenario() -> None:
        async with GuestServer(tmp_path / "agent.sock"), vm as runtime:
            await runtime.send_files([small])

    run(scenario)
    kinds = [type(e) for e in vm.events]
    assert FileTransferReady in kinds and FileTransferFinished in kinds


# ----- paths are checked first ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.txt", "cannot read {p}: No such file or directory"),
        (lambda d: d, "{p} is a directory: send the files in it instead"),
        (lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "{p} is not a regular file"),
    ],
    ids=["missing", "directory", "fifo"],
)
def test_a_bad_path_fails_the_batch_before_anything_is_sent(
    tmp_path: Path, make: Callable[[Path], Path], words: str
) -> None:
    good = write(tmp_path / "good.txt", b"good")
    (tmp_path / "d").mkdir()
    bad = make(tmp_path / "d")

    async def scenario() -> None:
        guest = SimulatedGuest()
        async with GuestServer(tmp_path / "agent.sock", guest), \
                Vm(tmp_path / "agent.sock") as vm:
            with pytest.raises(FileSendError) as err:
                await vm.send_files([good, bad])
            assert str(err.value) == words.format(p=bad)
            assert guest.files == {}  # the good file first was not sent either

    run(scenario)


def test_an_unreadable_file_is_refused_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Tests run as root, whom file modes do not stop: the refusal is simulated.)"""
    secret = write(tmp_path / "secret", b"x")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == secret:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)

    async def scenario() -> None:
        async with GuestServer(tmp_path / "agent.sock"), Vm(tmp_path / "agent.sock") as vm:
            with pytest.raises(FileSendError, match=f"^cannot read {secret}: Permission denied$"):
                await vm.send_files([secret])

    run(scenario)


def test_without_a_connection_nothing_is_sent(tmp_path: Path) -> None:
    small = write(tmp_path / "a.txt", b"a")

    async def scenario() -> None:
        vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(tmp_path / "none.sock")))])
        with pytest.raises(FileSendError, match="^the guest agent is not connected$"):
            await vm.send_files([small])

    run(scenario)


# ----- the guest says no ---------------------------------------------------------------------


def test_file_transfer_disabled_in_the_guest(tmp_path: Path) -> None:
    small = write(tmp_path / "a.txt", b"a")
    caps = Caps.of([*LINUX_AGENT_CAPS, Capability.FILE_XFER_DISABLED])

    async def scenario() -> None:
        guest = SimulatedGuest(caps=caps)
        async with GuestServer(tmp_path / "agent.sock", guest), \
                Vm(tmp_path / "agent.sock") as vm:
            with pytest.raises(FileSendError, match="^file transfer is disabled in the guest$"):
                await vm.send_files([small])

    run(scenario)


class RefusingGuest(SimulatedGuest):
    """Answers every START with ``status`` (and its detail)."""

    def __init__(self, status: FileXferStatus, detail: bytes = b"") -> None:
        super().__init__()
        self.status, self.detail = status, detail

    def _on_xfer_start(self, msg: FileXferStart) -> None:
        self._xfer_status(msg.id, self.status, self.detail)


@pytest.mark.parametrize(
    ("status", "detail", "words"),
    [
        (FileXferStatus.NOT_ENOUGH_SPACE, struct.pack("<Q", 1000),
         "the guest has no space left for notes.txt"),
        (FileXferStatus.SESSION_LOCKED, b"",
         "the guest session is locked: unlock it to receive notes.txt"),
        (FileXferStatus.VDAGENT_NOT_CONNECTED, b"",
         "nobody is logged in to the guest to receive notes.txt"),
        (FileXferStatus.ERROR, struct.pack("<BI", 0, 14),  # GLib IO, PERMISSION_DENIED
         "the guest could not save notes.txt: permission denied"),
        (FileXferStatus.CANCELLED, b"", "the guest cancelled the transfer of notes.txt"),
    ],
    ids=lambda v: v.name if isinstance(v, FileXferStatus) else "",
)
def test_the_guests_refusal_in_words(
    tmp_path: Path, status: FileXferStatus, detail: bytes, words: str
) -> None:
    notes = write(tmp_path / "notes.txt", b"n" * 100)

    async def scenario() -> None:
        async with GuestServer(tmp_path / "agent.sock", RefusingGuest(status, detail)), \
                Vm(tmp_path / "agent.sock") as vm:
            with pytest.raises(FileSendError) as err:
                await vm.send_files([notes])
            assert str(err.value) == words
            assert vm.session.transfer(1) is None

    run(scenario)


class RecordingGuest(SimulatedGuest):
    """Remembers the transfer statuses the host sends."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[FileXferStatus] = []

    def _handle(self, raw: RawMessage) -> None:
        if raw.type == MessageType.FILE_XFER_STATUS:
            self.statuses.append(FileXferStatus(struct.unpack_from("<II", raw.payload)[1]))
        super()._handle(raw)


class SilentGuest(RecordingGuest):
    """Never answers a START."""

    def _on_xfer_start(self, msg: FileXferStart) -> None:
        pass


def test_a_guest_that_does_not_answer_the_offer(tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.txt", b"n")

    async def scenario() -> None:
        guest = SilentGuest()
        async with GuestServer(tmp_path / "agent.sock", guest) as server, \
                Vm(tmp_path / "agent.sock") as vm:
            vm.file_answer_timeout = 0.2
            with pytest.raises(FileSendError,
                               match="^the guest did not answer the offer of notes.txt"):
                await vm.send_files([notes])
            assert vm.session.transfer(1) is None  # given up ...
            server.flush()
            await until(lambda: bool(guest.statuses))  # ... and cancelled in the guest
            assert guest.statuses == [FileXferStatus.CANCELLED]

    run(scenario)


# ----- interrupted ---------------------------------------------------------------------------


def test_cancelling_the_task_cancels_the_transfer_in_the_guest(tmp_path: Path) -> None:
    big = write(tmp_path / "big.bin", bytes(32 * MIB))

    async def scenario() -> None:
        guest = RecordingGuest()
        async with GuestServer(tmp_path / "agent.sock", guest) as server, \
                Vm(tmp_path / "agent.sock") as vm:
            started = asyncio.Event()

            def progress(report: FileProgress) -> None:
                if report.sent:
                    started.set()

            task = asyncio.create_task(vm.send_files([big], progress))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert vm.session.transfer(1) is None
            server.flush()
            await until(lambda: bool(guest.statuses))
            assert guest.statuses == [FileXferStatus.CANCELLED]
            assert guest.files == {} and not guest._incoming

    run(scenario)


def test_a_connection_lost_mid_transfer_fails_it_in_words(tmp_path: Path) -> None:
    big = write(tmp_path / "big.bin", bytes(32 * MIB))

    async def scenario() -> None:
        async with GuestServer(tmp_path / "agent.sock"), Vm(tmp_path / "agent.sock") as vm:
            cut: list[asyncio.Task[None]] = []

            def progress(report: FileProgress) -> None:
                if report.sent and not cut:
                    cut.append(asyncio.create_task(vm.reconnect()))

            with pytest.raises(FileSendError) as err:
                await vm.send_files([big], progress)
            assert str(err.value) == "the guest agent disconnected while big.bin was being sent"
            await cut[0]

    run(scenario)


def test_a_guest_that_stops_reading_holds_the_sender_back(tmp_path: Path) -> None:
    """The guest accepts the file and then reads nothing: the sender waits at the
    high-water mark (the file is not read into memory), and can still be cancelled."""
    big = write(tmp_path / "big.bin", bytes(64 * MIB))
    caps = agent_bytes(AnnounceCapabilities(True, LINUX_AGENT_CAPS.to_words()))
    ready = agent_bytes(FileXferStatusMessage(1, FileXferStatus.CAN_SEND_DATA))

    async def scenario() -> None:
        accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(caps)
            accepted.put_nowait(writer)

        server = await asyncio.start_unix_server(serve, path=str(tmp_path / "agent.sock"))
        try:
            async with Vm(tmp_path / "agent.sock") as vm:
                writer = await accepted.get()
                reports: list[FileProgress] = []
                task = asyncio.create_task(vm.send_files([big], reports.append))
                await until(lambda: vm.session.transfer(1) is not None)
                writer.write(ready)  # the guest takes the offer, and never reads again
                await until(lambda: bool(reports) and not vm.writable)
                await asyncio.sleep(0.3)  # time for anything that would wrongly happen
                assert not task.done()
                assert vm.session.bytes_to_send <= HIGH_WATER + READ_BLOCK + MIB
                transfer = vm.session.transfer(1)
                assert transfer is not None and transfer.sent < 16 * MIB
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert vm.session.transfer(1) is None
                writer.transport.abort()
        finally:
            server.close()
            await server.wait_closed()

    run(scenario)
