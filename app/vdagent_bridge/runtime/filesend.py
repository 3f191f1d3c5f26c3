"""Sending files to the guest through a VM runtime: checks, back-pressure, verdicts in words.

Theory of operation
-------------------
The engine knows the transfer protocol (``HostSession.start_file_transfer``,
``send_file_data``, ``cancel_file_transfer`` and the :class:`FileTransferReady` /
:class:`FileTransferFinished` events); this module drives it for whole files, one after
another:

1. every path is checked before anything is sent (exists, a regular file, readable), so a
   batch with a typo sends nothing;
2. per file: FILE_XFER_START (with the file's number and the batch total, so the agent can
   tell the user "file 2 of 3"), then wait for the guest's verdict on it
   (:attr:`VmRuntime.file_answer_timeout`, 30 s by default);
3. the data is read in blocks off the event loop's thread (a slow disk or network file
   system must not stall the UI), queued as 64 KiB FILE_XFER_DATA messages only while the
   runtime is under its high-water mark (:meth:`VmRuntime.wait_writable`), so a file of any
   size costs about a megabyte of memory, and a guest that reads slowly slows the sender
   rather than filling the memory;
4. then wait for the guest's SUCCESS or error (the agent answers once it wrote the last byte).

The first failure ends the batch with :class:`FileSendError`, whose message is one sentence
for the user. Cancelling the task cancels the transfer in the guest (FILE_XFER_STATUS
CANCELLED: the agent deletes the partial file).

Events for our transfer ids are routed here by the runtime (:class:`FileTransfers`) and
still passed on to its ``on_event``. If the connection ends mid-transfer the transfer fails
("the guest agent disconnected"): the next connection is fresh, and a fresh announce makes
the agent drop its transfers. Across a live migration that the runtime follows with QMP the
transfer *continues*: the guest never sees the host go, our output is held during the
switchover (the sender waits at the high-water mark meanwhile) and resumes on the
destination, byte for byte, and the verdict comes on whichever connection carries it. (Not
exercised by a test: the QEMU test guest's agent answers every offer with DISABLED.)
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..protocol import (
    Event,
    FileTransferFinished,
    FileTransferReady,
    FileXferStatus,
    LocalProtocolError,
    StateError,
)

#: How long the guest has to answer a FILE_XFER_START, and to give its verdict after the
#: last byte was sent.
ANSWER_TIMEOUT = 30.0
#: Bytes read from the file per read (off the loop's thread); queued as 64 KiB messages.
READ_BLOCK = 1024 * 1024
#: Least time between two progress reports (the final one always comes).
PROGRESS_INTERVAL = 0.1


class FileSendError(Exception):
    """A file could not be sent. ``str(err)`` is one sentence in words for the user, e.g.
    "the guest has no space left for notes.txt", "file transfer is disabled in the guest",
    "the guest agent is not connected", "cannot read /x/y: Permission denied"."""


@dataclass(frozen=True, slots=True)
class FileProgress:
    """How far one file of a batch is. ``number`` is the 1-based index of the file within
    the batch of ``total``; ``sent`` of ``size`` bytes have been queued for the guest (the
    report with ``sent == size`` comes once the guest saved the file)."""

    name: str
    sent: int
    size: int
    number: int
    total: int


class FileSink(Protocol):
    """What sending files needs of a VM (:class:`~vdagent_bridge.runtime.VmRuntime` is one):
    its command API for transfers, its output's high-water mark, and the routing of the
    guest's answers."""

    file_transfers: FileTransfers
    file_answer_timeout: float

    @property
    def agent_ready(self) -> bool:
        """Connected, and the guest agent announced its caps."""

    @property
    def writable(self) -> bool: ...

    async def wait_writable(self) -> None: ...

    def offer_file(self, name: str, size: int, *, number: int, total: int) -> int:
        """FILE_XFER_START; the transfer id. Raises StateError / LocalProtocolError."""

    def send_file_block(self, transfer_id: int, block: bytes) -> None:
        """Queue ``block`` as FILE_XFER_DATA pieces. Raises StateError once it ended."""

    def cancel_file(self, transfer_id: int) -> None:
        """Cancel the transfer in the guest, if it is still in progress."""


