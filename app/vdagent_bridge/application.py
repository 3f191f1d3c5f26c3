"""The composition root of the desktop app: VMs, the clipboard bridge and the UI, on qasync.

What it builds, from :class:`Options` (the command line over the config file):

- one :class:`~vdagent_bridge.runtime.VmRuntime` per VM, its events routed to the
  :class:`~vdagent_bridge.bridges.ClipboardBridge` (on the host's QClipboard) and its runstate
  to the UI and the notifications;
- per VM a :class:`~vdagent_bridge.bridges.pointer.PointerBridge`, and its pointer surface
  window when the user opens it (``--pointer-surface``, the tray); files dropped on the
  surface or picked from the tray go to the guest one batch after another, with progress;
- in demo mode (``--demo``, or no VM configured at all), a :class:`DemoGuest` on a private
  socket as a VM named ``demo``, and its window;
- the tray icon, or the fallback window where there is no tray (or with ``--no-tray``).

Each VM's switches come from the config file's policy, then the user's saved settings
(:class:`~vdagent_bridge.state.settings.Settings`), then the command line. A switch flipped
in the UI is saved at once and applied to the bridge at once; a paused VM (or the global
pause) crosses nothing, whatever its direction switches say.

Every task has an owner: the runtimes' ``run()`` tasks and the reconnect helpers are kept
here and awaited on the way out. Shutdown goes in order: the UI goes away, the bridge stops
following the clipboard, the runtimes stop (each saves its conversation), the demo guest
closes; the settings were saved at every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PySide6 import __version__ as pyside_version
from PySide6.QtGui import QClipboard, QGuiApplication
from PySide6.QtWidgets import QSystemTrayIcon

from . import __version__
from .bridges import ClipboardBridge, ClipboardPolicy
from .bridges.pointer import GuestScreen, PointerBridge
from .display import Backend
from .options import Options, switches_for
from .protocol import Event
from .runtime import (
    Endpoint,
    Runstate,
    Site,
    VmRuntime,
    backoff,
)
from .runtime.filequeue import FileQueue
from .sites import LibvirtSite, describe
from .state import StateStore
from .state.config import VmConfig
from .state.settings import Autostart, Settings
from .ui.demo_guest import DemoGuest, DemoGuestWindow
from .ui.desktop import desktop_note
from .ui.model import Controller, DesktopNote, Level, Toggle, VmStatus
from .ui.pointer_surface import PointerSurface
from .ui.tray import Tray
from .ui.window import MainWindow
from .ui.wording import level_of, runstate_notice, vm_detail

log = logging.getLogger(__name__)

#: The demo guest's VM name.
DEMO_VM = "demo"
#: The settings file, in the state directory.
SETTINGS_FILE = "settings.json"
#: With no tray at start, how long the app keeps looking for one to appear (a panel started
#: after the app, as at login), and how often.
TRAY_WAIT = 120.0
TRAY_POLL = 1.0


@dataclass(slots=True)
class _Vm:
    """One VM and its switches."""

    config: VmConfig
    runtime: VmRuntime
    switches: dict[str, bool]
    pointer: PointerBridge
    files: FileQueue
    task: asyncio.Task[None] | None = None
    #: The runstate the UI last heard of (to word the notifications).
    shown: Runstate = Runstate.IDLE
    migrations_seen: int = 0
    reconnecting: bool = False
    #: Its pointer surface, made when first opened (it owns its screen source).
    surface: PointerSurface | None = None
    #: The file transfer in progress, in words, for the UI ("" when none).
    transfer: str = ""

    @property
    def name(self) -> str:
        return self.config.name


class Application(Controller):
    """The running app; see the module docstring. :meth:`run` is its whole life."""

    def __init__(
        self,
        options: Options,
        *,
        clipboard: QClipboard | None = None,
        tray_available: bool | Callable[[], bool] | None = None,
        delays: Callable[[], Iterator[float]] = backoff,
    ) -> None:
        super().__init__()
        self.options = options
        self._clipboard = clipboard or QGuiApplication.clipboard()
        # A fixed answer (tests), or a probe asked at start and, without a tray, again until
        # one appears (:data:`TRAY_WAIT`).
        self._tray_probe: Callable[[], bool]
        if tray_available is None:
            self._tray_probe = QSystemTrayIcon.isSystemTrayAvailable
        elif callable(tray_available):
            self._tray_probe = tray_available
        else:
            fixed = bool(tray_available)
            self._tray_probe = lambda: fixed
        self._watch_tray = tray_available is None or callable(tray_available)
        #: Whether the desktop has a tray (used or not: ``--no-tray``), for the desktop note.
        self._tray_exists = False
        self._delays = delays
        self.settings = Settings.load(options.paths.state / SETTINGS_FILE)
        self.autostart = Autostart(options.autostart_command, options.autostart_dir)
        self._store = StateStore(options.paths.vm_state)
        self._vms: dict[str, _Vm] = {}
        self._helpers: set[asyncio.Task[None]] = set()
        self._quit = asyncio.Event()
        self._stopping = False
        self.bridge: ClipboardBridge | None = None
        self.tray: Tray | None = None
        self.window: MainWindow | None = None
        self.demo: DemoGuest | None = None
        self.demo_window: DemoGuestWindow | None = None
        self._demo_dir: str | None = None

    # ---------------------------------------------------------------- life

    async def run(self) -> int:
        """Start, run until :meth:`quit` (or ``seconds``), shut down in order. Returns the
        exit status."""
        try:
            await self._start()
            if self.options.seconds is None:
                await self._quit.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._quit.wait(), self.options.seconds)
        finally:
            await self._shutdown()
        return 0

    async def _start(self) -> None:
        options = self.options
        vms = list(options.vms)
        if options.demo:
            self._demo_dir = tempfile.mkdtemp(prefix="vdagent-bridge-demo-",
                                              dir=_runtime_dir())
            self.demo = DemoGuest(Path(self._demo_dir) / "guest.sock")
            await self.demo.start()
            site = Site(Endpoint("unix", path=self.demo.path))
            vms = [VmConfig(DEMO_VM, (site,), options.demo_policy)]
        # Under XWayland an unreadable host change may be the compositor refusing the read:
        # it must not take the guests' clipboard away (bridges/clipboard.py).
        backend = options.backend.backend if options.backend is not None else None
        self.bridge = ClipboardBridge(self._clipboard, refusals=backend is Backend.XWAYLAND)
        self.bridge.notice.connect(self._on_notice)
        for config in vms:
            self._add_vm(config)
        self._show_ui()
        if options.pointer_surface:
            for name in self._vms:
                self.open_pointer_surface(name)
        if self.settings.problem is not None:
            self._notify("Settings", self.settings.problem, Level.WARNING)
        self.changed.emit()

    def _add_vm(self, config: VmConfig) -> None:
        assert self.bridge is not None
        session = None
        if self.options.imported is not None and self.options.imported[0] == config.name:
            session = self.options.imported[1]
        runtime = VmRuntime(
            config.name,
            list(config.sites),
            session=session,
            takeover=session is not None,
            # The demo guest lives as long as this process: nothing of it is worth keeping.
            store=None if self.options.demo else self._store,
            on_event=partial(self._on_event, config.name),
            on_runstate=partial(self._on_runstate, config.name),
            delays=self._delays,
        )
        switches = switches_for(config.policy, self.settings.vm(config.name),
                                self.options.overrides)
        vm = _Vm(config, runtime, switches,
                 PointerBridge(runtime, guest_size=config.policy.display),
                 FileQueue(config.name, runtime.send_files,
                           progress=lambda text: self._set_transfer(
                               self._vms[config.name], text),
                           outcome=lambda text, severity: self._notify(
                               config.name, text, level_of(severity))))
        vm.pointer.set_enabled(self._pointer_on(vm))
        self._vms[config.name] = vm
        self.bridge.add_vm(runtime, self._clipboard_policy(vm))
        self._start_runtime(vm)

    def _start_runtime(self, vm: _Vm) -> None:
        task = asyncio.get_running_loop().create_task(vm.runtime.run(),
                                                      name=f"{vm.name}-runtime")
        task.add_done_callback(partial(self._runtime_done, vm))
        vm.task = task

    def _runtime_done(self, vm: _Vm, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        log.error("%s: the connection loop stopped on an error", vm.name, exc_info=err)
        self._notify(vm.name, f"stopped on an internal error: {err!r}", Level.ERROR)
        self.changed.emit()

    def _show_ui(self) -> None:
        # Closing a window (the demo guest's, an About box) must not end the Qt loop under
        # the asyncio one: quitting goes through quit() and the ordered shutdown.
        QGuiApplication.setQuitOnLastWindowClosed(False)
        available = self._tray_probe()
        self._tray_exists = available
        if self.demo is not None:  # first: the tray and the window offer to show it
            self.demo_window = DemoGuestWindow(self.demo)
        if self.options.tray and available:
            self.tray = Tray(self)
            self.tray.show()
        else:
            if self.options.tray:
                log.info("no system tray on this desktop: showing a window instead")
                if self._watch_tray:
                    self._spawn(self._await_tray(), "await-tray")
            self.window = MainWindow(self)
            self.window.show()
        if self.demo_window is not None:
            self.demo_window.show()

    async def _await_tray(self) -> None:
        """Move to the tray when one appears after the start: at login the app may start
        before the panel that hosts the tray."""
        loop = asyncio.get_running_loop()
        end = loop.time() + TRAY_WAIT
        while loop.time() < end and not self._stopping:
            await asyncio.sleep(TRAY_POLL)
            if self._stopping or not self._tray_probe():
                continue
            log.info("a system tray appeared: moving to the tray")
            self._tray_exists = True
            self.tray = Tray(self)
            self.tray.show()
            if self.window is not None:
                self.window.close_for_quit()
                self.window.deleteLater()
                self.window = None
            self.changed.emit()
            return

    async def _shutdown(self) -> None:
        self._stopping = True
        # 1. The UI: nothing can ask for anything any more.
        if self.tray is not None:
            self.tray.close()
        for window in (self.window, self.demo_window):
            if window is not None:
                window.close_for_quit()
                window.deleteLater()
        for vm in self._vms.values():
            if vm.surface is not None:
                vm.surface.close_for_quit()
                vm.surface.deleteLater()
                vm.surface = None
            vm.pointer.close()
        # 2. The bridge stops following the host clipboard (what is on it stays).
        if self.bridge is not None:
            self.bridge.close()
        # 3. File transfers (the guests are told), helpers (reconnects), then the runtimes,
        # newest first; each saves its state.
        for vm in self._vms.values():
            await vm.files.close()
        for helper in list(self._helpers):
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
        for vm in reversed(self._vms.values()):
            await vm.runtime.stop()
        for vm in reversed(self._vms.values()):
            if vm.task is not None:
                with contextlib.suppress(Exception):
                    await vm.task  # its error was reported by _runtime_done
        # 4. The demo guest.
        if self.demo is not None:
            await self.demo.close()
        if self._demo_dir is not None:
            shutil.rmtree(self._demo_dir, ignore_errors=True)
        # 5. Settings are saved at every change; retry one that failed.
        if self.settings.dirty:
            with contextlib.suppress(OSError):
                self.settings.save()

    def quit(self) -> None:
        self._quit.set()

    # ---------------------------------------------------------------- runtime → bridge, UI

    def _on_event(self, name: str, event: Event) -> None:
        if self.bridge is not None:
            self.bridge.handle_event(name, event)

    def _on_runstate(self, name: str, state: Runstate) -> None:
        vm = self._vms.get(name)
        if vm is None:
            return
        previous, vm.shown = vm.shown, state
        runtime = vm.runtime
        notice = runstate_notice(
            state, previous, migrated=runtime.migrations > vm.migrations_seen,
            where=self._where(vm), site=runtime.site, failure=runtime.failure,
            reconnecting=vm.reconnecting, waiting=self._waiting(vm),
        )
        if state is Runstate.CONNECTED:
            vm.migrations_seen = runtime.migrations
        if notice is not None:
            self._notify(name, *notice)
        if not self._stopping:
            self.changed.emit()

    def _on_notice(self, text: str) -> None:
        self._notify("Clipboard", text, Level.WARNING)

    def _notify(self, title: str, text: str, level: Level) -> None:
        log.log(logging.WARNING if level is not Level.INFO else logging.INFO,
                "%s: %s", title, text)
        if not self._stopping:
            self.notify.emit(title, text, level.value)

    # ---------------------------------------------------------------- policy

    def _clipboard_policy(self, vm: _Vm) -> ClipboardPolicy:
        switches = vm.switches
        paused = self.settings.paused or switches["paused"]
        return ClipboardPolicy(
            to_guest=switches["to_guest"] and not paused,
            to_host=switches["to_host"] and not paused,
            primary=switches["primary"],
            max_to_guest=vm.config.policy.max_to_guest,
            max_to_host=vm.config.policy.max_to_host,
        )

    def _pointer_on(self, vm: _Vm) -> bool:
        return vm.switches["pointer"] and not (self.settings.paused or vm.switches["paused"])

    def _apply(self, vm: _Vm) -> None:
        if self.bridge is None or self._stopping:
            return
        vm.pointer.set_enabled(self._pointer_on(vm))
        policy = self._clipboard_policy(vm)
        if self.bridge.policy(vm.name) != policy:
            self.bridge.set_policy(vm.name, policy)

    def _save(self, save: Callable[[], None]) -> None:
        try:
            save()
        except OSError as err:
            self._notify("Settings", f"cannot save {self.settings.path}: "
                         f"{err.strerror or err}; the change lasts until quit", Level.ERROR)

    # ---------------------------------------------------------------- Controller

    def vms(self) -> Sequence[VmStatus]:
        return [self._status(vm) for vm in self._vms.values()]

    def _status(self, vm: _Vm) -> VmStatus:
        s = vm.switches
        return VmStatus(vm.name, vm.runtime.runstate, self._detail(vm), s["to_guest"],
                        s["to_host"], s["primary"], s["paused"], pointer=s["pointer"],
                        transfer=vm.transfer)

    def _detail(self, vm: _Vm) -> str:
        runtime = vm.runtime
        site = runtime.site
        return vm_detail(runtime.runstate, site=site, where=self._where(vm),
                         failure=runtime.failure,
                         follows_migrations=isinstance(site, LibvirtSite)
                         or site.qmp is not None, waiting=self._waiting(vm))

    @staticmethod
    def _waiting(vm: _Vm) -> str | None:
        """Why a libvirt VM waits to reconnect (libvirt knows: shut down, saved, gone...);
        a QEMU socket's status line says what it knows itself."""
        runtime = vm.runtime
        return runtime.waiting_reason if isinstance(runtime.site, LibvirtSite) else None

    def _where(self, vm: _Vm) -> str:
        """Where a VM is connected, in words."""
        if self.demo is not None and vm.name == DEMO_VM:
            return "the built-in demo guest"
        return describe(vm.runtime.site)

    def desktop_note(self) -> DesktopNote | None:
        return desktop_note(self.options.backend, QGuiApplication.platformName(),
                            selection=self._clipboard.supportsSelection(),
                            tray=self._tray_exists)

    def switches(self, name: str) -> Mapping[str, bool]:
        """A VM's switches."""
        return dict(self._vms[name].switches)

    def paused(self) -> bool:
        return self.settings.paused

    def primary_supported(self) -> bool:
        return self._clipboard.supportsSelection()

    def set_toggle(self, vm: str, toggle: Toggle, on: bool) -> None:
        entry = self._vms.get(vm)
        if entry is None:
            return
        entry.switches[toggle.value] = bool(on)
        self._save(partial(self.settings.set_vm, vm, **{toggle.value: bool(on)}))
        self._apply(entry)
        self.changed.emit()

    def set_paused(self, paused: bool) -> None:
        self._save(partial(self.settings.set_paused, bool(paused)))
        for vm in self._vms.values():
            self._apply(vm)
        self.changed.emit()

    def reconnect(self, vm: str) -> None:
        entry = self._vms.get(vm)
        if entry is None or entry.reconnecting or self._stopping:
            return
        entry.reconnecting = True  # now: a second click before the task runs is ignored
        self._spawn(self._reconnect(entry), f"{vm}-reconnect")

    async def _reconnect(self, vm: _Vm) -> None:
        """Stop the VM's loop and start it again: a fresh connection now, even while it was
        waiting out a back-off delay or had failed."""
        try:
            await vm.runtime.stop()
            if vm.task is not None:
                with contextlib.suppress(Exception):
                    await vm.task
            if not self._stopping:
                self._start_runtime(vm)
        finally:
            vm.reconnecting = False

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)
        return task

    # ---------------------------------------------------------------- pointer surface

    def open_pointer_surface(self, vm: str) -> None:
        entry = self._vms.get(vm)
        if entry is None or self._stopping:
            return
        if entry.surface is None:
            screendump = None
            if any(site.qmp is not None for site in entry.runtime.sites):
                screendump = GuestScreen(entry.runtime)
            entry.surface = PointerSurface(entry.pointer, vm, screendump=screendump)
            entry.surface.files_dropped.connect(partial(self.send_files, vm))
            entry.surface.set_transfer_text(entry.transfer)
        entry.surface.show()
        entry.surface.raise_()
        entry.surface.activateWindow()

    def resize_guest_to_surface(self, vm: str) -> None:
        entry = self._vms.get(vm)
        if entry is None or self._stopping:
            return
        self.open_pointer_surface(vm)
        assert entry.surface is not None
        if not entry.surface.resize_guest_to_surface():
            why = entry.pointer.unavailable() or "its agent cannot take a display size now"
            self._notify(vm, f"cannot resize the guest display: {why}", Level.WARNING)

    # ---------------------------------------------------------------- file transfer

    def send_files(self, vm: str, paths: Sequence[Path]) -> None:
        """Queue a batch of files for the guest; batches go one after another."""
        entry = self._vms.get(vm)
        if entry is None or not paths or self._stopping:
            return
        log.info("%s: sending %s", vm, ", ".join(str(p) for p in paths))
        entry.files.add(paths)

    def cancel_transfer(self, vm: str) -> None:
        entry = self._vms.get(vm)
        if entry is not None:
            entry.files.cancel()

    def _set_transfer(self, vm: _Vm, text: str) -> None:
        if text == vm.transfer:
            return
        vm.transfer = text
        if vm.surface is not None and not self._stopping:
            vm.surface.set_transfer_text(text)
        if not self._stopping:
            self.changed.emit()

    def autostart_enabled(self) -> bool:
        return self.autostart.enabled()

    def set_autostart(self, enabled: bool) -> None:
        try:
            self.autostart.set_enabled(bool(enabled))
        except OSError as err:
            self._notify("Start at login", f"cannot write {self.autostart.path}: "
                         f"{err.strerror or err}", Level.ERROR)
        self.changed.emit()

    def has_demo_guest(self) -> bool:
        return self.demo_window is not None

    def show_demo_guest(self) -> None:
        if self.demo_window is not None:
            self.demo_window.show()
            self.demo_window.raise_()
            self.demo_window.activateWindow()

    def about_text(self) -> str:
        paths = self.options.paths
        return (
            f"<b>vdagent-bridge {html.escape(__version__)}</b><br>"
            "Clipboard between this desktop and QEMU virtual machines, through their SPICE "
            "guest agent (spice-vdagent).<br><br>"
            f"Configuration: {html.escape(str(paths.config / 'config.toml'))}<br>"
            f"State: {html.escape(str(paths.state))}<br>"
            f"Python {sys.version.split()[0]}, PySide6 {html.escape(pyside_version)}, "
            f"Qt platform {html.escape(QGuiApplication.platformName())}<br><br>"
            "License: GPL-3.0-or-later"
        )


def _runtime_dir() -> str | None:
    """``$XDG_RUNTIME_DIR`` when usable (private, in memory), else the temp dir."""
    directory = os.environ.get("XDG_RUNTIME_DIR")
    return directory if directory and os.path.isdir(directory) else None
