"""The host side of a vdagent conversation, sans-IO.

Theory of operation
-------------------
A :class:`HostSession` is the conversation with one guest agent. It owns no socket and no
clock. The caller:

1. calls :meth:`start` when the guest port opens on a *fresh* connection (one after which the
   guest may have seen a disconnect): the session announces its caps with request=1 and zeroes
   its serials, as the agent does when it receives that announce. A connection that continues
   a conversation (a prepared migration switchover) does not call it: it restores a
   :meth:`snapshot` instead, and nothing is announced;
2. feeds every byte from the guest to :meth:`receive_data`, then calls :meth:`next_event` until
   it returns None. ``next_event`` raises :class:`RemoteProtocolError` for garbage; the bad unit
   is already skipped, so the caller logs it and calls ``next_event`` again;
3. calls the action methods (grab, request, send data, pointer, files); each queues bytes;
4. writes whatever :meth:`data_to_send` returns, or, to write only as fast as the peer reads,
   the buffers :meth:`pending_output` hands out, then :meth:`consume_output` with the count
   the socket took (nothing is joined: a large body goes out as slices of the caller's
   bytes behind their chunk headers);
5. arms a timer for :meth:`next_deadline` and calls :meth:`handle_timeout` when it fires.

Every method that can start a deadline takes ``now`` from the caller's monotonic clock.

Caps
~~~~
The wire format of the clipboard messages (selection prefix, grab serial) is the
intersection of our caps and the guest's (protocol.md §10.6); before the guest's caps arrive
nothing that depends on it is sent: host grabs are recorded and sent once the caps are known.
Every guest request=1 is answered with request=0. A request=1 that arrives after caps were
already exchanged means the guest agent restarted: we then re-announce with request=1 (which
zeroes the daemon's counters whatever survived of them), zero ours, forget what the guest owned
and re-grab what the host owns, the way QEMU ends up doing after its close/reopen cycle.

Clipboard
~~~~~~~~~
Ownership, serials and pending requests live in :class:`ClipboardBook` (see its module for
the serial rules). Requests in both directions carry deadlines; an expired request of ours
becomes :class:`ClipboardRequestFailed`, an expired guest request is answered with empty data
(so the pasting guest application does not hang) and reported as
:class:`GuestRequestExpired`. Text is converted to CRLF for guests that announce
GUEST_LINEEND_CRLF and back to LF on the way in. A guest RELEASE is applied at once when the
guest announced CLIPBOARD_NO_RELEASE_ON_REGRAB, and after ``release_delay`` otherwise, so a
release-then-grab from an older agent does not blank the host clipboard in between (spice-gtk
waits 500 ms for the same reason).
"""

from __future__ import annotations

import base64
import struct
from collections import deque
from typing import Any

from . import codec
from .caps import HOST_CAPS, Caps
from .clipboard import ClipboardBook, Owner, PendingRequest
from .codec import Limits, WireFormat
from .constants import (
    FILE_XFER_PIECE_SIZE,
    GUEST_MAX_ACTIVE_TRANSFERS,
    PROTOCOL_VERSION,
    SELECTION_PREFIX_SIZE,
    TEXT_TYPES,
    Capability,
    ClipboardType,
    FileXferStatus,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    Port,
    Selection,
)
from .deframer import Deframer, RawMessage
from .errors import LocalProtocolError, RemoteProtocolError, StateError
from .events import (
    CapabilitiesReceived,
    CapabilitiesTimedOut,
    ClipboardGrabbed,
    ClipboardGrabIgnored,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardRequestFailed,
    Event,
    FailureReason,
    FileTransferFinished,
    FileTransferReady,
    GuestRequestExpired,
    MessageIgnored,
    ReplyReceived,
)
from .filexfer import Transfer, TransferState, check_file_name, describe_status, start_metadata
from .messages import (
    AnnounceCapabilities,
    ClipboardData,
    ClipboardGrab,
    ClipboardRelease,
    ClipboardRequest,
    FileXferData,
    FileXferStart,
    FileXferStatusMessage,
    MaxClipboard,
    Message,
    MonitorConfig,
    MonitorsConfig,
    Reply,
)
from .negotiation import Effect, Input, Negotiation, Phase
from .outbound import Outbound
from .wire import CHUNK_HEADER, MESSAGE_HEADER, MOUSE_STATE

#: Version of the snapshot layout written by :meth:`HostSession.snapshot`.
SNAPSHOT_VERSION = 1

