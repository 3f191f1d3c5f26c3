"""The status icons, drawn with QPainter at each size a tray asks for.

One shape per state, so the state reads without colour too: a rounded square in the state's
colour with a white glyph — a tick (connected), three dots (connecting), an arrow
(migrating), an exclamation mark (error), two bars (paused). Drawn per size, on a 16-unit grid
scaled to the pixmap, with a darker rim so it stands out on light and dark panels alike;
readable from 16 px up.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from .model import IconState

#: Fill colours (tick green, amber, blue, red, grey).
COLORS = {
    IconState.CONNECTED: QColor("#2e9e4f"),
    IconState.CONNECTING: QColor("#d99400"),
    IconState.MIGRATING: QColor("#2f6fd0"),
    IconState.ERROR: QColor("#d0342c"),
    IconState.PAUSED: QColor("#737a84"),
}

#: Sizes drawn into each icon (tray hosts use 16–24 px, SNI hosts may ask for more).
SIZES = (16, 20, 22, 24, 32, 48, 64)


def draw(state: IconState, size: int) -> QPixmap:
    """The icon of ``state`` as a ``size``×``size`` pixmap."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        unit = size / 16.0
        painter.scale(unit, unit)
        color = COLORS[state]
        painter.setPen(QPen(color.darker(150), 1.0 if size < 32 else 0.75))
        painter.setBrush(color)
        painter.drawRoundedRect(QRectF(0.5, 0.5, 15.0, 15.0), 3.5, 3.5)
        _glyph(painter, state)
    finally:
        painter.end()
    return pixmap


def _glyph(painter: QPainter, state: IconState) -> None:
    white = QColor("white")
    pen = QPen(white, 2.2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
               Qt.PenJoinStyle.RoundJoin)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.setPen(pen)
    if state is IconState.CONNECTED:
        path = QPainterPath(QPointF(3.8, 8.4))
        path.lineTo(6.8, 11.4)
        path.lineTo(12.2, 4.8)
        painter.drawPath(path)
    elif state is IconState.CONNECTING:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(white)
        for x in (4.0, 8.0, 12.0):
            painter.drawEllipse(QPointF(x, 8.0), 1.7, 1.7)
    elif state is IconState.MIGRATING:
        painter.drawLine(QPointF(3.5, 8.0), QPointF(12.0, 8.0))
        head = QPainterPath(QPointF(8.6, 4.6))
        head.lineTo(12.2, 8.0)
        head.lineTo(8.6, 11.4)
        painter.drawPath(head)
    elif state is IconState.ERROR:
        painter.drawLine(QPointF(8.0, 3.6), QPointF(8.0, 9.0))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(white)
        painter.drawEllipse(QPointF(8.0, 12.2), 1.35, 1.35)
    elif state is IconState.PAUSED:
        painter.drawLine(QPointF(5.8, 4.4), QPointF(5.8, 11.6))
        painter.drawLine(QPointF(10.2, 4.4), QPointF(10.2, 11.6))


@cache
def status_icon(state: IconState) -> QIcon:
    """The icon of ``state`` at every size in :data:`SIZES` (needs a QGuiApplication).

    The same pixmaps serve the disabled mode: a menu's status line is a disabled entry, and
    its icon must keep its colour to say anything."""
    icon = QIcon()
    for size in SIZES:
        pixmap = draw(state, size)
        icon.addPixmap(pixmap, QIcon.Mode.Normal)
        icon.addPixmap(pixmap, QIcon.Mode.Disabled)
    return icon
