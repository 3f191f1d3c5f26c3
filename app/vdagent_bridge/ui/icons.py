"""The status icons and the app icon, loaded from the shipped ``resources/``.

One shape per state, so the state reads without colour too: a green disc with a tick
(connected), an amber disc with three dots (connecting), a blue square with an arrow
(migrating), a red triangle with an exclamation mark (error), a grey disc with two bars
(paused). Each has a darker rim and a white glyph so it stands out on light and dark panels
alike; they are drawn on a 16-unit grid, readable from 16 px up.

The SVGs in ``resources/status/`` are the sources; at the sizes a tray asks for (16–32 px) the
icon uses the committed PNG renditions (``packaging/render_icons.py``), above them the SVG
rendered at that size.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from .. import assets
from .model import IconState

#: Sizes put into each status icon (tray hosts use 16–24 px, SNI hosts may ask for more).
SIZES = (16, 20, 22, 24, 32, 48, 64)


def _render(svg: str, size: int) -> QPixmap:
    renderer = QSvgRenderer(svg)
    if not renderer.isValid():
        raise assets.ResourcesNotFound(f"{svg}: missing or not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
    finally:
        painter.end()
    return QPixmap.fromImage(image)


def draw(state: IconState, size: int) -> QPixmap:
    """The icon of ``state`` as a ``size``×``size`` pixmap: the shipped PNG where there is one
    at that size, else the SVG rendered at it."""
    if size in assets.STATUS_ICON_SIZES:
        pixmap = QPixmap(str(assets.status_png(state.value, size)))
        if not pixmap.isNull():
            return pixmap
    return _render(str(assets.status_svg(state.value)), size)


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


@cache
def app_icon() -> QIcon:
    """The app icon: its PNG renditions, and the SVG for any other size (window managers and
    the Wayland compositor may ask for anything)."""
    icon = QIcon()
    for size in assets.APP_ICON_SIZES:
        icon.addFile(str(assets.app_icon_png(size)))
    for size in (96, 512):
        icon.addPixmap(_render(str(assets.app_icon_svg()), size))
    return icon
