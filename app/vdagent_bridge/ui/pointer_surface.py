"""The pointer surface: a window standing for one VM's display, to point and click in.

The guest display is drawn letterboxed (its aspect ratio kept) in the window: the guest
screen itself when a screendump source is given (QMP ``screendump``, refreshed a few times a
second while the window shows), otherwise a placeholder saying what the guest display is and
why there is no image. Moves, buttons and the wheel over it go to the guest through a
:class:`~vdagent_bridge.bridges.PointerBridge`, mapped to guest pixels; the keyboard does not
(the vdagent protocol has no keyboard). Files dropped on it are handed to
:attr:`PointerSurface.files_dropped` (the app sends them).

Mapping (device pixels, so it holds with any devicePixelRatio): the guest area is the
largest ``gw·s × gh·s`` rectangle that fits the window's device size, centred, rounded to
whole device pixels (``dw × dh`` at ``ox, oy``). An event at device position ``px`` is in
device pixel column ``c = clamp(floor(px) − ox, 0, dw − 1)`` and maps to guest column
``round_half_up(c · (gw − 1) / (dw − 1))``; likewise for rows. The first and last columns
map to the guest's first and last: guest pixels (0, 0) and (gw − 1, gh − 1) are always
reachable, whatever the scale, and at scale 1 the mapping is the identity. Positions in the
letterbox bars are clamped to the guest's edge.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QCloseEvent,
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QHideEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QShowEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from ..bridges.pointer import PointerBridge
from ..protocol import MouseButton
from .model import Hook

log = logging.getLogger(__name__)

#: Seconds between two screendumps while the surface shows (a tick is skipped while the
#: previous dump still runs).
REFRESH_INTERVAL = 0.25
#: How long a passing status line (a refused drop, a resize asked) stays.
STATUS_SECONDS = 4.0
#: One wheel notch in Qt's angle units (1/8 degree; a notch is 15 degrees).
_NOTCH = 120

KEYBOARD_NOTE = "The keyboard is not forwarded: the vdagent protocol has no keyboard."

_BUTTONS = {
    Qt.MouseButton.LeftButton: MouseButton.LEFT,
    Qt.MouseButton.MiddleButton: MouseButton.MIDDLE,
    Qt.MouseButton.RightButton: MouseButton.RIGHT,
    Qt.MouseButton.BackButton: MouseButton.SIDE,
    Qt.MouseButton.ForwardButton: MouseButton.EXTRA,
}

ScreenSource = Callable[[], Awaitable[QImage | None]]


class PointerSurface(QWidget):
    """One VM's pointer surface; see the module docstring.

    ``screendump``: an async callable returning the guest screen (None: no image this
    time); an exception's message is shown as the reason there is none
    (:class:`~vdagent_bridge.bridges.GuestScreen` is one). The surface owns it: if it has a
    ``close()`` method, :meth:`close_for_quit` calls it.
    """

    def __init__(
        self,
        bridge: PointerBridge,
        vm_name: str,
        *,
        screendump: ScreenSource | None = None,
        parent: QWidget | None = None,
        interval: float = REFRESH_INTERVAL,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.vm_name = vm_name
        self._screendump = screendump
        self.interval = interval
        #: Local files dropped on the surface, to send to the guest.
        self.files_dropped: Hook[[list[Path]]] = Hook()
        self._image: QImage | None = None
        self._scaled: QImage | None = None
        self._scaled_key: tuple[int, int, int, float] | None = None
        self._problem = "" if screendump is not None else "no screen image: the VM has no QMP"
        self._status = ""
        self._transfer = ""
        self._wheel_rest = 0
        self._refresher: asyncio.Task[None] | None = None
        self._dump: asyncio.Task[None] | None = None
        self._closing = False
        #: Counters (tests, diagnostics): dumps shown, ticks skipped while one ran.
        self.dumps = 0
        self.skipped = 0
        self._status_timer = QTimer(self)
        self._status_timer.setSingleShot(True)
        self._status_timer.timeout.connect(self._clear_status)

        self.setWindowTitle(f"{vm_name} — pointer — vdagent-bridge")
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setMinimumSize(160, 120)
        width, height = bridge.guest_size()
        scale = min(1.0, 960 / width, 720 / height)
        self.resize(max(160, round(width * scale)), max(120, round(height * scale)))

    # ---------------------------------------------------------------- geometry

    def device_size(self) -> tuple[int, int]:
        """The surface's size in device pixels."""
        dpr = self.devicePixelRatioF()
        return max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr))

    def guest_area(self) -> tuple[int, int, int, int]:
        """(ox, oy, dw, dh): where the guest display is drawn, in device pixels."""
        width, height = self.device_size()
        gw, gh = self.bridge.guest_size()
        scale = min(width / gw, height / gh)
        dw = max(1, min(width, round(gw * scale)))
        dh = max(1, min(height, round(gh * scale)))
        return (width - dw) // 2, (height - dh) // 2, dw, dh

    def map_to_guest(self, pos: QPointF) -> tuple[int, int]:
        """The guest pixel under widget position ``pos`` (logical; see the module
        docstring for the rounding)."""
        dpr = self.devicePixelRatioF()
        ox, oy, dw, dh = self.guest_area()
        gw, gh = self.bridge.guest_size()
        return (_axis(pos.x() * dpr, ox, dw, gw), _axis(pos.y() * dpr, oy, dh, gh))

    # ---------------------------------------------------------------- actions

    def resize_guest_to_surface(self) -> bool:
        """Ask the guest for a display of the surface's size (device pixels)."""
        width, height = self.device_size()
        if self.bridge.resize_guest(width, height):
            self.show_status(f"asked the guest for a {width}×{height} display")
            return True
        why = self.bridge.unavailable() or "its agent cannot take a display size now"
        self.show_status(f"the guest cannot be resized now: {why}")
        return False

    def set_transfer_text(self, text: str) -> None:
        """The file-transfer status line ("" hides it)."""
        self._transfer = text
        self.update()

    def show_status(self, text: str) -> None:
        """A passing status line (a few seconds)."""
        self._status = text
        self._status_timer.start(round(STATUS_SECONDS * 1000))
        self.update()

    def _clear_status(self) -> None:
        self._status = ""
        self.update()

    def close_for_quit(self) -> None:
        """Really close (the app quits): stop the refresher, remove the dump directory."""
        self._closing = True
        self._stop_refresher()
        close = getattr(self._screendump, "close", None)
        if callable(close):
            close()
        self.close()

    # ---------------------------------------------------------------- screen refresher

    def _start_refresher(self) -> None:
        if self._screendump is None or self._refresher is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.debug("%s: no event loop runs: no screen refresh", self.vm_name)
            return
        self._refresher = loop.create_task(self._refresh(), name=f"{self.vm_name}-screen")

    def _stop_refresher(self) -> None:
        for task in (self._refresher, self._dump):
            if task is not None and not task.done():
                task.cancel()
        self._refresher = self._dump = None

    async def _refresh(self) -> None:
        while True:
            if self._dump is None or self._dump.done():
                self._dump = asyncio.get_running_loop().create_task(
                    self._take_dump(), name=f"{self.vm_name}-screendump"
                )
            else:
                self.skipped += 1
            await asyncio.sleep(self.interval)
            self.update()  # the pointer's availability may have changed

    async def _take_dump(self) -> None:
        assert self._screendump is not None
        try:
            image = await self._screendump()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # shown, not raised: the next tick tries again
            problem = str(err) or type(err).__name__
            if problem != self._problem:
                log.info("%s: %s", self.vm_name, problem)
            self._problem = problem
            self._set_image(None)
            return
        if image is None or image.isNull():
            return
        previous = self._image
        if previous is None or previous.size() != image.size():
            log.info("%s: showing the guest screen (%d×%d)", self.vm_name, image.width(),
                     image.height())
        self._problem = ""
        self.dumps += 1
        self._set_image(image)

    def _set_image(self, image: QImage | None) -> None:
        self._image = image
        self._scaled = None
        self.bridge.set_observed_size(None if image is None else (image.width(),
                                                                  image.height()))
        self.update()

    def current_image(self) -> QImage | None:
        """The guest screen shown now, if any."""
        return self._image

    # ---------------------------------------------------------------- drawing

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        dpr = self.devicePixelRatioF()
        painter.fillRect(self.rect(), QColor("#141414"))
        ox, oy, dw, dh = self.guest_area()
        area = QRectF(ox / dpr, oy / dpr, dw / dpr, dh / dpr)
        image = self._image
        if image is not None:
            key = (int(image.cacheKey()), dw, dh, dpr)
            if self._scaled is None or self._scaled_key != key:
                self._scaled = image.scaled(
                    dw, dh, Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
                self._scaled.setDevicePixelRatio(dpr)
                self._scaled_key = key
            painter.drawImage(area.topLeft(), self._scaled)
        else:
            self._paint_placeholder(painter, area)
        lines = []
        if image is not None and (why := self.bridge.unavailable()):
            lines.append(why)
        lines += [text for text in (self._status, self._transfer) if text]
        if lines:
            self._paint_status(painter, lines)

    def _paint_placeholder(self, painter: QPainter, area: QRectF) -> None:
        painter.fillRect(area, QColor("#26303b"))
        painter.setPen(QPen(QColor("#5b6b7c"), 1))
        painter.drawRect(area.adjusted(0.5, 0.5, -0.5, -0.5))
        gw, gh = self.bridge.guest_size()
        font = QFont(self.font())
        font.setPixelSize(max(11, min(18, round(area.height() / 18))))
        painter.setFont(font)
        painter.setPen(QColor("#dfe6ee"))
        lines = [f"{self.vm_name}: guest display {gw}×{gh}"]
        why = self.bridge.unavailable()
        lines.append(why if why else "moves, clicks and the wheel go to the guest")
        if self._problem:
            lines.append(self._problem)
        elif self._screendump is not None:
            lines.append("waiting for the guest screen…")
        lines.append(KEYBOARD_NOTE)
        lines.append("Drop files here to send them to the guest.")
        painter.drawText(area.adjusted(12, 12, -12, -12),
                         int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                         "\n".join(lines))

    def _paint_status(self, painter: QPainter, lines: list[str]) -> None:
        font = QFont(self.font())
        font.setPixelSize(13)
        painter.setFont(font)
        height = 20 * len(lines) + 8
        box = QRectF(0, self.height() - height, self.width(), height)
        painter.fillRect(box, QColor(0, 0, 0, 170))
        painter.setPen(QColor("#f0f0f0"))
        painter.drawText(box.adjusted(8, 4, -8, -4),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         "\n".join(lines))

    # ---------------------------------------------------------------- pointer

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.bridge.move(*self.map_to_guest(event.position()))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        button = _BUTTONS.get(event.button())
        if button is None:
            event.ignore()
            return
        self.bridge.move(*self.map_to_guest(event.position()))
        self.bridge.press(button)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        # Qt turns a double click's second press into this event: it is a press.
        self.mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        button = _BUTTONS.get(event.button())
        if button is None:
            event.ignore()
            return
        self.bridge.move(*self.map_to_guest(event.position()))
        self.bridge.release(button)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        delta = event.angleDelta()
        if delta.y() == 0:
            event.ignore()  # horizontal only: the protocol has no horizontal wheel
            return
        self.bridge.move(*self.map_to_guest(event.position()))
        # Touchpads send fractions of a notch: keep the rest for the next event.
        self._wheel_rest += delta.y()
        steps = int(self._wheel_rest / _NOTCH)
        self._wheel_rest -= steps * _NOTCH
        if steps:
            self.bridge.wheel(steps)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not event.isAutoRepeat():
            self.show_status(KEYBOARD_NOTE)
        event.ignore()

    # ---------------------------------------------------------------- drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        files, problem = _local_files(event.mimeData().urls() if event.mimeData().hasUrls()
                                      else [])
        if files and not problem:
            event.acceptProposedAction()
            return
        self.show_status(problem or "only files can be dropped here (to send to the guest)")
        event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        mime = event.mimeData()
        files, problem = _local_files(mime.urls() if mime.hasUrls() else [])
        if not files or problem:
            self.show_status(problem or "only files can be dropped here (to send to the guest)")
            event.ignore()
            return
        event.acceptProposedAction()
        self.show_status(f"sending {_count(len(files))} to the guest")
        self.files_dropped.emit(files)

    # ---------------------------------------------------------------- window

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self._start_refresher()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802
        super().hideEvent(event)
        self._stop_refresher()
        # A button held while the window goes away would stay down in the guest.
        self.bridge.release_all()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        # Like the app's other windows: closing hides; the app closes it when it quits.
        if self._closing:
            event.accept()
            return
        event.ignore()
        self.hide()


def _axis(position: float, origin: int, size: int, guest: int) -> int:
    cell = min(max(math.floor(position) - origin, 0), size - 1)
    if size <= 1 or guest <= 1:
        return 0
    return (cell * (guest - 1) * 2 + (size - 1)) // ((size - 1) * 2)


def _local_files(urls: list[QUrl]) -> tuple[list[Path], str]:
    """The dropped URLs as local files; a problem text if any is not one."""
    files: list[Path] = []
    for url in urls:
        if not url.isLocalFile():
            return [], "only local files can be sent to the guest (not links)"
        path = Path(url.toLocalFile())
        if path.is_dir():
            return [], f"{path.name}: folders cannot be sent, only files"
        files.append(path)
    return files, ""


def _count(n: int) -> str:
    return "1 file" if n == 1 else f"{n} files"
