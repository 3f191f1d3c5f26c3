"""The pointer bridge: the host pointer, in guest-display pixels, to one VM's agent.

Theory of operation
-------------------
The pointer surface (:mod:`vdagent_bridge.ui.pointer_surface`) maps its widget coordinates
to guest pixels and calls :meth:`PointerBridge.move`, :meth:`~PointerBridge.press`,
:meth:`~PointerBridge.release` and :meth:`~PointerBridge.wheel`; the bridge turns them into
MOUSE_STATE messages (absolute pixels of display ``display_id`` plus the whole button mask,
protocol.md §4.1) through the VM's :class:`~vdagent_bridge.protocol.HostSession` and writes
them with the runtime's ``flush()``.

Motion is coalesced, buttons never are:

- a move only records the position (latest wins) and schedules one send on the event loop:
  at the next loop turn, and no sooner than :attr:`PointerBridge.min_interval` after the
  previous motion message. A burst of host motion events costs one message;
- while the connection has much unread output (:data:`HIGH_WATER` bytes held in the session
  or not yet read by the peer: a slow or paused guest, a migration holding our output),
  motion waits and only the latest position is kept: it never piles up behind the guest;
- a press, release or wheel step first sends the pending motion (if the position changed),
  then its own message, at once and in order; each call is one message (a wheel step two:
  the wheel bit set, then cleared — the agent reports REL_WHEEL on the 0 → 1 edge only).

Nothing is sent while the bridge is switched off (the pointer switch, or the VM paused), the
VM is not connected, or the guest has not announced MOUSE_STATE: calls only update what the
bridge knows of the host pointer (position, buttons held), and whatever was pending is
dropped. When sending becomes possible again nothing stale goes out; the next event carries
the current position and button mask, which also releases in the guest a button let go
meanwhile.

Guest geometry (:meth:`PointerBridge.guest_size`): the size of the guest screen as last seen
in a screendump (:meth:`set_observed_size`: what the user sees is what the pointer must hit),
else the MONITORS_CONFIG we sent (the session keeps it, and clamps coordinates to it), else
the configured size, else 1024×768. One display (``display_id``, 0 by default).

The keyboard is not bridged: the vdagent protocol has no keyboard message.

:class:`GuestScreen` makes the screendump callable the surface shows: a QMP ``screendump``
through the runtime's own monitor into a private temporary directory, loaded as a QImage.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtGui import QImage

from ..protocol import Capability, HostSession, MonitorConfig, MouseButton
from ..runtime.qmp import QmpError

if TYPE_CHECKING:
    from ..runtime import AgentConnection

log = logging.getLogger(__name__)

#: The guest size assumed when nothing better is known (QEMU's own fallback, §6.7).
DEFAULT_GUEST_SIZE = (1024, 768)
#: Motion waits while more than this much of our output is unread (bytes the session
#: holds, plus the socket's send queue: for a UNIX socket the kernel counts buffer memory,
#: about 1 KiB per small write, so this is "a dozen messages behind").
HIGH_WATER = 16 * 1024
#: The least time between two motion messages by default: 250 a second at most, more than
#: a desktop refreshes, and a bound on what a slow (TCG) guest is asked to digest.
MIN_INTERVAL = 0.004
#: The most wheel steps one call sends (a bound on a runaway value, not on a real wheel).
MAX_WHEEL_STEPS = 120
#: The largest monitor side :meth:`PointerBridge.resize_guest` asks for.
MAX_SIDE = 16384

_WHEEL = MouseButton.WHEEL_UP | MouseButton.WHEEL_DOWN


class PointerVm(Protocol):
    """What the bridge needs of a VM (:class:`~vdagent_bridge.runtime.VmRuntime` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def session(self) -> HostSession: ...

    @property
    def connection(self) -> AgentConnection | None: ...

    def flush(self) -> None:
        """Write what the session queued."""


class PointerBridge:
    """Host pointer -> one VM's guest: guest-display coordinates, coalesced motion, buttons
    never dropped. See the module docstring."""

    def __init__(
        self,
        runtime: PointerVm,
        *,
        enabled: bool = True,
        guest_size: tuple[int, int] | None = None,
        display_id: int = 0,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        """:raises ValueError: a ``display_id`` that does not fit MOUSE_STATE's u8."""
        if not 0 <= display_id <= 0xFF:
            raise ValueError(f"display id {display_id}: MOUSE_STATE carries 0..255")
        self.runtime = runtime
        self.display_id = display_id
        #: Least seconds between two motion messages (0: one per loop turn at most).
        self.min_interval = min_interval
        self._enabled = enabled
        self._configured = _valid_size(guest_size)
        self._observed: tuple[int, int] | None = None
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

    # ---------------------------------------------------------------- switches

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, on: bool) -> None:
        """Off (pointer switch off, or the VM paused): nothing is sent, ever; what was
        pending is dropped."""
        self._enabled = bool(on)
        if not on:
            self._drop_pending()

    def close(self) -> None:
        """Stop (at shutdown): nothing pending is sent."""
        self._drop_pending()

    def unavailable(self) -> str | None:
        """Why nothing can be sent now, in words; None when the pointer works."""
        if not self._enabled:
            return "pointer off"
        conn = self.runtime.connection
        if conn is None or not conn.connected:
            return "not connected"
        if not self.runtime.session.mouse_ready:
            return "the guest agent has not announced pointer support (yet)"
        return None

    def _ready(self) -> bool:
        return self.unavailable() is None

    # ---------------------------------------------------------------- geometry

    def guest_size(self) -> tuple[int, int]:
        """(width, height) of the guest display the pointer moves on, in guest pixels."""
        if self._observed is not None:
            return self._observed
        monitors = self.runtime.session.monitors
        if monitors is not None and self.display_id < len(monitors):
            mon = monitors[self.display_id]
            if mon.width > 0 and mon.height > 0:
                return mon.width, mon.height
        return self._configured or DEFAULT_GUEST_SIZE

    def set_observed_size(self, size: tuple[int, int] | None) -> None:
        """The guest screen's size as seen in a screendump (None: not known)."""
        self._observed = _valid_size(size)

    def set_configured_size(self, size: tuple[int, int] | None) -> None:
        """The guest size from the configuration (used when nothing better is known)."""
        self._configured = _valid_size(size)

    def resize_guest(self, width: int, height: int) -> bool:
        """Ask the guest to make its display ``width`` × ``height`` (MONITORS_CONFIG with
        one monitor at 0,0). False, with the reason logged, when it cannot be asked now:
        switched off, not connected, the guest has not announced MONITORS_CONFIG, or a size
        out of range. The agent answers with a REPLY; the guest may still refuse a size its
        display cannot take."""
        name = self.runtime.name
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            log.warning("%s: cannot resize the guest to %d×%d: out of range", name, width,
                        height)
            return False
        if not self._enabled:
            log.info("%s: not resizing the guest: the pointer is off or the VM paused", name)
            return False
        conn = self.runtime.connection
        if conn is None or not conn.connected:
            log.info("%s: not resizing the guest: not connected", name)
            return False
        session = self.runtime.session
        if not session.guest_has(Capability.MONITORS_CONFIG):
            log.info("%s: not resizing the guest: its agent has not announced "
                     "MONITORS_CONFIG (yet)", name)
            return False
        if not session.send_monitors_config((MonitorConfig(width, height),)):
            return False
        self.runtime.flush()
        log.info("%s: asked the guest for a %d×%d display", name, width, height)
        return True

    def _clamp(self, x: int, y: int) -> tuple[int, int]:
        width, height = self.guest_size()
        return min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)

    # ---------------------------------------------------------------- events

    def move(self, x: int, y: int) -> None:
        """The pointer is at guest pixel (x, y) (clamped to the guest display). Coalesced:
        sent at the next loop turn at the soonest, the latest position only."""
        self._pos = self._clamp(x, y)
        if not self._ready():
            self._drop_pending()
            return
        if self._pos == self._sent_pos:
            return
        if self._pending:
            self.coalesced += 1
            return
        self._pending = True
        self._schedule(0.0)

    def press(self, button: MouseButton | int) -> bool:
        """A button goes down (at the current position). Sent at once, after the pending
        motion; False when nothing could be sent (see the module docstring)."""
        return self._buttons_to(self._buttons | MouseButton(button))

    def release(self, button: MouseButton | int) -> bool:
        """A button goes up; sent at once, after the pending motion."""
        return self._buttons_to(self._buttons & ~MouseButton(button))

    def release_all(self) -> bool:
        """Let go of every button held (the surface hides while one is down)."""
        if not self._buttons:
            return False
        return self._buttons_to(MouseButton.NONE)

    @property
    def buttons(self) -> MouseButton:
        """The buttons the host holds."""
        return self._buttons

    @property
    def position(self) -> tuple[int, int]:
        """The host pointer, in guest pixels."""
        return self._pos

    def wheel(self, steps: int, *, horizontal: bool = False) -> bool:
        """``steps`` wheel notches at the current position: positive up, negative down.
        Each is the wheel bit pressed then released. The protocol has no horizontal wheel
        (QEMU drops it too), so ``horizontal`` steps are ignored (False)."""
        if horizontal or steps == 0:
            return False
        if not self._ready():
            self._drop_pending()
            return False
        count = min(abs(steps), MAX_WHEEL_STEPS)
        self._send_pending_motion()
        session = self.runtime.session
        x, y = self._pos
        buttons = self._buttons & ~_WHEEL
        for _ in range(count):
            session.send_wheel(steps > 0, x, y, buttons, self.display_id)
        self.sent += 2 * count
        self._sent_pos = self._pos
        self.runtime.flush()
        return True

    def _buttons_to(self, buttons: MouseButton) -> bool:
        if not self._ready():
            self._buttons = buttons
            self._drop_pending()
            return False
        self._send_pending_motion()
        self._buttons = buttons
        x, y = self._pos
        self.runtime.session.send_mouse(x, y, buttons, self.display_id)
        self.sent += 1
        self._sent_pos = self._pos
        self.runtime.flush()
        return True

    # ---------------------------------------------------------------- motion

    def _schedule(self, at_least: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No event loop runs (a script driving the bridge directly): no coalescing.
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
        if not self._ready():
            self._pending = False
            return
        if self._congested():
            # Keep only the latest position; look again shortly.
            self._schedule(max(self.min_interval, 0.002))
            return
        self._send_pending_motion()
        self.runtime.flush()

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
        if self.runtime.session.send_mouse(x, y, self._buttons, self.display_id):
            self.sent += 1
            self._sent_pos = self._pos
            try:
                self._last_motion = asyncio.get_running_loop().time()
            except RuntimeError:
                pass

    def _congested(self) -> bool:
        if self.runtime.session.bytes_to_send > HIGH_WATER:
            return True
        conn = self.runtime.connection
        return conn is not None and conn.unread_output() > HIGH_WATER

    def _drop_pending(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pending = False
        # The guest may have been told something else meanwhile (a reconnect): send the
        # next position even if it equals the last one we sent.
        self._sent_pos = None


def _valid_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    width, height = int(size[0]), int(size[1])
    return (width, height) if width > 0 and height > 0 else None


class ScreenUnavailable(Exception):
    """No screen image can be had now; the message says why, for the surface."""


class ScreenVm(Protocol):
    """What :class:`GuestScreen` needs of a VM (:class:`VmRuntime` has it)."""

    async def screendump(self, path: Path) -> bool: ...


class GuestScreen:
    """The guest screen through QMP ``screendump``, as a callable for the pointer surface:
    ``await screen()`` returns a QImage, or raises :class:`ScreenUnavailable` saying why not.

    QEMU writes the file itself, as the user it runs as. The file goes to a private
    temporary directory (0700, made on first use, removed by :meth:`close`); under libvirt,
    where QEMU runs as another user, give ``directory`` one that QEMU can write to.
    """

    def __init__(self, vm: ScreenVm, directory: Path | None = None) -> None:
        self._vm = vm
        self._given_dir = directory
        self._dir: Path | None = None

    def _path(self) -> Path:
        if self._given_dir is not None:
            return self._given_dir / "vdagent-bridge-screen"
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="vdagent-bridge-screen-"))
        return self._dir / "screen"

    async def __call__(self) -> QImage | None:
        path = self._path()
        try:
            if not await self._vm.screendump(path):
                site = getattr(self._vm, "site", None)
                if site is not None and getattr(site, "qmp", True) is None:
                    raise ScreenUnavailable("no screen image: this QEMU has no QMP monitor "
                                            "configured")
                raise ScreenUnavailable("no screen image: the QMP monitor is not connected")
        except QmpError as err:
            raise ScreenUnavailable(f"no screen image: {err}") from err
        image = await asyncio.to_thread(_load, path)
        if image is None:
            raise ScreenUnavailable("no screen image: QEMU wrote no readable file (is its "
                                    "QMP monitor on another machine?)")
        return image

    def close(self) -> None:
        """Remove the temporary directory."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _load(path: Path) -> QImage | None:
    image = QImage(str(path))  # PNG or PPM, told apart by content
    return None if image.isNull() else image
