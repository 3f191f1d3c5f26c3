"""The narrow command API of a VM: what the bridges, the file sender and the app may ask.

Why one API: the engine (:class:`~vdagent_bridge.protocol.HostSession`) only queues bytes;
something must then write them on whichever connection the VM is written through now (during
a migration's switchover that is not the one being read). Callers outside the runtime used to
reach into the session and remember to flush; every command here does both, so nothing
outside ``runtime/`` touches a session or a connection.

:class:`AgentCommands` holds the commands over three things a subclass provides: the
session (:attr:`session`), the writing (:meth:`flush`) and the clock (:meth:`now`).
:class:`~vdagent_bridge.runtime.VmRuntime` is the real one; tests make small ones over an
in-memory guest.
"""

from __future__ import annotations

from ..protocol import (
    Capability,
    ClipboardType,
    HostSession,
    MonitorConfig,
    Selection,
)
from ..protocol.constants import FILE_XFER_PIECE_SIZE
from .pointer import PointerSender


class AgentCommands:
    """Commands to one guest agent, each written at once; see the module docstring.

    A subclass sets :attr:`session` and implements :meth:`flush`, :meth:`now` and
    :attr:`connected`, then calls ``super().__init__()``.
    """

    session: HostSession

    def __init__(self, *, display_id: int = 0) -> None:
        #: The VM's pointer: motion coalesced, buttons in order (runtime/pointer.py).
        self.pointer = PointerSender(
            lambda: self.session, self._pointer_ready, self.unread_output, self.flush,
            display_id=display_id,
        )

    # ---------------------------------------------------------------- provided by subclasses

    def flush(self) -> None:
        """Write what the session queued."""
        raise NotImplementedError

    def now(self) -> float:
        """The session's clock (for request deadlines)."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        """Whether a connection to the agent port is up."""
        raise NotImplementedError

    def unread_output(self) -> int:
        """Bytes of our output the guest has not read yet (queued, or in the socket)."""
        return self.session.bytes_to_send

    # ---------------------------------------------------------------- what the guest can do

    @property
    def agent_ready(self) -> bool:
        """Connected, and the guest agent announced its caps."""
        return self.connected and self.session.guest_caps is not None

    @property
    def clipboard_ready(self) -> bool:
        return self.session.clipboard_ready

    @property
    def mouse_ready(self) -> bool:
        return self.session.mouse_ready

    def guest_has(self, cap: Capability) -> bool:
        return self.session.guest_has(cap)

    @property
    def max_clipboard(self) -> int:
        """The largest clipboard the guest takes from us (-1: no limit known)."""
        return self.session.max_clipboard

    @property
    def monitors(self) -> tuple[MonitorConfig, ...] | None:
        """The display geometry last sent to the guest (None: none yet)."""
        return self.session.monitors

    def _pointer_ready(self) -> bool:
        return self.connected and self.session.mouse_ready

    # ---------------------------------------------------------------- clipboard

    def grab(self, selection: Selection, types: tuple[ClipboardType | int, ...]) -> None:
        """The host owns ``selection`` with data of ``types`` (sent once the caps are known)."""
        self.session.grab_clipboard(selection, types)
        self.flush()

    def release(self, selection: Selection) -> None:
        """The host no longer owns ``selection``."""
        self.session.release_clipboard(selection)
        self.flush()

    def request(self, selection: Selection, data_type: ClipboardType) -> None:
        """Ask the guest for its ``selection`` as ``data_type``; the answer is an event.

        :raises StateError: the guest does not own it or does not offer the type.
        """
        self.session.request_clipboard(selection, data_type, self.now())
        self.flush()

    def answer(self, selection: Selection, data_type: ClipboardType, data: bytes) -> None:
        """Answer the guest's request for the host's ``selection``."""
        self.session.send_clipboard_data(selection, data_type, data)
        self.flush()

    def refuse(self, selection: Selection | int, data_type: ClipboardType | int) -> None:
        """Answer the guest's request with nothing (so the pasting application goes on)."""
        self.session.refuse_clipboard_request(selection, data_type)  # type: ignore[arg-type]
        self.flush()

    def set_max_clipboard(self, limit: int | None) -> None:
        """Tell the guest the largest clipboard the host takes (None: no limit)."""
        self.session.set_max_clipboard(limit)
        self.flush()

    # ---------------------------------------------------------------- display

    def send_monitors(self, monitors: tuple[MonitorConfig, ...]) -> bool:
        """Ask the guest for this display geometry (MONITORS_CONFIG); False when its agent
        has not announced it."""
        if not self.session.send_monitors_config(monitors):
            return False
        self.flush()
        return True

    # ---------------------------------------------------------------- files

    def offer_file(self, name: str, size: int, *, number: int = 1, total: int = 1) -> int:
        """FILE_XFER_START for a file; the transfer id (the guest answers with an event).

        :raises StateError: transfer disabled, or too many in progress.
        :raises LocalProtocolError: a name the guest cannot be given.
        """
        transfer_id = self.session.start_file_transfer(name, size, number=number, total=total)
        self.flush()
        return transfer_id

    def send_file_block(self, transfer_id: int, block: bytes) -> None:
        """Queue ``block`` of the file as FILE_XFER_DATA pieces, and write.

        :raises StateError: the transfer ended (its event says why).
        """
        view = memoryview(block)
        for pos in range(0, len(block), FILE_XFER_PIECE_SIZE):
            self.session.send_file_data(transfer_id, bytes(view[pos:pos + FILE_XFER_PIECE_SIZE]))
        self.flush()

    def cancel_file(self, transfer_id: int) -> None:
        """Cancel the transfer in the guest (it deletes the part), if still in progress."""
        if self.session.transfer(transfer_id) is None:
            return
        self.session.cancel_file_transfer(transfer_id)
        try:
            self.flush()
        except RuntimeError:
            pass  # no event loop any more (shutting down): the connection is gone anyway
