"""The application id and the files the app ships in ``resources/``: icons, .desktop, metainfo.

One reverse-DNS id names everything a desktop matches up — the .desktop file, the AppStream
component, the icon in the icon theme, ``QGuiApplication.desktopFileName`` (the Wayland
app_id) — so it is defined here once. It is all lowercase because ``appstreamcli validate
--pedantic`` asks for that, and uses ``_`` for the ``-`` of the project name as reverse-DNS
ids must.

Where ``resources/`` is found: the wheel (and an editable install, and the PyInstaller bundle)
carry it as the data package ``vdagent_bridge.resources`` (setup.py maps that package to the
top-level ``resources/`` directory); a checkout run with ``PYTHONPATH=app`` (the tests) has no
such package, and uses ``resources/`` beside ``app/``. Either way the result is a real
directory, since Qt and the desktop-file installer need file paths (installing from a zip is
not supported).

No Qt here: the command line installs the desktop files without a display.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: The reverse-DNS application id.
APP_ID = "io.github.vdagent_bridge.vdagent_bridge"

#: Sizes of the app icon's PNG renditions (hicolor ``NxN/apps``), for desktops that do not
#: scale the SVG.
APP_ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)

#: Sizes of the tray state icons' PNG renditions (tray hosts ask for 16–24 px; 32 for HiDPI).
STATUS_ICON_SIZES = (16, 22, 24, 32)

#: Names of the tray states, as in ``ui.model.IconState`` values and ``resources/status/``.
STATUS_NAMES = ("connected", "connecting", "migrating", "error", "paused")


class ResourcesNotFound(RuntimeError):
    """Neither the ``vdagent_bridge.resources`` package nor a checkout's ``resources/``."""


def resource_dir() -> Path:
    """The directory of the shipped resources.

    :raises ResourcesNotFound: an install without its resources (a broken wheel or bundle).
    """
    spec = importlib.util.find_spec("vdagent_bridge.resources")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "status").is_dir():
                return Path(location)
    checkout = Path(__file__).resolve().parent.parent.parent / "resources"
    if (checkout / "status").is_dir():
        return checkout
    raise ResourcesNotFound(
        "the vdagent_bridge.resources package is missing (a broken install?)"
    )


def app_icon_svg() -> Path:
    """The scalable app icon."""
    return resource_dir() / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def app_icon_png(size: int) -> Path:
    """The app icon's PNG rendition at ``size``×``size`` (one of :data:`APP_ICON_SIZES`)."""
    return resource_dir() / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


def status_svg(name: str) -> Path:
    """The tray icon of state ``name`` (one of :data:`STATUS_NAMES`)."""
    return resource_dir() / "status" / f"{name}.svg"


def status_png(name: str, size: int) -> Path:
    """The tray icon of state ``name`` rendered at ``size`` (one of :data:`STATUS_ICON_SIZES`)."""
    return resource_dir() / "status" / f"{size}x{size}" / f"{name}.png"


def desktop_file() -> Path:
    """The ``.desktop`` launcher (its ``Exec`` is the bare command; the installer may
    rewrite it)."""
    return resource_dir() / f"{APP_ID}.desktop"


def metainfo_file() -> Path:
    """The AppStream metainfo."""
    return resource_dir() / f"{APP_ID}.metainfo.xml"
