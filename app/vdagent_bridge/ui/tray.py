"""The tray icon: the app's state at a glance, its switches in a menu, its notifications.

The icon follows :attr:`Controller.changed` (connected, connecting, migrating, error, paused;
see :func:`~vdagent_bridge.ui.model.overall_icon_state`). The menu is rebuilt from the
controller each time it is about to show (Vorta's pattern), so it never shows a stale state;
with more than :data:`INLINE_VMS` VMs each VM gets a submenu whose title is its status line.
A left click opens the same menu (XEmbed trays only open it on a right click).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import shiboken6
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QCursor
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QSystemTrayIcon, QWidget

from .icons import status_icon
from .model import (
    TOGGLE_LABELS,
    Controller,
    Level,
    Toggle,
    VmStatus,
    overall_icon_state,
    toggle_slot,
    vm_icon_state,
)

#: Up to this many VMs are listed in the menu itself; more get a submenu each.
INLINE_VMS = 2

#: How long a notification stays, in milliseconds.
MESSAGE_MS = 6000

_MESSAGE_ICONS = {
    Level.INFO: QSystemTrayIcon.MessageIcon.Information,
    Level.WARNING: QSystemTrayIcon.MessageIcon.Warning,
    Level.ERROR: QSystemTrayIcon.MessageIcon.Critical,
}


class Tray(QObject):
    """The QSystemTrayIcon and its menu, for one :class:`Controller`."""

    def __init__(self, controller: Controller, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._controller = controller
        self.icon = QSystemTrayIcon(self)
        self.menu = QMenu()
        self._submenus: list[QMenu] = []
        self._about: QMessageBox | None = None
        self._picker: QFileDialog | None = None
        # The desktop note and the long status lines say more in their tooltips.
        self.menu.setToolTipsVisible(True)
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        controller.changed.connect(self.refresh)
        controller.notify.connect(self.show_message)
        self.rebuild_menu()
        self.refresh()

    def show(self) -> None:
        self.icon.show()

    def close(self) -> None:
        """Take the icon off the tray and let go of the controller (at shutdown)."""
        self._controller.changed.disconnect(self.refresh)
        self._controller.notify.disconnect(self.show_message)
        self.icon.hide()
        for box in (self._about, self._picker):
            if box is not None and shiboken6.isValid(box):
                box.close()
        self.menu.close()
        self.menu.deleteLater()

    # ---------------------------------------------------------------- icon

    def refresh(self) -> None:
        """Redraw the icon and its tooltip."""
        vms = self._controller.vms()
        paused = self._controller.paused()
        self.icon.setIcon(status_icon(overall_icon_state(vms, paused)))
        lines = ["vdagent-bridge" + (" — paused" if paused else "")]
        lines += [f"{vm.name}: {_state_words(vm)}" for vm in vms]
        self.icon.setToolTip("\n".join(lines))

    def show_message(self, title: str, text: str, level: str) -> None:
        self.icon.showMessage(title, text, _MESSAGE_ICONS[Level(level)], MESSAGE_MS)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.menu.popup(QCursor.pos())

    # ---------------------------------------------------------------- menu

    def rebuild_menu(self) -> None:
        """Fill the menu from the controller's current state."""
        menu = self.menu
        menu.clear()
        for submenu in self._submenus:
            submenu.deleteLater()
        self._submenus.clear()
        controller = self._controller
        vms = controller.vms()
        paused = controller.paused()
        note = controller.desktop_note()
        if note is not None:
            line = menu.addAction(note.summary)
            line.setToolTip("\n".join(note.details))
            line.setEnabled(False)
            menu.addSeparator()
        for vm in vms:
            if len(vms) > INLINE_VMS:
                submenu = menu.addMenu(status_icon(vm_icon_state(vm, paused)),
                                       f"{vm.name}: {_state_words(vm)}")
                self._submenus.append(submenu)
                self._add_vm(submenu, vm, paused, with_status=False)
            else:
                self._add_vm(menu, vm, paused, with_status=True)
                menu.addSeparator()
        if len(vms) > INLINE_VMS:
            menu.addSeparator()

        pause = menu.addAction("Pause all VMs")
        pause.setCheckable(True)
        pause.setChecked(paused)
        pause.triggered.connect(controller.set_paused)
        autostart = menu.addAction("Start at login")
        autostart.setCheckable(True)
        autostart.setChecked(controller.autostart_enabled())
        autostart.triggered.connect(controller.set_autostart)
        if controller.has_demo_guest():
            menu.addAction("Show the demo guest").triggered.connect(
                lambda: controller.show_demo_guest()
            )
        menu.addSeparator()
        menu.addAction("About vdagent-bridge").triggered.connect(self._show_about)
        menu.addAction("Quit").triggered.connect(lambda: controller.quit())

    def _show_about(self) -> None:
        # Parentless: the box lives as long as this reference (Python owns it).
        if self._about is not None and shiboken6.isValid(self._about):
            self._about.close()
        self._about = show_about(None, self._controller.about_text())

    def _add_vm(self, menu: QMenu, vm: VmStatus, paused: bool, *, with_status: bool) -> None:
        controller = self._controller
        if with_status:
            status = menu.addAction(status_icon(vm_icon_state(vm, paused)),
                                    f"{vm.name}: {_state_words(vm)}")
            status.setEnabled(False)
        if vm.detail:
            detail = menu.addAction(elide(vm.detail))
            detail.setToolTip(vm.detail)
            detail.setEnabled(False)
        for toggle, label in TOGGLE_LABELS.items():
            action = menu.addAction(label)
            action.setCheckable(True)
            action.setChecked(vm.value(toggle))
            if toggle is Toggle.PRIMARY and not controller.primary_supported():
                action.setText(f"{label} (not on this display)")
                action.setEnabled(False)
            action.triggered.connect(toggle_slot(controller, vm.name, toggle))
        name = vm.name
        if vm.transfer:
            progress = menu.addAction(elide(vm.transfer))
            progress.setToolTip(vm.transfer)
            progress.setEnabled(False)
            menu.addAction("Cancel file transfer").triggered.connect(
                lambda: controller.cancel_transfer(name))
        menu.addAction("Send file to guest…").triggered.connect(
            lambda: self.pick_files(name))
        menu.addAction("Open pointer surface").triggered.connect(
            lambda: controller.open_pointer_surface(name))
        menu.addAction("Resize guest to surface").triggered.connect(
            lambda: controller.resize_guest_to_surface(name))
        menu.addAction(f"Reconnect {name}").triggered.connect(
            lambda: controller.reconnect(name)
        )

    def pick_files(self, vm: str) -> QFileDialog:
        """Ask for files to send to ``vm`` (a non-modal dialog: a modal one would nest an
        event loop inside a Qt slot, under the asyncio loop)."""
        if self._picker is not None and shiboken6.isValid(self._picker):
            self._picker.close()
        self._picker = pick_files(None, vm, self._controller.send_files)
        return self._picker

    def actions(self) -> list[QAction]:
        """The menu's actions, submenus' included (for tests and screenshots)."""
        found: list[QAction] = []
        for action in self.menu.actions():
            found.append(action)
            sub = action.menu()
            if isinstance(sub, QMenu):
                found += sub.actions()
        return found


def show_about(parent: QWidget | None, text: str) -> QMessageBox:
    """The About box, non-modal (a modal one would nest an event loop inside a Qt slot)."""
    box = QMessageBox(QMessageBox.Icon.Information, "About vdagent-bridge", text,
                      QMessageBox.StandardButton.Close, parent)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setModal(False)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.show()
    return box


def pick_files(parent: QWidget | None, vm: str,
               send: Callable[[str, list[Path]], None]) -> QFileDialog:
    """A file dialog whose chosen files go to ``send(vm, paths)``; shown, not run."""
    dialog = QFileDialog(parent, f"Send files to {vm}")
    dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptOpen)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def chosen(files: list[str]) -> None:
        send(vm, [Path(f) for f in files])

    dialog.filesSelected.connect(chosen)
    dialog.show()
    return dialog


def _state_words(vm: VmStatus) -> str:
    return vm.state_text + (", paused" if vm.paused else "")


def elide(text: str, limit: int = 60) -> str:
    """``text`` shortened in the middle (a socket path's start and its file name both tell)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]

