"""The small window used where there is no system tray (or with ``--no-tray``).

It offers what the tray menu offers — per VM its status and switches and a reconnect
button, the global pause, start at login, about, quit — and shows the latest notification in
its bottom line, since there is no tray to show it. Closing the window quits the app (there is
no tray to return to).
"""

from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

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
from .tray import elide, pick_files, show_about

_LEVEL_COLORS = {Level.INFO: "", Level.WARNING: "#9a6700", Level.ERROR: "#c0281f"}


class _VmBox(QGroupBox):
    """One VM: status line, switches, file transfer, pointer surface, reconnect."""

    def __init__(self, controller: Controller, vm: VmStatus) -> None:
        super().__init__(vm.name)
        self.name = vm.name
        layout = QVBoxLayout(self)
        status_row = QHBoxLayout()
        self.status_icon = QLabel()
        self.status = QLabel()
        font = self.status.font()
        font.setBold(True)
        self.status.setFont(font)
        status_row.addWidget(self.status_icon)
        status_row.addWidget(self.status, 1)
        layout.addLayout(status_row)
        self.detail = QLabel()
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout.addWidget(self.detail)
        self.toggles: dict[Toggle, QCheckBox] = {}
        for toggle, label in TOGGLE_LABELS.items():
            box = QCheckBox(label)
            box.clicked.connect(toggle_slot(controller, vm.name, toggle))
            layout.addWidget(box)
            self.toggles[toggle] = box
        transfer_row = QHBoxLayout()
        self.transfer = QLabel()
        self.transfer.setWordWrap(True)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(lambda: controller.cancel_transfer(self.name))
        transfer_row.addWidget(self.transfer, 1)
        transfer_row.addWidget(self.cancel)
        layout.addLayout(transfer_row)
        self.send = QPushButton("Send files…")
        self.send.clicked.connect(
            lambda: pick_files(self, self.name, controller.send_files))
        self.surface = QPushButton("Pointer surface")
        self.surface.clicked.connect(lambda: controller.open_pointer_surface(self.name))
        self.resize_guest = QPushButton("Resize guest")
        self.resize_guest.setToolTip("Make the guest display the size of the pointer surface")
        self.resize_guest.clicked.connect(
            lambda: controller.resize_guest_to_surface(self.name))
        self.reconnect = QPushButton("Reconnect")
        self.reconnect.clicked.connect(lambda: controller.reconnect(self.name))
        row = QHBoxLayout()
        for button in (self.send, self.surface, self.resize_guest, self.reconnect):
            row.addWidget(button)
        row.addStretch(1)
        layout.addLayout(row)
        if not controller.primary_supported():
            primary = self.toggles[Toggle.PRIMARY]
            primary.setEnabled(False)
            primary.setText(f"{TOGGLE_LABELS[Toggle.PRIMARY]} (not on this display)")

    def update_from(self, vm: VmStatus, paused: bool) -> None:
        self.status_icon.setPixmap(status_icon(vm_icon_state(vm, paused)).pixmap(16, 16))
        self.status.setText(vm.state_text + (", paused" if vm.paused else ""))
        self.detail.setText(elide(vm.detail))
        self.detail.setToolTip(vm.detail)
        self.detail.setVisible(bool(vm.detail))
        for toggle, box in self.toggles.items():
            box.setChecked(vm.value(toggle))
        self.transfer.setText(vm.transfer)
        self.transfer.setVisible(bool(vm.transfer))
        self.cancel.setVisible(bool(vm.transfer))


class MainWindow(QWidget):
    """The fallback window for one :class:`Controller`."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self._controller = controller
        self._closing = False
        self.setWindowTitle("vdagent-bridge")
        layout = QVBoxLayout(self)
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        note = controller.desktop_note()
        self.note = QLabel()
        self.note.setWordWrap(True)
        if note is not None:
            self.note.setText(f"<b>{html.escape(note.summary)}</b><br>"
                              + "<br>".join(html.escape(d) for d in note.details))
        self.note.setVisible(note is not None)
        layout.addWidget(self.note)
        self._vm_layout = QVBoxLayout()
        layout.addLayout(self._vm_layout)
        self.vm_boxes: dict[str, _VmBox] = {}

        self.pause = QCheckBox("Pause all VMs")
        self.pause.clicked.connect(controller.set_paused)
        self.autostart = QCheckBox("Start at login")
        self.autostart.clicked.connect(controller.set_autostart)
        layout.addWidget(self.pause)
        layout.addWidget(self.autostart)

        buttons = QHBoxLayout()
        self.demo_button: QPushButton | None = None
        if controller.has_demo_guest():
            self.demo_button = QPushButton("Demo guest…")
            self.demo_button.clicked.connect(lambda: controller.show_demo_guest())
            buttons.addWidget(self.demo_button)
        self.about = QPushButton("About")
        self.about.clicked.connect(lambda: show_about(self, controller.about_text()))
        self.quit_button = QPushButton("Quit")
        self.quit_button.clicked.connect(lambda: controller.quit())
        buttons.addStretch(1)
        buttons.addWidget(self.about)
        buttons.addWidget(self.quit_button)
        layout.addLayout(buttons)

        self.message = QLabel()
        self.message.setWordWrap(True)
        # Room for a size notice (two or three lines) from the start: a top-level window does
        # not grow for a wrapped label's new height.
        self.message.setMinimumHeight(self.message.fontMetrics().lineSpacing() * 3)
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # A long message wraps to the window's width rather than widening the window.
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)

        controller.changed.connect(self.refresh)
        controller.notify.connect(self.show_message)
        self.refresh()

    def refresh(self) -> None:
        """Bring every control up to date with the controller."""
        controller = self._controller
        vms = controller.vms()
        paused = controller.paused()
        if [vm.name for vm in vms] != list(self.vm_boxes):
            for box in self.vm_boxes.values():
                box.deleteLater()
            self.vm_boxes = {}
            for vm in vms:
                box = _VmBox(controller, vm)
                self._vm_layout.addWidget(box)
                self.vm_boxes[vm.name] = box
        for vm in vms:
            self.vm_boxes[vm.name].update_from(vm, paused)
        self.pause.setChecked(paused)
        self.autostart.setChecked(controller.autostart_enabled())
        self.setWindowIcon(status_icon(overall_icon_state(vms, paused)))

    def show_message(self, title: str, text: str, level: str) -> None:
        color = _LEVEL_COLORS[Level(level)]
        self.message.setStyleSheet(f"color: {color}" if color else "")
        self.message.setText(f"{time.strftime('%H:%M:%S')} {title}: {text}")

    def close_for_quit(self) -> None:
        """Close without asking the controller to quit (it is quitting)."""
        self._closing = True
        self._controller.changed.disconnect(self.refresh)
        self._controller.notify.disconnect(self.show_message)
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        event.accept()
        if not self._closing:
            self._controller.quit()
