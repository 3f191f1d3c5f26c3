"""The demo guest: the built-in simulated guest served as a VM, and a window into it.

:class:`DemoGuest` runs a :class:`~vdagent_bridge.demo.GuestServer` on a private socket (the
app connects to it like to any VM) and acts as the guest desktop's clipboard manager would:
when the host offers its clipboard, the guest pastes it at once (text if offered, else PNG),
so the window can show what crossed. :class:`DemoGuestWindow` shows what the guest holds —
its clipboard text or image and where it came from, the pointer position from the mouse
events it recorded, its screen, the files it received — and lets the user copy text or a
test image "in the guest".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QImage, QImageWriter, QPainter, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..demo import GuestServer, SimulatedGuest
from ..demo.guest import GuestSelection, Holder
from ..protocol import ClipboardType, Selection
from .model import Hook

_CB = Selection.CLIPBOARD
_TEXT = ClipboardType.UTF8_TEXT
_PNG = ClipboardType.IMAGE_PNG


@dataclass(frozen=True, slots=True)
class GuestClipboard:
    """What the guest's CLIPBOARD holds, for display."""

    #: "guest" (copied in the guest), "host" (pasted from the host), "" (empty).
    source: str
    text: str | None = None
    image: QImage | None = None
    #: Why there is nothing to show though the host offered something.
    note: str = ""


class DemoGuest:
    """The simulated guest behind a socket at ``path``; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: The guest's state changed (redraw the window).
        self.changed: Hook[[]] = Hook()
        self.guest = SimulatedGuest(on_change=self._guest_changed)
        self.server = GuestServer(path, self.guest)
        self._fetched_for: GuestSelection | None = None
        self._update_pending = False

    @property
    def path(self) -> str:
        return str(self.server.path)

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    # ---------------------------------------------------------------- guest actions

    def copy_text(self, text: str) -> None:
        """A guest application copies ``text``."""
        self.guest.copy(_CB, {_TEXT: text.encode("utf-8")})
        self.server.flush()

    def copy_image(self, image: QImage) -> None:
        """A guest application copies ``image`` (offered as PNG)."""
        array = QByteArray()
        buffer = QBuffer(array)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        QImageWriter(buffer, b"png").write(image)
        buffer.close()
        self.guest.copy(_CB, {_PNG: bytes(array.data())})
        self.server.flush()

    # ---------------------------------------------------------------- state

    def _guest_changed(self) -> None:
        # Called from inside the guest's receive_data: act after it returns.
        if not self._update_pending:
            self._update_pending = True
            QTimer.singleShot(0, self._update)

    def _update(self) -> None:
        self._update_pending = False
        state = self.guest.selections[_CB]
        if state.holder is Holder.HOST and state is not self._fetched_for:
            self._fetched_for = state
            kind = _TEXT if _TEXT in state.data else _PNG if _PNG in state.data else None
            self.guest.pasted.pop(_CB, None)
            if kind is not None and self.guest.paste(_CB, kind):
                self.server.flush()
        self.changed.emit()

    def clipboard(self) -> GuestClipboard:
        """What the guest's clipboard holds now."""
        state = self.guest.selections[_CB]
        if state.holder is Holder.GUEST:
            return _decode("guest", state.data.get(_TEXT), state.data.get(_PNG))
        if state.holder is Holder.HOST:
            pasted = self.guest.pasted.get(_CB)
            if pasted is None:
                return GuestClipboard("host", note="the host offers its clipboard; fetching…")
            kind, data = pasted
            if not data:
                return GuestClipboard("host", note="the host offered its clipboard but sent "
                                      "nothing (switched off, too large or gone)")
            return _decode("host", data if kind == _TEXT else None,
                           data if kind == _PNG else None)
        return GuestClipboard("")

    def pointer(self) -> str:
        """The last pointer position the guest recorded, in words."""
        if not self.guest.mouse:
            return "no pointer events yet"
        last = self.guest.mouse[-1]
        buttons = f", buttons 0x{last.buttons:x}" if last.buttons else ""
        return (f"({last.x}, {last.y}) on display {last.display_id}{buttons} — "
                f"{len(self.guest.mouse)} events")

    def screen(self) -> str:
        return ", ".join(f"{m.width}×{m.height}" for m in self.guest.monitors)

    def files(self) -> str:
        if not self.guest.files:
            return "none"
        return ", ".join(f"{name} ({len(data)} bytes)" for name, data in self.guest.files.items())

    def connected(self) -> bool:
        return self.guest.client_connected


