#!/usr/bin/env python3
"""Render the PNG renditions of the SVG icons in ``resources/`` (and a contact sheet).

The SVGs are the sources; the PNGs are committed so that desktops that do not scale SVG icons,
and the tray at 16–32 px, get pixels made by the same renderer the app uses (QtSvg). Rerun
this after editing an SVG:

    python packaging/render_icons.py                    # rewrite resources/**/NxN/*.png
    python packaging/render_icons.py --out DIR          # the same layout under DIR instead
    python packaging/render_icons.py --contact-sheet docs/icons-contact-sheet.png

The contact sheet shows every rendition on a light and on a dark panel, with the 16 and 22 px
tray icons magnified, to check them by eye. It is not shipped.

No display is needed (Qt's offscreen platform).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "app"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPoint, QRect, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

from vdagent_bridge.assets import (  # noqa: E402
    APP_ICON_SIZES,
    APP_ID,
    STATUS_ICON_SIZES,
    STATUS_NAMES,
)

RESOURCES = ROOT / "resources"

#: Panel colours of the contact sheet: a light one (Breeze, GNOME light) and a dark one.
PANELS = (QColor("#eff0f1"), QColor("#232629"))


def render(svg: Path, size: int) -> QImage:
    """``svg`` rendered at ``size``×``size`` on a transparent background."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {svg}: not a valid SVG for QtSvg")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image.convertToFormat(QImage.Format.Format_ARGB32)


def renditions() -> list[tuple[Path, int, Path]]:
    """(SVG, size, PNG path relative to ``resources/``) of every rendition."""
    app_svg = RESOURCES / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    # At 16 px the scalable icon's detail blurs: a redrawing on whole pixels is the source.
    small_svg = RESOURCES / "icons" / "small" / f"{APP_ID}.svg"
    jobs = [(small_svg if size == 16 else app_svg, size,
             Path("icons", "hicolor", f"{size}x{size}", "apps", f"{APP_ID}.png"))
            for size in APP_ICON_SIZES]
    for name in STATUS_NAMES:
        svg = RESOURCES / "status" / f"{name}.svg"
        jobs += [(svg, size, Path("status", f"{size}x{size}", f"{name}.png"))
                 for size in STATUS_ICON_SIZES]
    return jobs


def write_pngs(out: Path) -> list[Path]:
    """Render every rendition under ``out``; returns the files written."""
    written = []
    for svg, size, relative in renditions():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not render(svg, size).save(str(target)):
            raise SystemExit(f"render_icons: cannot write {target}")
        written.append(target)
    return written


def contact_sheet(path: Path, source: Path) -> None:
    """Every PNG under ``source`` on a light and a dark panel; the tray icons also magnified
    ×4 at 16 and 22 px (nearest neighbour, to see the pixels)."""
    zoom = 4
    rows = 140 + len(STATUS_NAMES) * (22 * zoom + 8)
    width = 10 + sum(size + 14 for size in APP_ICON_SIZES[:-1]) + 10
    sheet = QImage(width * len(PANELS), rows, QImage.Format.Format_ARGB32)
    painter = QPainter(sheet)
    painter.setFont(QFont("sans", 8))
    for index, panel in enumerate(PANELS):
        left = index * width
        painter.fillRect(left, 0, width, rows, panel)
        painter.setPen(QColor("#888888"))
        x = left + 10
        for size in APP_ICON_SIZES[:-1]:  # 256 is too wide here; it is the SVG scaled anyway
            png = source / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
            painter.drawImage(QPoint(x, 10), QImage(str(png)))
            painter.drawText(x, 150, str(size))
            x += size + 14
        y = 160
        for name in STATUS_NAMES:
            x = left + 10
            for size in STATUS_ICON_SIZES:
                image = QImage(str(source / "status" / f"{size}x{size}" / f"{name}.png"))
                painter.drawImage(QPoint(x, y + 32 - size), image)
                x += size + 8
            for size in (16, 22):
                image = QImage(str(source / "status" / f"{size}x{size}" / f"{name}.png"))
                painter.drawImage(QRect(x, y, size * zoom, size * zoom), image)
                x += size * zoom + 8
            painter.drawText(x, y + 20, name)
            y += 22 * zoom + 8
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not sheet.save(str(path)):
        raise SystemExit(f"render_icons: cannot write {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESOURCES,
                        help="root of the renditions (default: resources/)")
    parser.add_argument("--contact-sheet", type=Path, metavar="PNG",
                        help="also write a contact sheet of the renditions to PNG")
    args = parser.parse_args(argv)
    app = QGuiApplication.instance() or QGuiApplication(["render_icons"])
    written = write_pngs(args.out)
    print(f"wrote {len(written)} PNG renditions under {args.out}")
    if args.contact_sheet:
        contact_sheet(args.contact_sheet, args.out)
        print(f"wrote {args.contact_sheet}")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
