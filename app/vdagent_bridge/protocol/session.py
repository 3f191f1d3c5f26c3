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

The parts
---------
HostSession is the one facade; the conversation lives in parts, one module each, and each
module's docstring gives the rules it keeps:

- :mod:`.deframer` turns the guest's bytes into messages (:mod:`.payload` keeps their bytes
  without copies), and :mod:`.codec` decodes them in the wire format in force;
- :mod:`.negotiation` is the caps exchange: phases and a table of steps. The effects of a step
  on the other parts are carried out here, in ``_follow``;
- :mod:`.clipboard_exchange` handles grabs, releases, requests and data both ways, on the
  book of :mod:`.clipboard`;
- :mod:`.mouse` sends MOUSE_STATE on its fast path, and MONITORS_CONFIG;
- :mod:`.transfers` runs the host → guest file transfers;
- :mod:`.outbound` is the output queue every part sends through;
- :mod:`.snapshot` writes the whole conversation as a document, and reads it back.

Every part reports into one event queue, in the order things happen; :meth:`next_event`
empties it before it decodes the next message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from . import codec
from . import snapshot as _snapshot  # the method of that name shadows the module
from .caps import HOST_CAPS, Caps
from .clipboard import Owner, PendingRequest
from .clipboard_exchange import ClipboardExchange, bridged
from .codec import Limits, WireFormat
from .constants import (
    Capability,
    ClipboardType,
    MessageType,
    MouseButton,
    Port,
    Selection,
)
from .deframer import Deframer, RawMessage
from .errors import LocalProtocolError, RemoteProtocolError, StateError
from .events import (
    CapabilitiesReceived,
    CapabilitiesTimedOut,
    Event,
    FailureReason,
    MessageIgnored,
    ReplyReceived,
)
from .filexfer import Transfer
from .messages import (
    AnnounceCapabilities,
    ClipboardData,
    ClipboardGrab,
    ClipboardRelease,
    ClipboardRequest,
    FileXferStatusMessage,
    Message,
    MonitorConfig,
    Reply,
)
from .mouse import Pointer
from .negotiation import Effect, Input, Negotiation
from .outbound import Outbound
from .transfers import Transfers

