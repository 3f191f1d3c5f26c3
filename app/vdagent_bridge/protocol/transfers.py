"""The host → guest file transfers of one conversation: ids, states, and what each step sends
or reports.

Theory of operation
-------------------
The flow is the agent's (:mod:`.filexfer`, which also builds the START metadata and puts the
agent's statuses in words): START, then the agent's CAN_SEND_DATA, then DATA pieces up to the
announced size, then the agent's verdict. A transfer is WAITING from START until the agent
accepts it, then SENDING until the agent's verdict, the host's cancel, or the end of the
conversation (a fresh connection or a restarted agent) removes it. Each removal is reported
as a :class:`~.events.FileTransferFinished` with its status and the reason in words.

Ids run from 1 and wrap at the u32 limit without using 0. At most
``GUEST_MAX_ACTIVE_TRANSFERS`` (vdagentd's own limit) are active at once. Data is sent in
FILE_XFER_DATA pieces of ``FILE_XFER_PIECE_SIZE``, the size spice-gtk reads files in; data no
larger than one piece goes out as the caller's bytes, uncopied.
"""

from __future__ import annotations

from collections import deque

from .constants import (
    FILE_XFER_PIECE_SIZE,
    GUEST_MAX_ACTIVE_TRANSFERS,
    Capability,
    FileXferStatus,
)
from .errors import StateError
from .events import Event, FailureReason, FileTransferFinished, FileTransferReady, MessageIgnored
from .filexfer import Transfer, TransferState, check_file_name, describe_status, start_metadata
from .messages import FileXferData, FileXferStart, FileXferStatusMessage
from .negotiation import Negotiation
from .outbound import Outbound

_U32_MAX = 0xFFFFFFFF


class Transfers:
    """The active transfers, by id. See the module docstring."""

    __slots__ = ("_caps", "_events", "_out", "active", "next_id")

    def __init__(self, out: Outbound, caps: Negotiation, events: deque[Event]) -> None:
        self._out = out
        self._caps = caps
        self._events = events
        #: Transfers started and not finished, by id.
        self.active: dict[int, Transfer] = {}
        #: The id the next transfer gets.
        self.next_id = 1

    def start(
        self, name: str, size: int, *, number: int | None = None, total: int | None = None
    ) -> int:
        """Offer a file to the guest; returns the transfer id.

        :raises StateError: the guest disabled file transfer, or too many are active.
        :raises LocalProtocolError: ``name`` is not a plain file name.
        """
        check_file_name(name)
        if self._caps.guest_has(Capability.FILE_XFER_DISABLED):
            raise StateError("file transfer is disabled in the guest", state="disabled",
                             required="enabled")
        if len(self.active) >= GUEST_MAX_ACTIVE_TRANSFERS:
            raise StateError("too many transfers in progress", state=len(self.active),
                             required=GUEST_MAX_ACTIVE_TRANSFERS)
        transfer_id = self.next_id
        self.next_id = (transfer_id % _U32_MAX) + 1
        metadata = start_metadata(name, size, number=number, total=total)
        self._out.send(FileXferStart(transfer_id, metadata), self._caps.fmt)
        self.active[transfer_id] = Transfer(transfer_id, name, size)
        return transfer_id

    def send_data(self, transfer_id: int, data: bytes) -> None:
        """Send the next bytes of an accepted transfer, in FILE_XFER_DATA pieces.

        :raises StateError: the transfer is unknown, not accepted yet, or would exceed its size.
        """
        transfer = self.active.get(transfer_id)
        if transfer is None or transfer.state is not TransferState.SENDING:
            raise StateError(
                f"transfer {transfer_id} is not accepting data",
                state=None if transfer is None else transfer.state,
                required=TransferState.SENDING,
            )
        if transfer.sent + len(data) > transfer.size:
            raise StateError(
                f"transfer {transfer_id} would exceed its size {transfer.size}",
                state=transfer.sent, required=transfer.size,
            )
        out, fmt = self._out, self._caps.fmt
        if len(data) <= FILE_XFER_PIECE_SIZE:
            out.send(FileXferData(transfer_id, data), fmt)  # one piece: no copy
        else:
            view = memoryview(data)
            for start in range(0, len(data), FILE_XFER_PIECE_SIZE):
                piece = bytes(view[start : start + FILE_XFER_PIECE_SIZE])
                out.send(FileXferData(transfer_id, piece), fmt)
        transfer.sent += len(data)

    def cancel(self, transfer_id: int) -> None:
        """Cancel a transfer (nothing if it is not active); the guest is told, and
        :class:`FileTransferFinished` with CANCELLED is reported."""
        transfer = self.active.pop(transfer_id, None)
        if transfer is None:
            return
        self._out.send(FileXferStatusMessage(transfer_id, FileXferStatus.CANCELLED),
                       self._caps.fmt)
        self._events.append(
            FileTransferFinished(transfer_id, FileXferStatus.CANCELLED, "cancelled by the host")
        )

    def on_status(self, msg: FileXferStatusMessage) -> None:
        """The agent accepted a transfer, or ended it."""
        transfer = self.active.get(msg.id)
        if transfer is None:
            self._events.append(MessageIgnored(msg, "status of an unknown transfer"))
            return
        if msg.result == FileXferStatus.CAN_SEND_DATA:
            if transfer.state is TransferState.SENDING:
                self._events.append(MessageIgnored(msg, "transfer already accepted"))
                return
            transfer.state = TransferState.SENDING
            if transfer.size == 0:
                # The agent completes a transfer only when DATA brings it to its size.
                self._out.send(FileXferData(transfer.id, b""), self._caps.fmt)
            self._events.append(FileTransferReady(transfer.id))
            return
        del self.active[msg.id]
        self._events.append(
            FileTransferFinished(msg.id, msg.result, describe_status(msg.result, msg.data))
        )

    def reset(self, reason: FailureReason) -> None:
        """The conversation ended: every active transfer finishes as CANCELLED."""
        for transfer in self.active.values():
            self._events.append(
                FileTransferFinished(transfer.id, FileXferStatus.CANCELLED, reason.value)
            )
        self.active.clear()
