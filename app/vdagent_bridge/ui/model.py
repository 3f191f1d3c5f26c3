"""What the tray and the window show and what they can ask for: the UI's view of the app.

The widgets know only this module: :class:`Controller` is implemented by the composition root
(:mod:`vdagent_bridge.application`), and by a fake in the tests. They read snapshots
(:class:`VmStatus`) when they draw — the tray menu is rebuilt each time it opens — and
redraw the icon and the window on :attr:`Controller.changed`.

Why :class:`Hook` and not a Qt ``Signal``: with PySide6 6.12 on Python 3.11, every
``SignalInstance.emit()`` made from Python drops one reference to ``True`` (measured:
``sys.getrefcount(True)`` falls by one per emit, with or without a slot); after a few hundred
emits the interpreter aborts with "Fatal Python error: bool_dealloc". Python 3.12+ makes
``True`` immortal, which hides it. Signals Qt emits itself (clicked, triggered, aboutToShow,
QClipboard.changed) are not affected, so only our own notifications avoid ``emit()``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, ParamSpec

from ..runtime import Runstate

log = logging.getLogger(__name__)

P = ParamSpec("P")


class Hook(Generic[P]):
    """Callbacks called in turn on :meth:`emit`, like a direct Qt connection (same thread, at
    once). A callback's exception is logged and the others still run, as with a Qt slot."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[P, None]] = []

    def connect(self, callback: Callable[P, None]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[P, None]) -> None:
        """Remove ``callback`` (nothing happens if it is not connected)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for callback in list(self._callbacks):
            try:
                callback(*args, **kwargs)
            except Exception:
                log.exception("error in a callback of %r", callback)


class Toggle(enum.Enum):
    """The per-VM switches the user can flip (their values are the settings keys)."""

    TO_GUEST = "to_guest"
    TO_HOST = "to_host"
    PRIMARY = "primary"
    POINTER = "pointer"
    PAUSED = "paused"


#: Menu and window labels of the switches, in the order they are shown.
TOGGLE_LABELS = {
    Toggle.TO_GUEST: "Clipboard to guest",
    Toggle.TO_HOST: "Clipboard to host",
    Toggle.PRIMARY: "PRIMARY selection too",
    Toggle.POINTER: "Pointer to guest",
    Toggle.PAUSED: "Pause this VM",
}


class Level(enum.Enum):
    """How a notification is shown."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class IconState(enum.Enum):
    """What the tray icon shows, for the app as a whole."""

    CONNECTED = "connected"
    CONNECTING = "connecting"
    MIGRATING = "migrating"
    ERROR = "error"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class VmStatus:
    """One VM as the UI shows it."""

    name: str
    runstate: Runstate
    #: Where it is connected or what went wrong, for the status line.
    detail: str
    to_guest: bool
    to_host: bool
    primary: bool
    paused: bool
    pointer: bool = True
    #: The file transfer in progress, in words ("" when none).
    transfer: str = ""

    def value(self, toggle: Toggle) -> bool:
        return bool(getattr(self, toggle.value))

    @property
    def state_text(self) -> str:
        """The runstate in words."""
        return _STATE_TEXT[self.runstate]


_STATE_TEXT = {
    Runstate.IDLE: "stopped",
    Runstate.CONNECTING: "connecting",
    Runstate.CONNECTED: "connected",
    Runstate.MIGRATING: "migrating",
    Runstate.WAITING: "waiting to reconnect",
    Runstate.FAILED: "error",
}


@dataclass(frozen=True, slots=True)
class DesktopNote:
    """What this desktop lets the app do, said plainly: a short line for the menu and the
    details (one sentence a point) for its tooltip and the window."""

    summary: str
    details: tuple[str, ...]


def vm_icon_state(vm: VmStatus, paused: bool = False) -> IconState:
    """The icon of one VM's status line."""
    if paused or vm.paused:
        return IconState.PAUSED
    if vm.runstate is Runstate.FAILED:
        return IconState.ERROR
    if vm.runstate is Runstate.MIGRATING:
        return IconState.MIGRATING
    if vm.runstate is Runstate.CONNECTED:
        return IconState.CONNECTED
    return IconState.CONNECTING


def overall_icon_state(vms: Sequence[VmStatus], paused: bool) -> IconState:
    """The tray icon: paused (all of it) beats error (any VM) beats migrating beats
    connecting (any VM not connected yet) beats connected (every VM)."""
    if paused or (vms and all(vm.paused for vm in vms)):
        return IconState.PAUSED
    states = {vm_icon_state(vm) for vm in vms if not vm.paused}
    for state in (IconState.ERROR, IconState.MIGRATING, IconState.CONNECTING):
        if state in states:
            return state
    return IconState.CONNECTED if states else IconState.CONNECTING


class Controller:
    """The app as the UI sees it. The composition root implements the methods."""

    def __init__(self) -> None:
        #: Something the UI shows changed (a runstate, a switch, the global pause).
        self.changed: Hook[[]] = Hook()
        #: A notification: title, text, :class:`Level` value.
        self.notify: Hook[[str, str, str]] = Hook()

    def vms(self) -> Sequence[VmStatus]:
        raise NotImplementedError

    def paused(self) -> bool:
        raise NotImplementedError

    def primary_supported(self) -> bool:
        """False where the host has no PRIMARY selection (Wayland without it, offscreen)."""
        raise NotImplementedError

    def set_toggle(self, vm: str, toggle: Toggle, on: bool) -> None:
        raise NotImplementedError

    def set_paused(self, paused: bool) -> None:
        raise NotImplementedError

    def reconnect(self, vm: str) -> None:
        raise NotImplementedError

    def autostart_enabled(self) -> bool:
        raise NotImplementedError

    def set_autostart(self, enabled: bool) -> None:
        raise NotImplementedError

    def has_demo_guest(self) -> bool:
        """True when the demo guest runs (the UI then offers to show its window)."""
        return False

    def show_demo_guest(self) -> None:
        raise NotImplementedError

    def about_text(self) -> str:
        raise NotImplementedError

    def desktop_note(self) -> DesktopNote | None:
        """What works on this desktop and what does not (Wayland), or None when all does."""
        return None

    def send_files(self, vm: str, paths: Sequence[Path]) -> None:
        """Send files to the VM's guest (one after another, with progress in
        :attr:`VmStatus.transfer`)."""
        raise NotImplementedError

    def cancel_transfer(self, vm: str) -> None:
        raise NotImplementedError

    def open_pointer_surface(self, vm: str) -> None:
        raise NotImplementedError

    def resize_guest_to_surface(self, vm: str) -> None:
        """Make the guest display the size of the VM's pointer surface (opening it first)."""
        raise NotImplementedError

    def quit(self) -> None:
        raise NotImplementedError


def toggle_slot(controller: Controller, vm: str, toggle: Toggle) -> Callable[[bool], None]:
    """A slot taking the checked state, for one VM's switch. (A ``functools.partial`` would
    not do: PySide6 passes it no argument.)"""

    def set_toggle(on: bool) -> None:
        controller.set_toggle(vm, toggle, on)

    return set_toggle