#: Message types a host may send to the guest (the rest flow guest → host only).
_HOST_TO_GUEST = frozenset(
    {
        MessageType.MOUSE_STATE,
        MessageType.MONITORS_CONFIG,
        MessageType.CLIPBOARD,
        MessageType.DISPLAY_CONFIG,
        MessageType.ANNOUNCE_CAPABILITIES,
        MessageType.CLIPBOARD_GRAB,
        MessageType.CLIPBOARD_REQUEST,
        MessageType.CLIPBOARD_RELEASE,
        MessageType.FILE_XFER_START,
        MessageType.FILE_XFER_STATUS,
        MessageType.FILE_XFER_DATA,
        MessageType.CLIENT_DISCONNECTED,
        MessageType.MAX_CLIPBOARD,
        MessageType.AUDIO_VOLUME_SYNC,
        MessageType.GRAPHICS_DEVICE_INFO,
    }
)

#: Selections the session handles. SECONDARY is refused by the Linux session agent and by no
#: host toolkit we bridge, so grabs of it are ignored.
_SELECTIONS = (Selection.CLIPBOARD, Selection.PRIMARY)

_MOUSE_HEADER_SIZE = MESSAGE_HEADER.size + MOUSE_STATE.size
#: Chunk header + message header + MOUSE_STATE body, packed at once (same layouts as wire's).
_MOUSE_FRAME = struct.Struct(
    "<" + CHUNK_HEADER.format[1:] + MESSAGE_HEADER.format[1:] + MOUSE_STATE.format[1:]
)


