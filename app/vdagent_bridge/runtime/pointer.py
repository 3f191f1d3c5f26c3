"""The pointer of one VM: MOUSE_STATE messages, motion coalesced, buttons never dropped.

Theory of operation
-------------------
The host pointer (the pointer surface, through the pointer bridge) reports positions in
guest pixels and button changes; :class:`PointerSender` turns them into MOUSE_STATE messages
(absolute pixels of display ``display_id`` plus the whole button mask, docs/protocol.md
§5.1) and
has them written. It is the VM's only pointer path, so there is one coalescing policy:

- a move only records the position (latest wins) and schedules one send on the event loop:
  at the next loop turn, and no sooner than :attr:`PointerSender.min_interval` after the
  previous motion message. A burst of host motion events costs one message;
- while the conversation has much unread output (:data:`CONGESTED` bytes queued in the
  session or not yet read by the peer: a slow or paused guest, a migration holding our
  output), motion waits and only the latest position is kept: it never piles up behind the
  guest;
- a button change or a wheel step first sends the pending motion (if the position changed),
  then its own message, at once and in order; a wheel step is two messages (the wheel bit
  set, then cleared: the agent reports REL_WHEEL on the 0 → 1 edge only).

Nothing is sent while the sender is switched off (the pointer switch, or the VM paused), the
VM is not connected, or the guest has not announced MOUSE_STATE: calls only update what is
known of the host pointer (position, buttons held), and whatever was pending is dropped.
When sending becomes possible again nothing stale goes out; the next event carries the
current position and button mask, which also releases in the guest a button let go
meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..protocol import HostSession, MouseButton

#: Motion waits while more than this much of our output is unread (bytes the session
#: holds, plus the socket's send queue: for a UNIX socket the kernel counts buffer memory,
#: about 1 KiB per small write, so this is "a dozen messages behind").
CONGESTED = 16 * 1024
#: The least time between two motion messages by default: 250 a second at most, more than
#: a desktop refreshes, and a bound on what a slow (TCG) guest is asked to digest.
MIN_INTERVAL = 0.004
#: The most wheel steps one call sends (a bound on a runaway value, not on a real wheel).
MAX_WHEEL_STEPS = 120

_WHEEL = MouseButton.WHEEL_UP | MouseButton.WHEEL_DOWN


class PointerSender:
    """One VM's pointer; see the module docstring.

    ``session`` returns the VM's session (it may be replaced by a restored one), ``ready``
    whether the VM can take pointer messages now (connected, MOUSE_STATE announced),
    ``unread`` how much of our output waits or is unread by the peer, ``flush`` writes.
    """

    def __init__(
        self,
        session: Callable[[], HostSession],
        ready: Callable[[], bool],
        unread: Callable[[], int],
        flush: Callable[[], None],
        *,
        display_id: int = 0,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        """:raises ValueError: a ``display_id`` that does not fit MOUSE_STATE's u8."""
        if not 0 <= display_id <= 0xFF:
            raise ValueError(f"display id {display_id}: MOUSE_STATE carries 0..255")
        self._session = session
        self._ready = ready
        self._unread = unread
        self._flush = flush
        self.display_id = display_id
        #: Least seconds between two motion messages (0: one per loop turn at most).
        self.min_interval = min_interval
        #: Off: nothing is sent, ever (the pointer switch, or the VM paused).
        self.enabled = True
        #: The host pointer as last reported (guest pixels) and the buttons held.
        self._pos = (0, 0)
        self._buttons = MouseButton.NONE
        #: What the guest was last told.
        self._sent_pos: tuple[int, int] | None = None
        self._pending = False
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._last_motion = -1e9
        #: Counters, for the UI and the benchmark.
        self.sent = 0
        self.coalesced = 0

    @property
    def position(self) -> tuple[int, int]:
        """The host pointer, in guest pixels."""
        return self._pos

    @property
    def buttons(self) -> MouseButton:
        """The buttons the host holds."""
        return self._buttons

    def can_send(self) -> bool:
        return self.enabled and self._ready()

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if not on:
            self.drop()

    # ---------------------------------------------------------------- events

    def move(self, x: int, y: int) -> None:
        """The pointer is at guest pixel (x, y). Coalesced: sent at the next loop turn at the
        soonest, the latest position only."""
        self._pos = (int(x), int(y))
        if not self.can_send():
            self.drop()
            return
        if self._pos == self._sent_pos:
            return
        if self._pending:
            self.coalesced += 1
            return
        self._pending = True
        self._schedule(0.0)

    def set_buttons(self, buttons: MouseButton) -> bool:
        """The buttons held are now ``buttons``: sent at once, after the pending motion.
        False when nothing could be sent (see the module docstring)."""
        if not self.can_send():
            self._buttons = buttons
            self.drop()
            return False
        self._send_pending_motion()
        self._buttons = buttons
        x, y = self._pos
        self._session().send_mouse(x, y, buttons, self.display_id)
        self.sent += 1
        self._sent_pos = self._pos
        self._flush()
        return True

    def wheel(self, steps: int) -> bool:
        """``steps`` wheel notches at the current position: positive up, negative down."""
        if steps == 0:
            return False
        if not self.can_send():
            self.drop()
            return False
        count = min(abs(steps), MAX_WHEEL_STEPS)
        self._send_pending_motion()
        session = self._session()
        x, y = self._pos
        buttons = self._buttons & ~_WHEEL
        for _ in range(count):
            session.send_wheel(steps > 0, x, y, buttons, self.display_id)
        self.sent += 2 * count
        self._sent_pos = self._pos
        self._flush()
        return True

    def drop(self) -> None:
        """Forget what is pending; the next event sends the position even if the guest was
        told it already (it may have been told something else meanwhile: a reconnect)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pending = False
        self._sent_pos = None

    # ---------------------------------------------------------------- motion

    def _schedule(self, at_least: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No event loop runs (a script driving the sender directly): no coalescing.
            self._send_motion()
            return
        due = max(self._last_motion + self.min_interval, loop.time() + at_least)
        if due <= loop.time():
            self._handle = loop.call_soon(self._send_motion)
        else:
            self._handle = loop.call_at(due, self._send_motion)

    def _send_motion(self) -> None:
        """The scheduled send of the latest position."""
        self._handle = None
        if not self._pending:
            return
        if not self.can_send():
            self._pending = False
            return
        if self._unread() > CONGESTED:
            # Keep only the latest position; look again shortly.
            self._schedule(max(self.min_interval, 0.002))
            return
        self._send_pending_motion()
        self._flush()

    def _send_pending_motion(self) -> None:
        """Queue the pending motion now (a button event follows it), if it moved."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._pending:
            return
        self._pending = False
        if self._pos == self._sent_pos:
            return
        x, y = self._pos
        if self._session().send_mouse(x, y, self._buttons, self.display_id):
            self.sent += 1
            self._sent_pos = self._pos
            try:
                self._last_motion = asyncio.get_running_loop().time()
            except RuntimeError:
                pass
