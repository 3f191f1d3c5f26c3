"""Which desktop the app runs on, and what that lets it do, in plain words.

The one hard limit is Wayland's clipboard rule: only the client with keyboard focus may read
or set the selection (docs/peers.md §2.1). A tray app never has focus, so on a native Wayland
connection Qt's clipboard goes quiet in the background, and a VM's copy reaches the host only
while one of our windows is focused. Through XWayland (Qt's xcb backend, which
:func:`vdagent_bridge.startup.prefer_xwayland` picks when both displays exist) the app is
an X11 client again and may follow the X11 selections unfocused; the compositor bridges them
to Wayland apps as far as it shares the clipboard with XWayland. The user should read this in
the tray, not discover it as "a dead clipboard after a while" (docs/peers.md §3).

The decision is a pure function of the environment and three facts Qt knows, so it is tested
without a display.
"""

from __future__ import annotations

from collections.abc import Mapping

from .model import DesktopNote


def desktop_note(
    environ: Mapping[str, str],
    platform: str,
    *,
    selection: bool,
    tray: bool,
    chose_xwayland: bool = False,
) -> DesktopNote | None:
    """What works here and what does not; None on a plain X11 session, where all does.

    ``platform`` is Qt's platform name (``xcb``, ``wayland``, ``offscreen``…), ``selection``
    whether the clipboard has a PRIMARY selection here, ``tray`` whether a system tray exists,
    ``chose_xwayland`` whether the app switched to XWayland itself.
    """
    wayland_session = bool(environ.get("WAYLAND_DISPLAY")) or (
        environ.get("XDG_SESSION_TYPE") == "wayland"
    )
    details: list[str] = []
    if platform == "xcb" and wayland_session:
        summary = "Wayland session, clipboard through XWayland"
        how = "chose XWayland" if chose_xwayland else "runs on XWayland"
        details += [
            f"The app {how} so it can follow the clipboard in the background: a Wayland "
            "client may only touch the clipboard while it has keyboard focus.",
            "Copies in Wayland apps reach the VMs as far as the compositor shares them with "
            "XWayland (GNOME and Sway do; KDE Plasma may ask to allow it).",
            "The pointer surface and file transfer work as on X11.",
        ]
    elif platform.startswith("wayland"):
        summary = "Wayland: the clipboard syncs only while a vdagent-bridge window has focus"
        details += [
            "Wayland lets only the focused app use the clipboard, so copies are not followed "
            "in the background.",
            "For background sync, start the app with XWayland available (DISPLAY set, "
            "QT_QPA_PLATFORM unset or xcb).",
            "The pointer surface and file transfer work.",
        ]
    elif platform == "xcb":
        return None if selection and tray else _x11_gaps(selection, tray)
    else:
        summary = f"No desktop clipboard here (Qt platform {platform!r})"
        details.append("The clipboard is not shared with a desktop on this Qt platform; "
                       "use an X11 or Wayland session.")
    if not selection:
        details.append("The PRIMARY selection is not available on this display.")
    if not tray:
        details.append("No system tray: on GNOME, install the AppIndicator extension for "
                       "a tray icon; this window stands in for it.")
    return DesktopNote(summary, tuple(details))


def _x11_gaps(selection: bool, tray: bool) -> DesktopNote:
    details: list[str] = []
    if not selection:
        details.append("The PRIMARY selection is not available on this display.")
    if not tray:
        details.append("No system tray on this desktop: this window stands in for it.")
    return DesktopNote("X11: " + ("no PRIMARY selection" if not selection else "no tray"),
                       tuple(details))