def lf_to_crlf(data: bytes) -> bytes:
    """Text for a CRLF guest: every line break becomes CRLF, existing CRLFs stay single."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_to_lf(data: bytes | bytearray) -> bytes | bytearray:
    """Text from a CRLF guest, with LF line breaks."""
    return data.replace(b"\r\n", b"\n")


class HostSession:
    """One conversation with a guest agent, as the host. See the module docstring."""

    def __init__(
        self,
        *,
        caps: Caps = HOST_CAPS,
        limits: Limits | None = None,
        request_timeout: float = 5.0,
        guest_request_timeout: float = 10.0,
        release_delay: float = 0.5,
        caps_timeout: float = 5.0,
    ) -> None:
        self._caps = Negotiation(caps)
        self.limits = limits or Limits()
        #: How long the guest has to answer one of our requests (QEMU's D-Bus clipboard: 5 s).
        self.request_timeout = request_timeout
        #: How long the host has to answer a guest request before we answer empty.
        self.guest_request_timeout = guest_request_timeout
        self.release_delay = release_delay
        #: How long the guest has to answer our caps announce (see CapabilitiesTimedOut).
        self.caps_timeout = caps_timeout
        self._deframer = Deframer(
            max_message_size=self.limits.max_message_size,
            ports=(Port.CLIENT,),
            data_offset=lambda msg_type: codec.data_offset(msg_type, self._caps.fmt),
        )
        self._out = Outbound()
        self._events: deque[Event] = deque()
        self._now = 0.0
        self._book = ClipboardBook()
        self._monitors: tuple[MonitorConfig, ...] | None = None
        self._transfers: dict[int, Transfer] = {}
        self._next_transfer_id = 1
        self._max_clipboard: int | None = None

    # ---------------------------------------------------------------- properties

    @property
    def host_caps(self) -> Caps:
        """What we announce (the constructor's ``caps``, or the snapshot's)."""
        return self._caps.host_caps

    @property
    def guest_caps(self) -> Caps | None:
        """What the guest announced last; None until it announced on this connection."""
        return self._caps.guest_caps

    @property
    def negotiated(self) -> Caps:
        """Caps both sides announced (empty until the guest announced)."""
        return self._caps.negotiated

    @property
    def wire_format(self) -> WireFormat:
        """The optional clipboard fields currently on the wire."""
        return self._caps.fmt

    def guest_has(self, cap: Capability) -> bool:
        """Whether the guest announced ``cap``."""
        return self._caps.guest_has(cap)

    @property
    def clipboard_ready(self) -> bool:
        """Whether clipboard messages can be exchanged (both sides have BY_DEMAND)."""
        return self._caps.clipboard_ready

    def owner(self, selection: Selection) -> Owner:
        return self._book.selections[selection].owner

    def serial(self, selection: Selection) -> int:
        """The serial the next GRAB on ``selection`` carries."""
        return self._book.selections[selection].serial

    @property
    def pending_requests(self) -> tuple[list[PendingRequest], list[PendingRequest]]:
        """(requests to the guest, requests from the guest), oldest first."""
        return list(self._book.to_guest), list(self._book.from_guest)

    @property
    def monitors(self) -> tuple[MonitorConfig, ...] | None:
        """The guest layout we last sent (used to clamp pointer coordinates)."""
        return self._monitors

    # ---------------------------------------------------------------- lifecycle

    def start(self, now: float) -> None:
        """Begin a fresh conversation: the guest (re)opened its port.

        Announces caps with request=1 and zeroes the serials (the agent zeroes its own on
        receiving it). Partial input and queued output of the old connection are dropped,
        requests in flight fail, and what the guest owned is forgotten (its session agent
        releases it on the announce). What the host owns is re-grabbed when the guest's caps
        arrive.
        """
        self._now = now
        self._deframer.reset()
        self._out.clear()
        self._follow(self._caps.step(Input.START, now=now, timeout=self.caps_timeout))

    def _follow(self, effect: Effect) -> None:
        """Carry out the session's part of a caps step (see :mod:`.negotiation`)."""
        if effect & Effect.RESET:
            self._reset_conversation(FailureReason.CONNECTION_RESET)
        if effect & (Effect.ANSWER | Effect.ANNOUNCE):
            words = self.host_caps.to_words()
            if effect & Effect.ANSWER:
                self._send(AnnounceCapabilities(False, words))
            if effect & Effect.ANNOUNCE:
                self._send(AnnounceCapabilities(True, words))
        if effect & Effect.GREET:
            if self.guest_has(Capability.MAX_CLIPBOARD):
                self._send(MaxClipboard(self.max_clipboard))
            if self.clipboard_ready:
                for sel in _SELECTIONS:
                    state = self._book.selections[sel]
                    if state.owner is Owner.HOST:
                        self._send_grab(sel)
        if effect & Effect.TIMED_OUT:
            self._events.append(CapabilitiesTimedOut(self.caps_timeout))

    def _reset_conversation(self, reason: FailureReason) -> None:
        self._book.reset_serials()
        for req in self._book.to_guest:
            self._events.append(ClipboardRequestFailed(req.selection, req.type, reason))
        self._book.to_guest.clear()
        self._book.from_guest.clear()
        for sel, state in self._book.selections.items():
            state.release_at = None
            if state.owner is Owner.GUEST:
                state.owner, state.types = Owner.NONE, ()
                self._events.append(ClipboardReleased(sel))
        for transfer in self._transfers.values():
            self._events.append(
                FileTransferFinished(transfer.id, FileXferStatus.CANCELLED, reason.value)
            )
        self._transfers.clear()

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes from the guest. Then call :meth:`next_event` until it returns None."""
        self._now = now
        self._deframer.feed(data)

    def receive_buffer(self, limit: int) -> memoryview | None:
        """Where the next bytes from the guest may be received directly (a large clipboard's
        own buffer: no copy and no join), or None: then read into bytes and
        :meth:`receive_data` them. At most ``limit`` bytes; do not keep the view.
        """
        return self._deframer.receive_buffer(limit)

    def received_into(self, count: int, now: float) -> None:
        """``count`` bytes were received into the last :meth:`receive_buffer` view. Then
        call :meth:`next_event` until it returns None.

        :raises LocalProtocolError: more than the view held, or no view was handed out.
        """
        self._now = now
        self._deframer.received_into(count)

    def next_event(self) -> Event | None:
        """The next event, or None when all input so far is consumed.

        :raises RemoteProtocolError: for a malformed chunk or message; it has been skipped,
            so call again to continue.
        """
        while True:
            if self._events:
                return self._events.popleft()
            item = self._deframer.pop()
            if item is None:
                return None
            if isinstance(item, RemoteProtocolError):
                raise item
            self._dispatch(item)

    def buffered(self) -> int:
        """Bytes held for partial input (bounded by the message size limit)."""
        return self._deframer.buffered()

    # ---------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        """All bytes queued for the guest, in order, joined; the queue is emptied."""
        return self._out.data_to_send()

    def pending_output(
        self, limit: int = 1 << 20, max_buffers: int = 1024
    ) -> list[bytes | memoryview]:
        """The first queued bytes as a list of buffers, without copying or dequeuing them.

        At least ``limit`` bytes (or all that is queued) unless ``max_buffers`` (>= 2) comes
        first; 1024 is Linux's IOV_MAX for ``sendmsg``. Write them, then call
        :meth:`consume_output` with how many bytes the socket took.
        """
        return self._out.pending_output(limit, max_buffers)

    def consume_output(self, count: int) -> None:
        """Drop the first ``count`` queued bytes: the writer sent them.

        :raises LocalProtocolError: more than is queued.
        """
        self._out.consume_output(count)

    @property
    def bytes_to_send(self) -> int:
        """How many bytes are queued (for back-pressure)."""
        return self._out.size

    def _send(self, msg: Message) -> None:
        self._out.send(msg, self._caps.fmt)

    def send(self, msg: Message) -> None:
        """Send any host → guest message as is (low level; prefer the action methods).

        :raises LocalProtocolError: for a guest → host only type or an unencodable message.
        """
        if getattr(msg, "TYPE", None) not in _HOST_TO_GUEST:
            raise LocalProtocolError(f"{type(msg).__name__} is not sent by a host")
        self._send(msg)

    # ---------------------------------------------------------------- time

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or None."""
        deadline = self._book.next_deadline()
        caps = self._caps.deadline
        if caps is not None:
            deadline = caps if deadline is None else min(deadline, caps)
        return deadline

    def handle_timeout(self, now: float) -> None:
        """Expire what is due at ``now``; new events may follow (call :meth:`next_event`)."""
        self._now = now
        if self._caps.due(now):
            self._follow(self._caps.step(Input.DEADLINE))
        book = self._book
        for req in [r for r in book.to_guest if r.deadline <= now]:
            book.to_guest.remove(req)
            self._events.append(
                ClipboardRequestFailed(req.selection, req.type, FailureReason.TIMEOUT)
            )
        for req in [r for r in book.from_guest if r.deadline <= now]:
            book.from_guest.remove(req)
            self._answer_empty(req.selection, req.type)
            self._events.append(GuestRequestExpired(req.selection, req.type))
        for sel, state in book.selections.items():
            if state.release_at is not None and state.release_at <= now:
                state.release_at = None
                if state.owner is Owner.GUEST:
                    state.owner, state.types = Owner.NONE, ()
                    self._events.append(ClipboardReleased(sel))

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, raw: RawMessage) -> None:
        msg = codec.decode(raw.type, raw.body, self._caps.fmt, self.limits)
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            self._events.append(MessageIgnored(msg, "not a message a guest sends to a host"))
            return
        handler(self, msg)

    def _on_caps(self, msg: AnnounceCapabilities) -> None:
        effect = self._caps.step(
            Input.CAPS_REQUEST if msg.request else Input.CAPS, caps=msg.caps
        )
        self._follow(effect)
        assert self._caps.guest_caps is not None
        self._events.append(
            CapabilitiesReceived(
                self._caps.guest_caps, self.negotiated, msg.request, bool(effect & Effect.RESET)
            )
        )

    @property
    def max_clipboard(self) -> int:
        """The MAX_CLIPBOARD value we announce: the largest data our message limit lets
        through, or less if :meth:`set_max_clipboard` asked for less."""
        overhead = SELECTION_PREFIX_SIZE + 4
        largest = min(self.limits.max_message_size - overhead, 0x7FFFFFFF)
        return largest if self._max_clipboard is None else min(largest, self._max_clipboard)

    def set_max_clipboard(self, limit: int | None) -> None:
        """Ask the guest not to send clipboard data over ``limit`` bytes (None: only our
        message limit). Its agent then answers a larger selection with empty data. Sent at
        once when the guest has the MAX_CLIPBOARD cap, and again whenever its caps arrive."""
        if limit is not None and limit < 0:
            raise LocalProtocolError(f"clipboard limit must not be negative: {limit}")
        self._max_clipboard = limit
        if self._caps.phase is Phase.EXCHANGED and self.guest_has(Capability.MAX_CLIPBOARD):
            self._send(MaxClipboard(self.max_clipboard))

    def _valid_selection(self, selection: Selection | int) -> bool:
        return selection in _SELECTIONS

    def _on_grab(self, msg: ClipboardGrab) -> None:
        sel = msg.selection
        if not self.clipboard_ready:
            self._events.append(MessageIgnored(msg, "clipboard not negotiated"))
            return
        if not self._valid_selection(sel):
            self._events.append(
                ClipboardGrabIgnored(sel, msg.serial, None, "unsupported selection")
            )
            return
        state = self._book.selections[Selection(sel)]
        if msg.serial is not None:
            expected = state.serial
            if not state.accept_guest_serial(msg.serial):
                self._events.append(
                    ClipboardGrabIgnored(
                        sel, msg.serial, expected, "lower serial: it crossed a host grab"
                    )
                )
                return
        state.owner, state.types, state.release_at = Owner.GUEST, msg.types, None
        # Requests the guest made of the host's data are moot: its agent stops waiting when
        # the ownership changes.
        self._book.from_guest = [r for r in self._book.from_guest if r.selection != sel]
        self._events.append(ClipboardGrabbed(sel, msg.types, msg.serial))

    def _on_release(self, msg: ClipboardRelease) -> None:
        sel = msg.selection
        if not self._valid_selection(sel):
            self._events.append(MessageIgnored(msg, "unsupported selection"))
            return
        state = self._book.selections[Selection(sel)]
        if state.owner is not Owner.GUEST:
            self._events.append(MessageIgnored(msg, "the guest does not own that selection"))
            return
        if self.guest_has(Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB) or self.release_delay <= 0:
            state.owner, state.types = Owner.NONE, ()
            self._events.append(ClipboardReleased(sel))
        else:
            state.release_at = self._now + self.release_delay

    def _on_request(self, msg: ClipboardRequest) -> None:
        sel, data_type = msg.selection, msg.type
        if not self.clipboard_ready:
            self._events.append(MessageIgnored(msg, "clipboard not negotiated"))
            return
        if not self._valid_selection(sel):
            if sel == Selection.SECONDARY:
                self._answer_empty(sel, data_type)
            self._events.append(MessageIgnored(msg, "unsupported selection"))
            return
        state = self._book.selections[Selection(sel)]
        if state.owner is not Owner.HOST or data_type not in state.types:
            self._answer_empty(sel, data_type)
            self._events.append(MessageIgnored(msg, "the host does not offer that data"))
            return
        if len(self._book.from_guest) >= self.limits.max_pending_requests:
            self._answer_empty(sel, data_type)
            self._events.append(MessageIgnored(msg, "too many pending guest requests"))
            return
        self._book.from_guest.append(
            PendingRequest(sel, data_type, self._now + self.guest_request_timeout)
        )
        self._events.append(ClipboardRequested(sel, data_type))

    def _on_clipboard(self, msg: ClipboardData) -> None:
        req = self._book.take_to_guest(msg.selection, msg.type)
        if req is None:
            self._events.append(MessageIgnored(msg, "clipboard data nobody asked for"))
            return
        if msg.type == ClipboardType.NONE:
            self._events.append(
                ClipboardRequestFailed(req.selection, req.type, FailureReason.NO_DATA)
            )
            return
        if not msg.data:
            self._events.append(
                ClipboardRequestFailed(req.selection, req.type, FailureReason.EMPTY)
            )
            return
        data = msg.data
        if msg.type in TEXT_TYPES and self.guest_has(Capability.GUEST_LINEEND_CRLF):
            data = crlf_to_lf(data)
        self._events.append(ClipboardReceived(msg.selection, msg.type, data))

    def _on_reply(self, msg: Reply) -> None:
        self._events.append(ReplyReceived(msg.type, msg.error))

    def _on_xfer_status(self, msg: FileXferStatusMessage) -> None:
        transfer = self._transfers.get(msg.id)
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
                self._send(FileXferData(transfer.id, b""))
            self._events.append(FileTransferReady(transfer.id))
            return
        del self._transfers[msg.id]
        self._events.append(
            FileTransferFinished(msg.id, msg.result, describe_status(msg.result, msg.data))
        )

    # ---------------------------------------------------------------- clipboard actions

    def _require_selection(self, selection: Selection | int) -> Selection:
        if selection not in _SELECTIONS:
            raise LocalProtocolError(f"selection {selection!r} is not bridged")
        return Selection(selection)

    def grab_clipboard(
        self, selection: Selection, types: tuple[ClipboardType | int, ...]
    ) -> None:
        """The host owns ``selection`` now and offers ``types``.

        Sent at once when the clipboard is negotiated, otherwise when the guest's caps arrive.
        Never preceded by a RELEASE: we announce CLIPBOARD_NO_RELEASE_ON_REGRAB.
        """
        sel = self._require_selection(selection)
        if not types:
            raise LocalProtocolError("a grab needs at least one type")
        state = self._book.selections[sel]
        state.owner, state.types, state.release_at = Owner.HOST, tuple(types), None
        # Our requests for the guest's old data will be answered NONE or not at all.
        for req in [r for r in self._book.to_guest if r.selection == sel]:
            self._book.to_guest.remove(req)
            self._events.append(
                ClipboardRequestFailed(req.selection, req.type, FailureReason.NOT_OWNER)
            )
        if self.clipboard_ready:
            self._send_grab(sel)

    def _send_grab(self, sel: Selection) -> None:
        if sel != Selection.CLIPBOARD and not self._caps.fmt.selection:
            return  # without CLIPBOARD_SELECTION only CLIPBOARD exists on the wire
        state = self._book.selections[sel]
        serial = state.take_host_serial() if self._caps.fmt.grab_serial else None
        self._send(ClipboardGrab(sel, state.types, serial))

    def release_clipboard(self, selection: Selection) -> None:
        """The host no longer owns ``selection``. Does nothing if it did not own it."""
        sel = self._require_selection(selection)
        state = self._book.selections[sel]
        if state.owner is not Owner.HOST:
            return
        state.owner, state.types = Owner.NONE, ()
        for req in [r for r in self._book.from_guest if r.selection == sel]:
            self._book.from_guest.remove(req)
            self._answer_empty(req.selection, req.type)
        if self.clipboard_ready and (sel == Selection.CLIPBOARD or self._caps.fmt.selection):
            self._send(ClipboardRelease(sel))

    def request_clipboard(
        self, selection: Selection, data_type: ClipboardType, now: float
    ) -> None:
        """Ask the guest for its data; the answer is a :class:`ClipboardReceived` or a
        :class:`ClipboardRequestFailed` event.

        :raises StateError: the guest does not own ``selection`` or does not offer the type.
        """
        sel = self._require_selection(selection)
        self._now = now
        state = self._book.selections[sel]
        if state.owner is not Owner.GUEST or data_type not in state.types:
            raise StateError(
                f"the guest does not offer {data_type!r} on {sel.name}",
                state=state.owner,
                required=Owner.GUEST,
            )
        if sel != Selection.CLIPBOARD and not self._caps.fmt.selection:
            raise StateError("selection not negotiated", state=self._caps.fmt, required="selection")
        self._book.to_guest.append(PendingRequest(sel, data_type, now + self.request_timeout))
        self._send(ClipboardRequest(sel, data_type))

    def send_clipboard_data(
        self, selection: Selection, data_type: ClipboardType, data: bytes
    ) -> bool:
        """Answer the guest's oldest request for (selection, type) with ``data``.

        Returns False (and sends nothing) when no such request is pending any more: it
        expired, or the guest grabbed the selection meanwhile.
        """
        req = self._book.take_from_guest(selection, data_type)
        if req is None:
            return False
        if data_type in TEXT_TYPES and self.guest_has(Capability.GUEST_LINEEND_CRLF):
            data = lf_to_crlf(data)
        self._send(ClipboardData(req.selection, data_type, data))
        return True

    def refuse_clipboard_request(self, selection: Selection, data_type: ClipboardType) -> bool:
        """Answer the guest's request with empty data (policy, size or conversion failure)."""
        req = self._book.take_from_guest(selection, data_type)
        if req is None:
            return False
        self._answer_empty(req.selection, req.type)
        return True

    def _answer_empty(self, selection: Selection | int, data_type: ClipboardType | int) -> None:
        # QEMU and spice-gtk answer what they cannot serve with empty data of the requested
        # type; the GTK session agent hands that to the pasting application as "nothing".
        if not self.clipboard_ready:
            return
        if selection != Selection.CLIPBOARD and not self._caps.fmt.selection:
            return
        if not 0 <= int(selection) <= 0xFF or not 0 <= int(data_type) <= 0xFFFFFFFF:
            return
        self._send(ClipboardData(selection, data_type, b""))

    # ---------------------------------------------------------------- pointer

    @property
    def mouse_ready(self) -> bool:
        """Whether the guest accepts MOUSE_STATE (it announced the cap)."""
        return self.guest_has(Capability.MOUSE_STATE)

    def send_mouse(
        self,
        x: int,
        y: int,
        buttons: MouseButton | int = 0,
        display_id: int = 0,
    ) -> bool:
        """Queue one MOUSE_STATE; False (nothing queued) before the guest has the cap.

        Every call queues one message: motion is coalesced before it gets here, by the
        pointer bridge, which knows what the user is doing and how backed up the output is.

        Coordinates are pixels of monitor ``display_id``, clamped to it when its geometry is
        known (the agent drops nothing for out-of-range values, but QEMU-style x == width
        lands one pixel off the screen).
        """
        if not self.mouse_ready:
            return False
        if not 0 <= display_id <= 0xFF:
            raise LocalProtocolError(f"display id {display_id} does not fit a u8")
        monitors = self._monitors
        if monitors is not None and display_id < len(monitors):
            mon = monitors[display_id]
            x = min(max(x, 0), max(mon.width - 1, 0))
            y = min(max(y, 0), max(mon.height - 1, 0))
        else:
            x = min(max(x, 0), 0xFFFFFFFF)
            y = min(max(y, 0), 0xFFFFFFFF)
        # The hot path of the pointer: one struct pack for the whole framed message (chunk
        # header, message header, body), no construct, no codec.
        self._out.push(
            _MOUSE_FRAME.pack(
                Port.CLIENT, _MOUSE_HEADER_SIZE, PROTOCOL_VERSION, MessageType.MOUSE_STATE, 0,
                MOUSE_STATE.size, x, y, int(buttons) & 0xFFFFFFFF, display_id,
            )
        )
        return True

    def send_wheel(
        self, up: bool, x: int, y: int, buttons: MouseButton | int = 0, display_id: int = 0
    ) -> bool:
        """One wheel step: the wheel bit pressed, then released (the agent emits REL_WHEEL
        on the 0 → 1 edge only, so each step needs both messages)."""
        wheel = MouseButton.WHEEL_UP if up else MouseButton.WHEEL_DOWN
        base = int(buttons) & ~int(MouseButton.WHEEL_UP | MouseButton.WHEEL_DOWN)
        return self.send_mouse(x, y, base | wheel, display_id) and self.send_mouse(
            x, y, base, display_id
        )

    def send_monitors_config(self, monitors: tuple[MonitorConfig, ...]) -> bool:
        """Ask the guest to use this layout; the agent answers with :class:`ReplyReceived`.

        Never carries PHYSICAL_SIZE (0.22.1 rejects it). False before the guest has the cap.
        """
        if not self.guest_has(Capability.MONITORS_CONFIG):
            return False
        if not 0 < len(monitors) <= self.limits.max_monitors:
            raise LocalProtocolError(
                f"{len(monitors)} monitors: need 1..{self.limits.max_monitors}"
            )
        sparse = self.guest_has(Capability.SPARSE_MONITORS_CONFIG)
        for mon in monitors:
            disabled = sparse and mon.width == mon.height == 0
            if (mon.width == 0 or mon.height == 0) and not disabled:
                raise LocalProtocolError(f"invalid monitor size {mon.width}x{mon.height}")
        self._send(MonitorsConfig(tuple(monitors), MonitorsConfigFlag.USE_POS))
        self._monitors = tuple(monitors)
        return True

    def set_monitors(self, monitors: tuple[MonitorConfig, ...] | None) -> None:
        """Record the guest layout without sending it (known from config), for clamping."""
        self._monitors = None if monitors is None else tuple(monitors)

    # ---------------------------------------------------------------- file transfer

    def start_file_transfer(
        self,
        name: str,
        size: int,
        *,
        number: int | None = None,
        total: int | None = None,
    ) -> int:
        """Offer a file to the guest; returns the transfer id.

        :raises StateError: the guest disabled file transfer, or too many are active.
        :raises LocalProtocolError: ``name`` is not a plain file name.
        """
        check_file_name(name)
        if self.guest_has(Capability.FILE_XFER_DISABLED):
            raise StateError("file transfer is disabled in the guest", state="disabled",
                             required="enabled")
        if len(self._transfers) >= GUEST_MAX_ACTIVE_TRANSFERS:
            raise StateError("too many transfers in progress", state=len(self._transfers),
                             required=GUEST_MAX_ACTIVE_TRANSFERS)
        transfer_id = self._next_transfer_id
        self._next_transfer_id = (transfer_id % 0xFFFFFFFF) + 1
        metadata = start_metadata(name, size, number=number, total=total)
        self._send(FileXferStart(transfer_id, metadata))
        self._transfers[transfer_id] = Transfer(transfer_id, name, size)
        return transfer_id

    def send_file_data(self, transfer_id: int, data: bytes) -> None:
        """Send the next bytes of an accepted transfer, in FILE_XFER_DATA pieces.

        :raises StateError: the transfer is unknown, not accepted yet, or would exceed its size.
        """
        transfer = self._transfers.get(transfer_id)
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
        if len(data) <= FILE_XFER_PIECE_SIZE:
            self._send(FileXferData(transfer_id, data))  # one piece: no copy
        else:
            view = memoryview(data)
            for start in range(0, len(data), FILE_XFER_PIECE_SIZE):
                piece = bytes(view[start : start + FILE_XFER_PIECE_SIZE])
                self._send(FileXferData(transfer_id, piece))
        transfer.sent += len(data)

    def cancel_file_transfer(self, transfer_id: int) -> None:
        """Cancel a transfer; reports :class:`FileTransferFinished` with CANCELLED."""
        transfer = self._transfers.pop(transfer_id, None)
        if transfer is None:
            return
        self._send(FileXferStatusMessage(transfer_id, FileXferStatus.CANCELLED))
        self._events.append(
            FileTransferFinished(transfer_id, FileXferStatus.CANCELLED, "cancelled by the host")
        )

    def transfer(self, transfer_id: int) -> Transfer | None:
        """The state of an active transfer."""
        return self._transfers.get(transfer_id)

    # ---------------------------------------------------------------- snapshot

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything needed to continue this conversation on another connection.

        JSON-ready: caps, serials, ownership and types, pending requests (deadlines relative
        to ``now``), transfers, the partial incoming chunk/message, and the queued outgoing
        bytes. Drain :meth:`next_event` first.

        :raises StateError: events or complete messages are still waiting to be drained.
        """
        if self._events or self._deframer.items:
            raise StateError("drain next_event() before taking a snapshot",
                             state="undrained", required="drained")
        return {
            "version": SNAPSHOT_VERSION,
            "host_caps": list(self.host_caps.to_words()),
            "guest_caps": None if self.guest_caps is None else list(self.guest_caps.words),
            "caps_exchanged": self._caps.phase is Phase.EXCHANGED,
            "clipboard": self._book.snapshot(now),
            "monitors": None
            if self._monitors is None
            else [[m.width, m.height, m.depth, m.x, m.y] for m in self._monitors],
            "transfers": [
                [t.id, t.name, t.size, t.sent, t.state.value] for t in self._transfers.values()
            ],
            "next_transfer_id": self._next_transfer_id,
            "max_clipboard": self._max_clipboard,
            "framing": self._deframer.snapshot(),
            "outgoing": base64.b64encode(self._out.queued_bytes()).decode("ascii"),
        }

    @classmethod
    def restore(cls, state: dict[str, Any], now: float, **kwargs: Any) -> HostSession:
        """A session continuing the conversation of :meth:`snapshot` (nothing is announced).

        ``kwargs`` are the constructor's settings (limits, timeouts); the host caps come from
        the snapshot, since the guest frames its messages by what was announced.

        :raises LocalProtocolError: the state is malformed, of another version, or breaks a
            limit.
        """
        try:
            if state.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported snapshot version {state.get('version')!r}")
            session = cls(caps=Caps(tuple(int(w) for w in state["host_caps"])), **kwargs)
            host = session.host_caps.words
            if len(host) > session.limits.max_caps_words or not all(
                0 <= w <= 0xFFFFFFFF for w in host
            ):  # they are announced on every fresh connection: they must encode
                raise ValueError("host caps out of range")
            guest = state["guest_caps"]
            guest_caps = None
            if guest is not None:
                if len(guest) > session.limits.max_caps_words:
                    raise ValueError("too many caps words")
                guest_caps = Caps(tuple(int(w) & 0xFFFFFFFF for w in guest))
            session._caps.restore(guest_caps, bool(state["caps_exchanged"]))
            session._book = ClipboardBook.restore(state["clipboard"], now)
            monitors = state["monitors"]
            session._monitors = (
                None
                if monitors is None
                else tuple(MonitorConfig(*(int(v) for v in m)) for m in monitors)
            )
            for tid, name, size, sent, tstate in state["transfers"]:
                session._transfers[int(tid)] = Transfer(
                    int(tid), str(name), int(size), int(sent), TransferState(tstate)
                )
            session._next_transfer_id = int(state["next_transfer_id"])
            limit = state.get("max_clipboard")
            session._max_clipboard = None if limit is None else max(int(limit), 0)
            outgoing = base64.b64decode(state["outgoing"], validate=True)
            if outgoing:
                session._out.push(outgoing)
            session._deframer.restore(state["framing"])
        except LocalProtocolError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise LocalProtocolError(f"invalid session snapshot: {err}") from err
        session._now = now
        return session


_HANDLERS: dict[type, Any] = {
    AnnounceCapabilities: HostSession._on_caps,
    ClipboardGrab: HostSession._on_grab,
    ClipboardRelease: HostSession._on_release,
    ClipboardRequest: HostSession._on_request,
    ClipboardData: HostSession._on_clipboard,
    Reply: HostSession._on_reply,
    FileXferStatusMessage: HostSession._on_xfer_status,
}
