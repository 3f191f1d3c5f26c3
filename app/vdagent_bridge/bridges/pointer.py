"""The pointer bridge: the host pointer, in guest-display pixels, to one VM's agent.

Theory of operation
-------------------
The pointer surface (:mod:`vdagent_bridge.ui.pointer_surface`) maps its widget coordinates
to guest pixels and calls :meth:`PointerBridge.move`, :meth:`~PointerBridge.press`,
:meth:`~PointerBridge.release` and :meth:`~PointerBridge.wheel`; the bridge clamps them to
the guest display and hands them to the VM's pointer
(:class:`~vdagent_bridge.runtime.PointerSender`, the VM's one pointer path: motion
coalesced, buttons never dropped, nothing sent while switched off, disconnected or before
the guest announced MOUSE_STATE; see runtime/pointer.py).

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
from typing import Protocol

from PySide6.QtGui import QImage

from ..protocol import Capability, MonitorConfig, MouseButton
from ..runtime import PointerSender, QmpError
from ..runtime.pointer import MIN_INTERVAL

log = logging.getLogger(__name__)

#: The guest size assumed when nothing better is known (QEMU's own fallback, docs/qemu.md §6).
DEFAULT_GUEST_SIZE = (1024, 768)
#: The largest monitor side :meth:`PointerBridge.resize_guest` asks for.
MAX_SIDE = 16384


class PointerVm(Protocol):
    """What the bridge needs of a VM (:class:`~vdagent_bridge.runtime.VmRuntime` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def pointer(self) -> PointerSender: ...

    @property
    def connected(self) -> bool: ...

    @property
    def mouse_ready(self) -> bool: ...

    @property
    def monitors(self) -> tuple[MonitorConfig, ...] | None: ...

    def guest_has(self, cap: Capability) -> bool: ...

    def send_monitors(self, monitors: tuple[MonitorConfig, ...]) -> bool: ...


class PointerBridge:
    """Host pointer -> one VM's guest, in guest-display coordinates. See the module
    docstring."""

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
        self._pointer = runtime.pointer
        self._pointer.display_id = display_id
        self._pointer.min_interval = min_interval
        self._pointer.set_enabled(enabled)
        self._configured = _valid_size(guest_size)
        self._observed: tuple[int, int] | None = None

    @property
    def display_id(self) -> int:
        return self._pointer.display_id

    @property
    def min_interval(self) -> float:
        """Least seconds between two motion messages (0: one per loop turn at most)."""
        return self._pointer.min_interval

    @property
    def sent(self) -> int:
        """Pointer messages sent (for the UI and the benchmark)."""
        return self._pointer.sent

    @property
    def coalesced(self) -> int:
        """Moves merged into a later one."""
        return self._pointer.coalesced

    # ---------------------------------------------------------------- switches

    @property
    def enabled(self) -> bool:
        return self._pointer.enabled

    def set_enabled(self, on: bool) -> None:
        """Off (pointer switch off, or the VM paused): nothing is sent, ever; what was
        pending is dropped."""
        self._pointer.set_enabled(on)

    def close(self) -> None:
        """Stop (at shutdown): nothing pending is sent."""
        self._pointer.drop()

    def unavailable(self) -> str | None:
        """Why nothing can be sent now, in words; None when the pointer works."""
        if not self._pointer.enabled:
            return "pointer off"
        if not self.runtime.connected:
            return "not connected"
        if not self.runtime.mouse_ready:
            return "the guest agent has not announced pointer support (yet)"
        return None

    # ---------------------------------------------------------------- geometry

    def guest_size(self) -> tuple[int, int]:
        """(width, height) of the guest display the pointer moves on, in guest pixels."""
        if self._observed is not None:
            return self._observed
        monitors = self.runtime.monitors
        if monitors is not None and self.display_id < len(monitors):
            mon = monitors[self.display_id]
            if mon.width > 0 and mon.height > 0:
                return mon.width, mon.height
        return self._configured or DEFAULT_GUEST_SIZE

    def set_observed_size(self, size: tuple[int, int] | None) -> None:
        """The guest screen's size as seen in a screendump (None: not known)."""
        self._observed = _valid_size(size)

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
        if not self._pointer.enabled:
            log.info("%s: not resizing the guest: the pointer is off or the VM paused", name)
            return False
        if not self.runtime.connected:
            log.info("%s: not resizing the guest: not connected", name)
            return False
        if not self.runtime.guest_has(Capability.MONITORS_CONFIG):
            log.info("%s: not resizing the guest: its agent has not announced "
                     "MONITORS_CONFIG (yet)", name)
            return False
        if not self.runtime.send_monitors((MonitorConfig(width, height),)):
            return False
        log.info("%s: asked the guest for a %d×%d display", name, width, height)
        return True

    def _clamp(self, x: int, y: int) -> tuple[int, int]:
        width, height = self.guest_size()
        return min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)

    # ---------------------------------------------------------------- events

    def move(self, x: int, y: int) -> None:
        """The pointer is at guest pixel (x, y) (clamped to the guest display). Coalesced:
        sent at the next loop turn at the soonest, the latest position only."""
        self._pointer.move(*self._clamp(x, y))

    def press(self, button: MouseButton | int) -> bool:
        """A button goes down (at the current position). Sent at once, after the pending
        motion; False when nothing could be sent (see the module docstring)."""
        return self._pointer.set_buttons(self._pointer.buttons | MouseButton(button))

    def release(self, button: MouseButton | int) -> bool:
        """A button goes up; sent at once, after the pending motion."""
        return self._pointer.set_buttons(self._pointer.buttons & ~MouseButton(button))

    def release_all(self) -> bool:
        """Let go of every button held (the surface hides while one is down)."""
        if not self._pointer.buttons:
            return False
        return self._pointer.set_buttons(MouseButton.NONE)

    @property
    def buttons(self) -> MouseButton:
        """The buttons the host holds."""
        return self._pointer.buttons

    @property
    def position(self) -> tuple[int, int]:
        """The host pointer, in guest pixels."""
        return self._pointer.position

    def wheel(self, steps: int, *, horizontal: bool = False) -> bool:
        """``steps`` wheel notches at the current position: positive up, negative down.
        Each is the wheel bit pressed then released. The protocol has no horizontal wheel
        (QEMU drops it too), so ``horizontal`` steps are ignored (False)."""
        if horizontal:
            return False
        return self._pointer.wheel(steps)


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