#: Message types a host may send to the guest: all but REPLY, which only the agent sends (it
#: acknowledges our MONITORS_CONFIG).
_HOST_TO_GUEST = frozenset(MessageType) - {MessageType.REPLY}


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
        #: How long a guest RELEASE waits for a new grab, when the guest lacks
        #: CLIPBOARD_NO_RELEASE_ON_REGRAB (0: released at once).
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
        self._clipboard = ClipboardExchange(self._out, self._caps, self._events, self)
        self._pointer = Pointer(self._out, self._caps, self.limits)
        self._transfers = Transfers(self._out, self._caps, self._events)

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
        """Who holds ``selection`` as far as this conversation knows."""
        return self._clipboard.book.selections[selection].owner

    def serial(self, selection: Selection) -> int:
        """The serial the next GRAB on ``selection`` carries."""
        return self._clipboard.book.selections[selection].serial

    @property
    def pending_requests(self) -> tuple[list[PendingRequest], list[PendingRequest]]:
        """(requests to the guest, requests from the guest), oldest first."""
        book = self._clipboard.book
        return list(book.to_guest), list(book.from_guest)

    @property
    def monitors(self) -> tuple[MonitorConfig, ...] | None:
        """The guest layout we last sent or recorded (used to clamp pointer coordinates)."""
        return self._pointer.monitors

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
            self._clipboard.greet()
        if effect & Effect.TIMED_OUT:
            self._events.append(CapabilitiesTimedOut(self.caps_timeout))

    def _reset_conversation(self, reason: FailureReason) -> None:
        self._clipboard.reset(reason)
        self._transfers.reset(reason)

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
        deadline = self._clipboard.next_deadline()
        caps = self._caps.deadline
        if caps is not None:
            deadline = caps if deadline is None else min(deadline, caps)
        return deadline

    def handle_timeout(self, now: float) -> None:
        """Expire what is due at ``now``; new events may follow (call :meth:`next_event`)."""
        self._now = now
        if self._caps.due(now):
            self._follow(self._caps.step(Input.DEADLINE))
        self._clipboard.expire(now)

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

    def _on_reply(self, msg: Reply) -> None:
        self._events.append(ReplyReceived(msg.type, msg.error))

    # ---------------------------------------------------------------- clipboard actions

    @property
    def max_clipboard(self) -> int:
        """The MAX_CLIPBOARD value we announce: the largest data our message limit lets
        through, or less if :meth:`set_max_clipboard` asked for less."""
        return self._clipboard.max_clipboard

    def set_max_clipboard(self, limit: int | None) -> None:
        """Ask the guest not to send clipboard data over ``limit`` bytes (None: only our
        message limit). Its agent then answers a larger selection with empty data. Sent at
        once when the guest has the MAX_CLIPBOARD cap, and again whenever its caps arrive.

        :raises LocalProtocolError: ``limit`` is negative.
        """
        self._clipboard.set_max_clipboard(limit)

    def grab_clipboard(
        self, selection: Selection, types: tuple[ClipboardType | int, ...]
    ) -> None:
        """The host owns ``selection`` now and offers ``types``.

        Sent at once when the clipboard is negotiated, otherwise when the guest's caps arrive.
        Never preceded by a RELEASE: we announce CLIPBOARD_NO_RELEASE_ON_REGRAB.

        :raises LocalProtocolError: the selection is not bridged, or ``types`` is empty.
        """
        self._clipboard.grab(selection, types)

    def release_clipboard(self, selection: Selection) -> None:
        """The host no longer owns ``selection``. Does nothing if it did not own it.

        :raises LocalProtocolError: the selection is not bridged.
        """
        self._clipboard.release(selection)

    def request_clipboard(
        self, selection: Selection, data_type: ClipboardType, now: float
    ) -> None:
        """Ask the guest for its data; the answer is a :class:`ClipboardReceived` or a
        :class:`ClipboardRequestFailed` event.

        :raises StateError: the guest does not own ``selection`` or does not offer the type.
        :raises LocalProtocolError: the selection is not bridged.
        """
        sel = bridged(selection)
        self._now = now
        self._clipboard.request(sel, data_type, now)

    def send_clipboard_data(
        self, selection: Selection, data_type: ClipboardType, data: bytes
    ) -> bool:
        """Answer the guest's oldest request for (selection, type) with ``data``.

        Returns False (and sends nothing) when no such request is pending any more: it
        expired, or the guest grabbed the selection meanwhile.
        """
        return self._clipboard.send_data(selection, data_type, data)

    def refuse_clipboard_request(self, selection: Selection, data_type: ClipboardType) -> bool:
        """Answer the guest's request with empty data (policy, size or conversion failure)."""
        return self._clipboard.refuse(selection, data_type)

    # ---------------------------------------------------------------- pointer

    @property
    def mouse_ready(self) -> bool:
        """Whether the guest accepts MOUSE_STATE (it announced the cap)."""
        return self._caps.guest_has(Capability.MOUSE_STATE)

    def send_mouse(
        self, x: int, y: int, buttons: MouseButton | int = 0, display_id: int = 0
    ) -> bool:
        """Queue one MOUSE_STATE; False (nothing queued) before the guest has the cap.

        Every call queues one message (the fast path of :mod:`.mouse`): motion is coalesced
        before it gets here, by the pointer bridge. Coordinates are pixels of monitor
        ``display_id``, clamped to it when its geometry is known (see :attr:`monitors`).

        :raises LocalProtocolError: ``display_id`` does not fit a u8.
        """
        return self._pointer.send_mouse(x, y, buttons, display_id)

    def send_wheel(
        self, up: bool, x: int, y: int, buttons: MouseButton | int = 0, display_id: int = 0
    ) -> bool:
        """One wheel step: the wheel bit pressed, then released (the agent emits REL_WHEEL
        on the 0 → 1 edge only, so each step needs both messages)."""
        return self._pointer.send_wheel(up, x, y, buttons, display_id)

    def send_monitors_config(self, monitors: tuple[MonitorConfig, ...]) -> bool:
        """Ask the guest to use this layout; the agent answers with :class:`ReplyReceived`.

        Never carries PHYSICAL_SIZE (0.22.1 rejects it). False before the guest has the cap.

        :raises LocalProtocolError: an empty layout, too many monitors, or a monitor of size 0
            (other than 0×0, disabled, for a guest with SPARSE_MONITORS_CONFIG).
        """
        return self._pointer.send_monitors_config(monitors)

    def set_monitors(self, monitors: tuple[MonitorConfig, ...] | None) -> None:
        """Record the guest layout without sending it (known from config), for clamping."""
        self._pointer.set_monitors(monitors)

    # ---------------------------------------------------------------- file transfer

    def start_file_transfer(
        self,
        name: str,
        size: int,
        *,
        number: int | None = None,
        total: int | None = None,
    ) -> int:
        """Offer a file to the guest; returns the transfer id. The agent's answer is a
        :class:`FileTransferReady` (then :meth:`send_file_data`) or a
        :class:`FileTransferFinished` event.

        :raises StateError: the guest disabled file transfer, or too many are active.
        :raises LocalProtocolError: ``name`` is not a plain file name.
        """
        return self._transfers.start(name, size, number=number, total=total)

    def send_file_data(self, transfer_id: int, data: bytes) -> None:
        """Send the next bytes of an accepted transfer, in FILE_XFER_DATA pieces.

        :raises StateError: the transfer is unknown, not accepted yet, or would exceed its size.
        """
        self._transfers.send_data(transfer_id, data)

    def cancel_file_transfer(self, transfer_id: int) -> None:
        """Cancel a transfer; reports :class:`FileTransferFinished` with CANCELLED."""
        self._transfers.cancel(transfer_id)

    def transfer(self, transfer_id: int) -> Transfer | None:
        """The state of an active transfer."""
        return self._transfers.active.get(transfer_id)

    # ---------------------------------------------------------------- snapshot

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything needed to continue this conversation on another connection.

        JSON-ready (the layout is :mod:`.snapshot`'s): caps, serials, ownership and types,
        pending requests (deadlines relative to ``now``), transfers, the partial incoming
        chunk/message, and the queued outgoing bytes. Drain :meth:`next_event` first.

        :raises StateError: events or complete messages are still waiting to be drained.
        """
        if self._events or self._deframer.items:
            raise StateError("drain next_event() before taking a snapshot",
                             state="undrained", required="drained")
        return _snapshot.write(self._parts(), now)

    @classmethod
    def restore(cls, state: dict[str, Any], now: float, **kwargs: Any) -> HostSession:
        """A session continuing the conversation of :meth:`snapshot` (nothing is announced).

        ``kwargs`` are the constructor's settings (limits, timeouts); the host caps come from
        the snapshot, since the guest frames its messages by what was announced.

        :raises LocalProtocolError: the state is malformed, of another version, or breaks a
            limit.
        """
        try:
            session = cls(caps=_snapshot.host_caps(state), **kwargs)
            _snapshot.read(state, now, session._parts(), session.limits)
        except LocalProtocolError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise LocalProtocolError(f"invalid session snapshot: {err}") from err
        session._now = now
        return session

    def _parts(self) -> _snapshot.Parts:
        return _snapshot.Parts(
            self._caps, self._clipboard, self._pointer, self._transfers, self._deframer,
            self._out,
        )


#: What handles each message a guest sends a host (with the time it arrived, where it starts
#: a deadline); any other message is reported as MessageIgnored.
_HANDLERS: dict[type, Callable[[HostSession, Any], None]] = {
    AnnounceCapabilities: HostSession._on_caps,
    ClipboardGrab: lambda session, msg: session._clipboard.on_grab(msg),
    ClipboardRelease: lambda session, msg: session._clipboard.on_release(msg, session._now),
    ClipboardRequest: lambda session, msg: session._clipboard.on_request(msg, session._now),
    ClipboardData: lambda session, msg: session._clipboard.on_data(msg),
    Reply: HostSession._on_reply,
    FileXferStatusMessage: lambda session, msg: session._transfers.on_status(msg),
}
