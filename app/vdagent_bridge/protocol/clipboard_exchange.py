"""The clipboard half of the conversation: the guest's clipboard messages in, the host's
clipboard actions out, by the rules of :class:`~.clipboard.ClipboardBook`.

Theory of operation
-------------------
Ownership, serials and pending requests live in the book (see :mod:`.clipboard` for the serial
rules); this module applies them to messages and actions:

- grabs: a host grab is sent at once when the clipboard is negotiated (both sides have
  CLIPBOARD_BY_DEMAND), otherwise recorded and sent when the guest's caps arrive
  (:meth:`ClipboardExchange.greet`). It is never preceded by a RELEASE: we announce
  CLIPBOARD_NO_RELEASE_ON_REGRAB. A guest grab that lost a serial race is ignored and
  reported (:class:`~.events.ClipboardGrabIgnored`);
- releases: a guest RELEASE is applied at once when the guest announced
  CLIPBOARD_NO_RELEASE_ON_REGRAB, and after ``release_delay`` otherwise, so a
  release-then-grab from an older agent does not blank the host clipboard in between
  (spice-gtk waits 500 ms for the same reason);
- requests carry deadlines in both directions. An expired request of ours becomes
  :class:`~.events.ClipboardRequestFailed`; an expired guest request is answered with empty
  data (so the pasting guest application does not hang) and reported as
  :class:`~.events.GuestRequestExpired`. What the host cannot serve is answered with empty
  data at once, as QEMU and spice-gtk do;
- text is converted to CRLF for guests that announce GUEST_LINEEND_CRLF, and back to LF on
  the way in;
- MAX_CLIPBOARD tells a guest that has the cap the largest data we take: our message limit,
  or less if the host asked for less. It is sent when the guest's caps arrive and whenever
  the host changes it.

Only CLIPBOARD and PRIMARY are bridged: SECONDARY is refused by the Linux session agent and
offered by no host toolkit we bridge. Without CLIPBOARD_SELECTION only CLIPBOARD exists on the
wire.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from .clipboard import ClipboardBook, Owner, PendingRequest
from .codec import Limits
from .constants import SELECTION_PREFIX_SIZE, TEXT_TYPES, Capability, ClipboardType, Selection
from .errors import LocalProtocolError, StateError
from .events import (
    ClipboardGrabbed,
    ClipboardGrabIgnored,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardRequestFailed,
    Event,
    FailureReason,
    GuestRequestExpired,
    MessageIgnored,
)
from .messages import (
    ClipboardData,
    ClipboardGrab,
    ClipboardRelease,
    ClipboardRequest,
    MaxClipboard,
    Message,
)
from .negotiation import Negotiation, Phase
from .outbound import Outbound

#: The selections bridged, in the order they are grabbed again.
_SELECTIONS = (Selection.CLIPBOARD, Selection.PRIMARY)


def lf_to_crlf(data: bytes) -> bytes:
    """Text for a CRLF guest: every line break becomes CRLF, existing CRLFs stay single."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_to_lf(data: bytes | bytearray) -> bytes | bytearray:
    """Text from a CRLF guest, with LF line breaks."""
    return data.replace(b"\r\n", b"\n")


def bridged(selection: Selection | int) -> Selection:
    """``selection`` as a bridged Selection.

    :raises LocalProtocolError: it is SECONDARY or no selection at all.
    """
    if selection not in _SELECTIONS:
        raise LocalProtocolError(f"selection {selection!r} is not bridged")
    return Selection(selection)


class ClipboardSettings(Protocol):
    """The session's settings the clipboard reads, each time it needs them."""

    @property
    def limits(self) -> Limits: ...

    @property
    def request_timeout(self) -> float: ...

    @property
    def guest_request_timeout(self) -> float: ...

    @property
    def release_delay(self) -> float: ...


