"""The shipped icons: where they are found, that the PNGs are renditions of the SVGs, and that
the UI uses them (offscreen Qt).

The installed-wheel and editable-install cases of finding them are in test_wheel.py; the
PyInstaller bundle's in packaging/check-pyinstaller.sh (the bundle shows the shipped icons).
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before pytest-qt creates the QApplication

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from vdagent_bridge import assets  # noqa: E402
from vdagent_bridge.ui.icons import app_icon, draw, status_icon  # noqa: E402
from vdagent_bridge.ui.model import IconState  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_a_checkout_finds_the_resources_directory_beside_app() -> None:
    # pytest's pythonpath is app/ (and an editable install, if any, maps to the same place).
    assert assets.resource_dir() == REPO / "resources"


def test_the_tray_states_and_the_shipped_icons_are_the_same_five() -> None:
    assert tuple(state.value for state in IconState) == assets.STATUS_NAMES
    assert sorted(p.stem for p in (REPO / "resources" / "status").glob("*.svg")) == \
        sorted(assets.STATUS_NAMES)


def test_every_svg_is_one_qtsvg_renders(qapp: QApplication) -> None:
    svgs = sorted((REPO / "resources").rglob("*.svg"))
    assert assets.app_icon_svg() in svgs and len(svgs) == 2 + len(assets.STATUS_NAMES)
    for svg in svgs:
        assert QSvgRenderer(str(svg)).isValid(), svg


def test_every_rendition_is_there_at_its_size(qapp: QApplication) -> None:
    pngs = [(assets.app_icon_png(n), n) for n in assets.APP_ICON_SIZES]
    pngs += [(assets.status_png(name, n), n)
             for name in assets.STATUS_NAMES for n in assets.STATUS_ICON_SIZES]
    for png, size in pngs:
        image = QImage(str(png))
        assert (image.width(), image.height()) == (size, size), png
        assert image.hasAlphaChannel(), png


def differing_pixels(a: QImage, b: QImage) -> int:
    """Pixels whose channels differ by more than 8 (renderer rounding is allowed)."""
    a = a.convertToFormat(QImage.Format.Format_ARGB32)
    b = b.convertToFormat(QImage.Format.Format_ARGB32)
    count = 0
    for y in range(a.height()):
        for x in range(a.width()):
            pa, pb = a.pixel(x, y), b.pixel(x, y)
            if any(abs(((pa >> s) & 255) - ((pb >> s) & 255)) > 8 for s in (0, 8, 16, 24)):
                count += 1
    return count


def test_the_committed_pngs_are_what_render_icons_makes_of_the_svgs(
    qapp: QApplication, tmp_path: Path
) -> None:
    result = subprocess.run([sys.executable, str(REPO / "packaging" / "render_icons.py"),
                             "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    committed = sorted(p.relative_to(REPO / "resources")
                       for p in (REPO / "resources").rglob("*.png"))
    assert fresh == committed
    for relative in fresh:
        new, old = QImage(str(tmp_path / relative)), QImage(str(REPO / "resources" / relative))
        assert new.size() == old.size(), relative
        # Another Qt version may round a few edge pixels differently; an edited SVG changes
        # many (rerun packaging/render_icons.py).
        assert differing_pixels(new, old) <= new.width() * new.height() // 50, relative


def is_the_shipped_rendition(shown: QImage, shipped: QImage) -> bool:
    """Whether ``shown`` (an icon's pixmap, which Qt keeps premultiplied) is ``shipped`` (the
    PNG as loaded, straight alpha).

    Compared premultiplied on both sides: premultiplying is exact where un-premultiplying is
    not, and its rounding of semi-transparent pixels differs between CPUs' SIMD paths (seen:
    1 to 3 pixels of the 48 and 128 px app icons on an AVX-512 Xeon, none on an EPYC). Both
    sides go through the same conversion, so every pixel must match exactly."""
    premultiplied = QImage.Format.Format_ARGB32_Premultiplied
    return shown.size() == shipped.size() and \
        shown.convertToFormat(premultiplied) == shipped.convertToFormat(premultiplied)


@pytest.mark.parametrize("state", list(IconState))
def test_the_status_icon_is_the_shipped_png_at_tray_sizes(
    qapp: QApplication, state: IconState
) -> None:
    for size in assets.STATUS_ICON_SIZES:
        shipped = QImage(str(assets.status_png(state.value, size)))
        shown = status_icon(state).pixmap(size, size).toImage()
        assert is_the_shipped_rendition(shown, shipped), (state, size)


def swapped_resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      edit: Callable[[Path], None]) -> None:
    """A copy of resources/ where ``edit`` changed the shipped files, found by the app."""
    copy = tmp_path / "resources"
    shutil.copytree(assets.resource_dir(), copy)
    edit(copy)
    monkeypatch.setattr(assets, "resource_dir", lambda: copy)


def test_a_visibly_different_shipped_png_is_not_the_shipped_rendition(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The comparison above must still catch a wrong PNG: here the 22 px CONNECTED rendition is
    # replaced by ERROR's, and another by itself with one opaque pixel repainted.
    shipped = {size: QImage(str(assets.status_png("connected", size)))
               for size in assets.STATUS_ICON_SIZES}

    def edit(root: Path) -> None:
        shutil.copyfile(root / "status" / "22x22" / "error.png",
                        root / "status" / "22x22" / "connected.png")
        image = QImage(str(root / "status" / "16x16" / "connected.png"))
        assert image.pixelColor(8, 8).alpha() == 255
        image.setPixelColor(8, 8, QColor(255, 0, 255))
        assert image.save(str(root / "status" / "16x16" / "connected.png"))

    swapped_resources(tmp_path, monkeypatch, edit)
    for size in assets.STATUS_ICON_SIZES:
        shown = draw(IconState.CONNECTED, size).toImage()
        assert is_the_shipped_rendition(shown, shipped[size]) is (size not in (16, 22)), size


def test_larger_status_icons_are_the_svg_rendered_at_that_size(qapp: QApplication) -> None:
    image = draw(IconState.ERROR, 64).toImage()
    assert image.width() == 64
    # The triangle's tip is at the top centre, its base along the bottom: not a square icon.
    assert image.pixelColor(32, 2).alpha() > 0 and image.pixelColor(2, 2).alpha() == 0


def test_the_app_icon_is_the_shipped_one_at_every_size(qapp: QApplication) -> None:
    icon = app_icon()
    for size in assets.APP_ICON_SIZES:
        shipped = QImage(str(assets.app_icon_png(size)))
        shown = icon.pixmap(size, size).toImage()
        assert is_the_shipped_rendition(shown, shipped), size


def test_a_changed_app_icon_png_is_not_the_shipped_one(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = QImage(str(assets.app_icon_png(48)))

    def edit(root: Path) -> None:
        # 48 px is one of the sizes where premultiplying rounds differently between CPUs.
        png = root / "icons" / "hicolor" / "48x48" / "apps" / f"{assets.APP_ID}.png"
        image = QImage(str(png))
        painter = QPainter(image)
        painter.fillRect(16, 16, 16, 16, QColor(255, 0, 255))
        painter.end()
        assert image.save(str(png))

    swapped_resources(tmp_path, monkeypatch, edit)
    app_icon.cache_clear()
    try:
        assert not is_the_shipped_rendition(app_icon().pixmap(48, 48).toImage(), shipped)
    finally:
        app_icon.cache_clear()
