"""What the app's clipboard can do on this desktop, in plain words: the tray's first line.

The backend was chosen at start (:func:`vdagent_bridge.display.choose`, which also wrote the
words); this adds what only the running Qt knows: whether the platform Qt actually loaded is
the one chosen, whether the clipboard has a PRIMARY selection, whether there is a tray. The
user should read this in the tray, not discover it as "a dead clipboard after a while"
(docs/peers.md §3).

Pure: a function of the choice and three facts, tested without a display.
"""

from __future__ import annotations

from ..display import Backend, Choice
from .model import DesktopNote

#: The Qt platform each backend runs on.
_PLATFORMS = {
    Backend.X11: "xcb",
    Backend.XWAYLAND: "xcb",
    Backend.WAYLAND_DATA_CONTROL: "wayland",
    Backend.WAYLAND_FOCUS: "wayland",
}


def desktop_note(
    choice: Choice | None,
    platform: str,
    *,
    selection: bool,
    tray: bool,
) -> DesktopNote:
    """What works here and what does not.

    ``choice`` is the backend chosen at start (None: none was, as in tests that make the
    application themselves), ``platform`` Qt's platform name (``xcb``, ``wayland``,
    ``offscreen``…), ``selection`` whether the clipboard has a PRIMARY selection here,
    ``tray`` whether a system tray exists.
    """
    expected = _PLATFORMS.get(choice.backend) if choice is not None else None
    if choice is None or expected is None or not platform.startswith(expected):
        summary = f"No desktop clipboard here (Qt platform {platform!r})"
        details = ["The clipboard is not shared with a desktop on this Qt platform; use an "
                   "X11 or Wayland session."]
        if platform.startswith(("xcb", "wayland")):
            summary = f"Clipboard through Qt's {platform} platform"
            details = []
        if choice is not None and expected is not None:
            details.insert(0, f"Chosen: {choice.summary}; but Qt runs on {platform!r}.")
    else:
        summary, details = choice.summary, list(choice.details)
    if not selection and platform.startswith(("xcb", "wayland")):
        details.append("The PRIMARY selection is not available on this display.")
    if not tray:
        details.append("No system tray: on GNOME, install the AppIndicator extension for "
                       "a tray icon; this window stands in for it.")
    return DesktopNote(summary, tuple(details))