@dataclass(slots=True)
class _Waiter:
    """The guest's answers about one transfer, as the runtime hears them."""

    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    #: The guest's verdict, or the runtime's reason for losing the connection.
    finished: asyncio.Future[FileTransferFinished | str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class FileTransfers:
    """Routes a runtime's transfer events to the coroutines sending those transfers."""

    def __init__(self) -> None:
        self._waiters: dict[int, _Waiter] = {}

    def open(self, transfer_id: int) -> _Waiter:
        waiter = self._waiters[transfer_id] = _Waiter()
        return waiter

    def close(self, transfer_id: int) -> None:
        self._waiters.pop(transfer_id, None)

    def handle(self, event: Event) -> None:
        """Give a FileTransferReady / FileTransferFinished to whoever waits for it."""
        if isinstance(event, FileTransferReady):
            waiter = self._waiters.get(event.id)
            if waiter is not None and not waiter.ready.done():
                waiter.ready.set_result(None)
        elif isinstance(event, FileTransferFinished):
            waiter = self._waiters.get(event.id)
            if waiter is not None and not waiter.finished.done():
                waiter.finished.set_result(event)

    def connection_lost(self, reason: str) -> None:
        """The connection ended: every transfer in progress has failed."""
        for waiter in self._waiters.values():
            if not waiter.finished.done():
                waiter.finished.set_result(reason)


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    name: str
    size: int


def check_file(path: Path) -> _File:
    """What the guest will be told about ``path``.

    :raises FileSendError: it does not exist, is not a regular file, or cannot be read.
    """
    try:
        info = path.stat()
    except OSError as err:
        raise FileSendError(f"cannot read {path}: {err.strerror or err}") from err
    if stat.S_ISDIR(info.st_mode):
        raise FileSendError(f"{path} is a directory: send the files in it instead")
    if not stat.S_ISREG(info.st_mode):
        raise FileSendError(f"{path} is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise FileSendError(f"cannot read {path}: {err.strerror or err}") from err
    return _File(path, path.name, info.st_size)


def describe_failure(name: str, verdict: FileTransferFinished | str) -> str:
    """The guest's verdict (or the lost connection) as a sentence about file ``name``."""
    if isinstance(verdict, str):
        return f"{verdict} while {name} was being sent"
    detail = verdict.detail
    status = verdict.status
    if status == FileXferStatus.NOT_ENOUGH_SPACE:
        return f"the guest has no space left for {name}"
    if status == FileXferStatus.DISABLED:
        return "file transfer is disabled in the guest"
    if status == FileXferStatus.SESSION_LOCKED:
        return f"the guest session is locked: unlock it to receive {name}"
    if status == FileXferStatus.VDAGENT_NOT_CONNECTED:
        return f"nobody is logged in to the guest to receive {name}"
    if status == FileXferStatus.CANCELLED:
        if detail and detail != "the transfer was cancelled":
            return f"the transfer of {name} stopped: {detail}"
        return f"the guest cancelled the transfer of {name}"
    if status == FileXferStatus.ERROR:
        _, sep, cause = detail.partition(": ")
        return f"the guest could not save {name}" + (f": {cause}" if sep else "")
    return f"the guest refused {name}: {detail}"


async def send_files(
    runtime: FileSink,
    paths: Sequence[Path],
    progress: Callable[[FileProgress], None] | None = None,
) -> None:
    """See :meth:`VmRuntime.send_files`."""
    files = [check_file(Path(path)) for path in paths]
    for number, item in enumerate(files, 1):
        await _send_file(runtime, item, number, len(files), progress)


def _require_connected(runtime: FileSink) -> None:
    if not runtime.agent_ready:
        raise FileSendError("the guest agent is not connected")


async def _first(
    waiter: _Waiter, other: asyncio.Future[Any] | None, timeout: float | None
) -> None:
    """Wait until ``waiter.finished`` or ``other`` is done, or ``timeout`` passes."""
    aws: set[asyncio.Future[Any]] = {waiter.finished}
    if other is not None:
        aws.add(other)
    await asyncio.wait(aws, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)


async def _send_file(
    runtime: FileSink,
    item: _File,
    number: int,
    total: int,
    progress: Callable[[FileProgress], None] | None,
) -> None:
    _require_connected(runtime)
    name = item.name
    try:
        transfer_id = runtime.offer_file(name, item.size, number=number, total=total)
    except StateError as err:
        raise FileSendError(
            "file transfer is disabled in the guest" if err.state == "disabled"
            else f"the guest has too many transfers in progress to take {name}"
        ) from err
    except (LocalProtocolError, UnicodeError) as err:
        raise FileSendError(f"the name of {item.path} cannot be given to the guest") from err
    waiter = runtime.file_transfers.open(transfer_id)
    loop = asyncio.get_running_loop()
    done = False
    try:
        await _first(waiter, waiter.ready, runtime.file_answer_timeout)
        if waiter.finished.done():
            raise FileSendError(describe_failure(name, waiter.finished.result()))
        if not waiter.ready.done():
            raise FileSendError(
                f"the guest did not answer the offer of {name} "
                f"in {runtime.file_answer_timeout:.0f} s"
            )
        sent = 0
        last_report = loop.time()
        if progress is not None:
            progress(FileProgress(name, 0, item.size, number, total))
        with item.path.open("rb") as source:
            while sent < item.size:
                if not runtime.writable:
                    writable = asyncio.ensure_future(runtime.wait_writable())
                    try:
                        await _first(waiter, writable, None)
                    finally:
                        writable.cancel()
                if waiter.finished.done():
                    break
                block = await _read(source, item, min(READ_BLOCK, item.size - sent))
                if waiter.finished.done():
                    break  # it ended while we read
                try:
                    runtime.send_file_block(transfer_id, block)
                except StateError:
                    # The transfer ended in the session (the guest's error, a reset) and
                    # its event is on the way: its verdict is the reason.
                    await _first(waiter, None, runtime.file_answer_timeout)
                    break
                sent += len(block)
                if progress is not None and loop.time() - last_report >= PROGRESS_INTERVAL:
                    last_report = loop.time()
                    progress(FileProgress(name, sent, item.size, number, total))
        await _first(waiter, None, runtime.file_answer_timeout)
        if not waiter.finished.done():
            raise FileSendError(
                f"the guest did not confirm {name} in {runtime.file_answer_timeout:.0f} s"
            )
        verdict = waiter.finished.result()
        done = True
        if isinstance(verdict, str) or not verdict.ok:
            raise FileSendError(describe_failure(name, verdict))
        if progress is not None:
            progress(FileProgress(name, item.size, item.size, number, total))
    finally:
        runtime.file_transfers.close(transfer_id)
        if not done:
            # Cancelled, timed out, failed reading: tell the guest (it deletes the part).
            runtime.cancel_file(transfer_id)


async def _read(source: BinaryIO, item: _File, count: int) -> bytes:
    """The next ``count`` bytes of the file, read off the loop's thread."""
    try:
        block = await asyncio.to_thread(source.read, count)
    except OSError as err:
        raise FileSendError(f"cannot read {item.path}: {err.strerror or err}") from err
    if len(block) != count:
        raise FileSendError(f"{item.path} got shorter while it was being sent")
    return block


__all__ = [
    "ANSWER_TIMEOUT",
    "FileProgress",
    "FileSendError",
    "FileSink",
    "FileTransfers",
    "check_file",
    "describe_failure",
    "send_files",
]