class ClipboardExchange:
    """The clipboard of one conversation. See the module docstring."""

    __slots__ = ("_caps", "_events", "_out", "_settings", "book", "limit")

    def __init__(
        self,
        out: Outbound,
        caps: Negotiation,
        events: deque[Event],
        settings: ClipboardSettings,
    ) -> None:
        self._out = out
        self._caps = caps
        self._events = events
        self._settings = settings
        self.book = ClipboardBook()
        #: The largest clipboard data the host asked for (None: only the message limit).
        self.limit: int | None = None

    def _send(self, msg: Message) -> None:
        self._out.send(msg, self._caps.fmt)

    # -- the conversation --------------------------------------------------------------------

    def greet(self) -> None:
        """The guest's first caps in this conversation: send MAX_CLIPBOARD if it has the cap,
        and grab again what the host owns."""
        if self._caps.guest_has(Capability.MAX_CLIPBOARD):
            self._send(MaxClipboard(self.max_clipboard))
        if self._caps.clipboard_ready:
            for sel in _SELECTIONS:
                if self.book.selections[sel].owner is Owner.HOST:
                    self._send_grab(sel)

    def reset(self, reason: FailureReason) -> None:
        """The conversation ended: serials zeroed, our requests fail with ``reason``, the
        guest's requests are dropped and what the guest owned is released. What the host
        owns stays, to be grabbed again."""
        book = self.book
        book.reset_serials()
        for req in book.to_guest:
            self._events.append(ClipboardRequestFailed(req.selection, req.type, reason))
        book.to_guest.clear()
        book.from_guest.clear()
        for sel, state in book.selections.items():
            state.release_at = None
            if state.owner is Owner.GUEST:
                state.owner, state.types = Owner.NONE, ()
                self._events.append(ClipboardReleased(sel))

    def next_deadline(self) -> float | None:
        return self.book.next_deadline()

    def expire(self, now: float) -> None:
        """Requests and deferred releases that are due at ``now``."""
        book = self.book
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

    # -- MAX_CLIPBOARD -----------------------------------------------------------------------

    @property
    def max_clipboard(self) -> int:
        """The MAX_CLIPBOARD value we announce: the largest data our message limit lets
        through, or less if :meth:`set_max_clipboard` asked for less."""
        overhead = SELECTION_PREFIX_SIZE + 4
        largest = min(self._settings.limits.max_message_size - overhead, 0x7FFFFFFF)
        return largest if self.limit is None else min(largest, self.limit)

    def set_max_clipboard(self, limit: int | None) -> None:
        """Ask for no clipboard data over ``limit`` bytes; sent at once if the caps are
        exchanged and the guest has MAX_CLIPBOARD.

        :raises LocalProtocolError: ``limit`` is negative.
        """
        if limit is not None and limit < 0:
            raise LocalProtocolError(f"clipboard limit must not be negative: {limit}")
        self.limit = limit
        caps = self._caps
        if caps.phase is Phase.EXCHANGED and caps.guest_has(Capability.MAX_CLIPBOARD):
            self._send(MaxClipboard(self.max_clipboard))

    # -- guest messages ----------------------------------------------------------------------

    def on_grab(self, msg: ClipboardGrab) -> None:
        sel = msg.selection
        if not self._caps.clipboard_ready:
            self._events.append(MessageIgnored(msg, "clipboard not negotiated"))
            return
        if sel not in _SELECTIONS:
            self._events.append(
                ClipboardGrabIgnored(sel, msg.serial, None, "unsupported selection")
            )
            return
        state = self.book.selections[Selection(sel)]
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
        self.book.from_guest = [r for r in self.book.from_guest if r.selection != sel]
        self._events.append(ClipboardGrabbed(sel, msg.types, msg.serial))

    def on_release(self, msg: ClipboardRelease, now: float) -> None:
        sel = msg.selection
        if sel not in _SELECTIONS:
            self._events.append(MessageIgnored(msg, "unsupported selection"))
            return
        state = self.book.selections[Selection(sel)]
        if state.owner is not Owner.GUEST:
            self._events.append(MessageIgnored(msg, "the guest does not own that selection"))
            return
        delay = self._settings.release_delay
        if self._caps.guest_has(Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB) or delay <= 0:
            state.owner, state.types = Owner.NONE, ()
            self._events.append(ClipboardReleased(sel))
        else:
            state.release_at = now + delay

    def on_request(self, msg: ClipboardRequest, now: float) -> None:
        sel, data_type = msg.selection, msg.type
        if not self._caps.clipboard_ready:
            self._events.append(MessageIgnored(msg, "clipboard not negotiated"))
            return
        if sel not in _SELECTIONS:
            if sel == Selection.SECONDARY:
                self._answer_empty(sel, data_type)
            self._events.append(MessageIgnored(msg, "unsupported selection"))
            return
        state = self.book.selections[Selection(sel)]
        if state.owner is not Owner.HOST or data_type not in state.types:
            self._answer_empty(sel, data_type)
            self._events.append(MessageIgnored(msg, "the host does not offer that data"))
            return
        if len(self.book.from_guest) >= self._settings.limits.max_pending_requests:
            self._answer_empty(sel, data_type)
            self._events.append(MessageIgnored(msg, "too many pending guest requests"))
            return
        self.book.from_guest.append(
            PendingRequest(sel, data_type, now + self._settings.guest_request_timeout)
        )
        self._events.append(ClipboardRequested(sel, data_type))

    def on_data(self, msg: ClipboardData) -> None:
        req = self.book.take_to_guest(msg.selection, msg.type)
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
        if msg.type in TEXT_TYPES and self._caps.guest_has(Capability.GUEST_LINEEND_CRLF):
            data = crlf_to_lf(data)
        self._events.append(ClipboardReceived(msg.selection, msg.type, data))

    # -- host actions ------------------------------------------------------------------------

    def grab(self, selection: Selection, types: tuple[ClipboardType | int, ...]) -> None:
        """The host owns ``selection`` now and offers ``types``.

        :raises LocalProtocolError: the selection is not bridged, or ``types`` is empty.
        """
        sel = bridged(selection)
        if not types:
            raise LocalProtocolError("a grab needs at least one type")
        book = self.book
        state = book.selections[sel]
        state.owner, state.types, state.release_at = Owner.HOST, tuple(types), None
        # Our requests for the guest's old data will be answered NONE or not at all.
        for req in [r for r in book.to_guest if r.selection == sel]:
            book.to_guest.remove(req)
            self._events.append(
                ClipboardRequestFailed(req.selection, req.type, FailureReason.NOT_OWNER)
            )
        if self._caps.clipboard_ready:
            self._send_grab(sel)

    def _send_grab(self, sel: Selection) -> None:
        fmt = self._caps.fmt
        if sel != Selection.CLIPBOARD and not fmt.selection:
            return  # without CLIPBOARD_SELECTION only CLIPBOARD exists on the wire
        state = self.book.selections[sel]
        serial = state.take_host_serial() if fmt.grab_serial else None
        self._send(ClipboardGrab(sel, state.types, serial))

    def release(self, selection: Selection) -> None:
        """The host no longer owns ``selection`` (nothing if it did not own it); the guest's
        requests for it are answered empty.

        :raises LocalProtocolError: the selection is not bridged.
        """
        sel = bridged(selection)
        book = self.book
        state = book.selections[sel]
        if state.owner is not Owner.HOST:
            return
        state.owner, state.types = Owner.NONE, ()
        for req in [r for r in book.from_guest if r.selection == sel]:
            book.from_guest.remove(req)
            self._answer_empty(req.selection, req.type)
        if self._caps.clipboard_ready and (sel == Selection.CLIPBOARD or self._caps.fmt.selection):
            self._send(ClipboardRelease(sel))

    def request(self, selection: Selection, data_type: ClipboardType, now: float) -> None:
        """Ask the guest for its data, due ``request_timeout`` after ``now``.

        :raises StateError: the guest does not own ``selection`` or does not offer the type,
            or the selection does not exist on the wire.
        :raises LocalProtocolError: the selection is not bridged.
        """
        sel = bridged(selection)
        state = self.book.selections[sel]
        if state.owner is not Owner.GUEST or data_type not in state.types:
            raise StateError(
                f"the guest does not offer {data_type!r} on {sel.name}",
                state=state.owner,
                required=Owner.GUEST,
            )
        fmt = self._caps.fmt
        if sel != Selection.CLIPBOARD and not fmt.selection:
            raise StateError("selection not negotiated", state=fmt, required="selection")
        deadline = now + self._settings.request_timeout
        self.book.to_guest.append(PendingRequest(sel, data_type, deadline))
        self._send(ClipboardRequest(sel, data_type))

    def send_data(self, selection: Selection, data_type: ClipboardType, data: bytes) -> bool:
        """Answer the guest's oldest request for (selection, type) with ``data``; False (and
        nothing sent) when no such request is pending any more."""
        req = self.book.take_from_guest(selection, data_type)
        if req is None:
            return False
        if data_type in TEXT_TYPES and self._caps.guest_has(Capability.GUEST_LINEEND_CRLF):
            data = lf_to_crlf(data)
        self._send(ClipboardData(req.selection, data_type, data))
        return True

    def refuse(self, selection: Selection, data_type: ClipboardType) -> bool:
        """Answer the guest's oldest request for (selection, type) with empty data; False
        when no such request is pending any more."""
        req = self.book.take_from_guest(selection, data_type)
        if req is None:
            return False
        self._answer_empty(req.selection, req.type)
        return True

    def _answer_empty(self, selection: Selection | int, data_type: ClipboardType | int) -> None:
        # QEMU and spice-gtk answer what they cannot serve with empty data of the requested
        # type; the GTK session agent hands that to the pasting application as "nothing".
        if not self._caps.clipboard_ready:
            return
        if selection != Selection.CLIPBOARD and not self._caps.fmt.selection:
            return
        if not 0 <= int(selection) <= 0xFF or not 0 <= int(data_type) <= 0xFFFFFFFF:
            return
        self._send(ClipboardData(selection, data_type, b""))