def _decode(source: str, text: bytes | bytearray | None,
            png: bytes | bytearray | None) -> GuestClipboard:
    if text is not None:
        return GuestClipboard(source, text=text.rstrip(b"\0").decode("utf-8", "replace"))
    if png is not None:
        image = QImage()
        if image.loadFromData(png, "PNG"):
            return GuestClipboard(source, image=image)
        return GuestClipboard(source, note="an image that does not decode")
    return GuestClipboard(source, note="data of a type this demo does not show")


def sample_image() -> QImage:
    """A small picture to copy "in the guest"."""
    image = QImage(160, 96, QImage.Format.Format_ARGB32)
    image.fill(QColor("#2f6fd0"))
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(QColor("#f2c12e"))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(QPointF(40, 48), 24, 24)
        painter.setPen(QColor("white"))
        font = QFont()
        font.setPixelSize(16)
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(image.rect().adjusted(70, 0, 0, 0),
                         int(Qt.AlignmentFlag.AlignVCenter), "from the\nguest")
    finally:
        painter.end()
    return image


class DemoGuestWindow(QWidget):
    """Shows what the demo guest holds; copies text or an image "in the guest"."""

    def __init__(self, demo: DemoGuest) -> None:
        super().__init__()
        self._demo = demo
        self.setWindowTitle("Demo guest — vdagent-bridge")
        layout = QVBoxLayout(self)
        intro = QLabel("A simulated VM. Copy something on this desktop and it appears below; "
                       "copy something here and paste it on this desktop.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        form = QFormLayout()
        self.connection_label = QLabel()
        form.addRow("Host:", self.connection_label)
        self.clipboard_source = QLabel()
        form.addRow("Guest clipboard:", self.clipboard_source)
        layout.addLayout(form)
        self.clipboard_view = QLabel()
        self.clipboard_view.setFixedHeight(_VIEW_HEIGHT)
        self.clipboard_view.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.clipboard_view.setWordWrap(True)
        self.clipboard_view.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.clipboard_view.setStyleSheet(
            "QLabel { border: 1px solid palette(mid); padding: 4px; background: palette(base); }"
        )
        layout.addWidget(self.clipboard_view)

        row = QHBoxLayout()
        self.text = QLineEdit("Hello from the guest")
        self.copy = QPushButton("Copy in the guest")
        self.copy.clicked.connect(self._copy_text)
        self.text.returnPressed.connect(self._copy_text)
        self.copy_image = QPushButton("Copy an image")
        self.copy_image.clicked.connect(lambda: demo.copy_image(sample_image()))
        row.addWidget(self.text, 1)
        row.addWidget(self.copy)
        row.addWidget(self.copy_image)
        layout.addLayout(row)

        details = QFormLayout()
        self.pointer_label = QLabel()
        self.screen_label = QLabel()
        self.files_label = QLabel()
        self.files_label.setWordWrap(True)
        details.addRow("Pointer:", self.pointer_label)
        details.addRow("Screen:", self.screen_label)
        details.addRow("Files received:", self.files_label)
        layout.addLayout(details)

        demo.changed.connect(self.refresh)
        self.refresh()
        self.resize(460, 340)

    def _copy_text(self) -> None:
        self._demo.copy_text(self.text.text())

    def refresh(self) -> None:
        demo = self._demo
        self.connection_label.setText("connected" if demo.connected() else "not connected")
        board = demo.clipboard()
        self.clipboard_source.setText({
            "guest": "copied in the guest",
            "host": "pasted from the host",
            "": "empty",
        }[board.source])
        if board.image is not None:
            self.clipboard_view.setPixmap(_thumbnail(board.image))
        elif board.text is not None:
            self.clipboard_view.setText(board.text)
        else:
            self.clipboard_view.setText(f"<i>{board.note}</i>" if board.note else "")
        self.pointer_label.setText(demo.pointer())
        self.screen_label.setText(demo.screen())
        self.files_label.setText(demo.files())

    def close_for_quit(self) -> None:
        self._demo.changed.disconnect(self.refresh)
        self.close()


#: Height of the clipboard view: an image thumbnail (up to 320×96) or a few lines of text.
_VIEW_HEIGHT = 108


def _thumbnail(image: QImage) -> QPixmap:
    pixmap = QPixmap.fromImage(image)
    if pixmap.width() > 320 or pixmap.height() > _VIEW_HEIGHT - 12:
        pixmap = pixmap.scaled(320, _VIEW_HEIGHT - 12, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
    return pixmap
