"""Which clipboard backend the app runs on, decided once at start from plain facts.

Theory of operation
-------------------
A background app may follow the clipboard only where the display system lets it:

- **X11**: any client may read and own the selections; Qt's xcb backend does.
- **Wayland**: only the client with keyboard focus may, *unless* the compositor offers a
  data-control protocol, made for clipboard managers: ``zwlr_data_control_manager_v1``
  (wlroots compositors, KWin up to Plasma 6.4) or ``ext_data_control_manager_v1`` (its
  standard successor: Plasma ≥ 6.5, wlroots ≥ 0.19, niri, COSMIC). Qt ≥ 6.10 uses the wlr one
  itself when ``QT_WAYLAND_USE_DATA_CONTROL`` is set before the QGuiApplication exists (QtWayland
  ``qwaylanddisplay.cpp``, ``mPreferWlrDataControl``); Qt 6.11 binds no ext protocol.
- **XWayland**: an X11 client on a Wayland session sees the Wayland clipboard only as far as
  the compositor lets it. wlroots and KWin refuse the data while no X11 window has focus
  (measured: "denying read access … no xwayland surface focused"); GNOME's mutter has no
  data-control protocol but adopts X11 selections whatever the focus
  (``src/x11/meta-x11-selection.c``), so there XWayland is the way.

So the backend is a function of: the session (which displays are reachable), what the user
forced (``QT_QPA_PLATFORM``, ``QT_WAYLAND_USE_DATA_CONTROL``, ``--clipboard-backend``), the
compositor's globals (asked of the compositor itself, :mod:`vdagent_bridge.display.probe`,
never guessed from ``XDG_CURRENT_DESKTOP``) and the Qt version. :func:`choose` is that function,
pure and table-tested; its :class:`Choice` carries the words the log, the tray's first line
and the window show, and the environment to set before Qt starts (:meth:`Choice.apply`).

A wrong override (``--clipboard-backend x11`` without ``DISPLAY``) is a :class:`BackendError`,
reported in one line by the command line.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

#: The wlroots data-control manager (wlr-protocols ``wlr-data-control-unstable-v1.xml``);
#: version 2 added the PRIMARY selection.
WLR_DATA_CONTROL = "zwlr_data_control_manager_v1"
#: Its standard successor (wayland-protocols ``staging/ext-data-control``).
EXT_DATA_CONTROL = "ext_data_control_manager_v1"
#: mutter's private protocol: it marks GNOME Shell (and only compositors built on mutter).
GTK_SHELL = "gtk_shell1"
#: The first Qt whose Wayland client can use the wlr data-control protocol
#: (``QT_WAYLAND_USE_DATA_CONTROL``, QtWayland 6.10).
QT_WLR_DATA_CONTROL = (6, 10)
#: The environment variable Qt reads once, when its Wayland connection opens.
DATA_CONTROL_ENV = "QT_WAYLAND_USE_DATA_CONTROL"


class Backend(enum.Enum):
    """How the app reaches the host clipboard."""

    #: An X11 session: Qt's xcb backend, as any X11 client.
    X11 = "x11"
    #: A Wayland session, Qt's xcb backend under XWayland.
    XWAYLAND = "xwayland"
    #: Qt's Wayland backend with Qt's own wlr data-control: the clipboard in the background.
    WAYLAND_DATA_CONTROL = "wayland-data-control"
    #: Qt's Wayland backend without data-control: the clipboard only while focused.
    WAYLAND_FOCUS = "wayland"
    #: A Qt platform the user chose that shares no desktop clipboard (offscreen, minimal…).
    OTHER = "other"


class Override(enum.Enum):
    """``--clipboard-backend``: let the app choose, or force one side."""

    AUTO = "auto"
    X11 = "x11"
    WAYLAND = "wayland"


class BackendError(ValueError):
    """The backend asked for cannot run here (one readable line)."""


@dataclass(frozen=True, slots=True)
class Globals:
    """What the compositor offers, as the probe found it: interface name → version. ``None``
    as the whole value (in :func:`choose`) means the compositor could not be asked."""

    versions: Mapping[str, int] = field(default_factory=dict)

    def version(self, interface: str) -> int:
        """The version offered, 0 when the interface is not offered."""
        return self.versions.get(interface, 0)


@dataclass(frozen=True, slots=True)
class Choice:
    """The backend, why, and what Qt must be told before it starts."""

    backend: Backend
    #: One line: the tray menu's first line, the window's heading, the log.
    summary: str
    #: The reasons and the consequences, one sentence each (the tooltip, the window).
    details: tuple[str, ...] = ()
    #: ``QT_QPA_PLATFORM`` to set, None to leave it as it is.
    platform: str | None = None
    #: Set ``QT_WAYLAND_USE_DATA_CONTROL=1`` (the user had not set it).
    data_control: bool = False
    #: Whether the host clipboard is followed while the app has no focus.
    background: bool = True

    def apply(self, environ: MutableMapping[str, str]) -> None:
        """Set what Qt reads at start; call before the QGuiApplication exists."""
        if self.platform is not None:
            environ["QT_QPA_PLATFORM"] = self.platform
        if self.data_control:
            environ[DATA_CONTROL_ENV] = "1"


def _user_data_control(environ: Mapping[str, str]) -> bool | None:
    """What the user set ``QT_WAYLAND_USE_DATA_CONTROL`` to (Qt reads it as an integer,
    positive = on), or None when unset."""
    value = environ.get(DATA_CONTROL_ENV)
    if value is None:
        return None
    try:
        return int(value.strip()) > 0
    except ValueError:
        return False


_FOCUS_ONLY = ("Wayland lets only the focused app use the clipboard: copies are not followed "
               "in the background, and a VM's copy reaches the host only while a vdagent-bridge "
               "window has focus.")
_X11_FOCUS = ("The compositor shares the Wayland clipboard with X11 apps only while an X11 "
              "window has keyboard focus: copies made in Wayland apps reach the VMs, and the "
              "VMs' copies reach Wayland apps, only then.")
_WORKS = "The pointer surface and file transfer work."
_X11_SUMMARY = "X11: clipboard and PRIMARY followed in the background"


@dataclass(frozen=True, slots=True)
class _Facts:
    """The inputs of :func:`choose`, reduced to what the table looks at."""

    wayland: bool
    x11: bool
    wlr: int
    ext: int
    mutter: bool
    qt_text: str
    qt_data_control: bool
    #: ``QT_WAYLAND_USE_DATA_CONTROL`` as the user set it (None: unset).
    user_data_control: bool | None

    @property
    def data_control(self) -> bool:
        """Whether Qt's Wayland backend will follow the clipboard through data-control."""
        return bool(self.wlr) and self.qt_data_control and self.user_data_control is not False

    def why_no_data_control(self) -> str:
        """Why the Wayland backend would have no data-control here (one sentence)."""
        if self.wlr and self.qt_data_control:
            return f"{DATA_CONTROL_ENV} is set to off."
        if self.wlr:
            return (f"The compositor offers {WLR_DATA_CONTROL}, but Qt {self.qt_text} cannot use "
                    f"it (Qt {'.'.join(map(str, QT_WLR_DATA_CONTROL))} or later can).")
        if self.ext:
            return (f"The compositor offers only {EXT_DATA_CONTROL}, which Qt {self.qt_text} "
                    "does not use.")
        return "The compositor offers no data-control protocol."


def choose(
    environ: Mapping[str, str],
    globals_: Globals | None,
    qt_version: tuple[int, ...],
    override: Override = Override.AUTO,
    *,
    probe_problem: str | None = None,
) -> Choice:
    """The backend for this start; see the module docstring.

    ``environ`` is the process environment; ``globals_`` what the compositor offers (None:
    not asked, or it could not be: ``probe_problem`` says why); ``qt_version`` Qt's
    (major, minor, …). In order: ``--clipboard-backend``, then the user's
    ``QT_QPA_PLATFORM``, then the session and the compositor decide.

    :raises BackendError: ``override`` asks for a display that is not there.
    """
    known = globals_ or Globals()
    facts = _Facts(
        wayland=bool(environ.get("WAYLAND_DISPLAY")),
        x11=bool(environ.get("DISPLAY")),
        wlr=known.version(WLR_DATA_CONTROL),
        ext=known.version(EXT_DATA_CONTROL),
        mutter=bool(known.version(GTK_SHELL)),
        qt_text=".".join(map(str, qt_version[:2])),
        qt_data_control=tuple(qt_version[:2]) >= QT_WLR_DATA_CONTROL,
        user_data_control=_user_data_control(environ),
    )
    platform = environ.get("QT_QPA_PLATFORM", "").strip()

    if override is Override.X11:
        if not facts.x11:
            raise BackendError("--clipboard-backend x11: no X display (DISPLAY is unset)")
        return _xcb(facts, "Chosen with --clipboard-backend x11.")
    if override is Override.WAYLAND:
        if not facts.wayland:
            raise BackendError("--clipboard-backend wayland: no Wayland display "
                               "(WAYLAND_DISPLAY is unset)")
        return _native(facts, "Chosen with --clipboard-backend wayland.")
    if platform:  # the user chose Qt's platform: keep it, and say what it means
        name = platform.split(";")[0].split(":")[0]
        if name == "xcb":
            return _xcb(facts, f"Chosen by QT_QPA_PLATFORM={platform}.", keep=True)
        if name.startswith("wayland"):
            return _native(facts, f"Chosen by QT_QPA_PLATFORM={platform}.", keep=True)
        return Choice(Backend.OTHER, f"No desktop clipboard here (Qt platform {name!r})",
                      ("The clipboard is not shared with a desktop on this Qt platform; use an "
                       "X11 or Wayland session.",), background=False)

    if not facts.wayland:
        return _xcb(facts, "An X11 session.")
    if globals_ is None:
        why = f"The compositor could not be asked what it offers: {probe_problem or 'unknown'}."
        return _xcb(facts, why) if facts.x11 else _native(facts, why)
    if facts.data_control:
        return _native(facts, f"The compositor offers {WLR_DATA_CONTROL} (version "
                              f"{facts.wlr}), which Qt {facts.qt_text} uses.")
    if facts.x11 and facts.mutter:
        return _xcb(facts, "GNOME (mutter): no data-control protocol, but mutter shares the "
                           "clipboard with X11 apps whatever has focus.")
    if facts.x11 and (facts.wlr or facts.ext):
        return _xcb(facts, facts.why_no_data_control())
    return _native(facts, facts.why_no_data_control())


def _xcb(facts: _Facts, why: str, *, keep: bool = False) -> Choice:
    """Qt's xcb backend: on X11, or under XWayland on a Wayland session."""
    platform = None if keep else "xcb"
    if not facts.wayland:
        return Choice(Backend.X11, _X11_SUMMARY,
                      (why, "The app follows the clipboard whatever has focus.", _WORKS),
                      platform=platform)
    if facts.mutter:
        return Choice(Backend.XWAYLAND, "Wayland session, clipboard through XWayland",
                      (why, "The clipboard is followed in the background.", _WORKS),
                      platform=platform)
    return Choice(Backend.XWAYLAND,
                  "Wayland through XWayland: clipboard only while an X11 window has focus",
                  (why, _X11_FOCUS, _WORKS), platform=platform, background=False)


def _native(facts: _Facts, why: str, *, keep: bool = False) -> Choice:
    """Qt's Wayland backend, with Qt's data-control where it can have it."""
    platform = None if keep else "wayland"
    if facts.data_control:
        primary = ("PRIMARY too" if facts.wlr >= 2 else
                   f"not PRIMARY ({WLR_DATA_CONTROL} version {facts.wlr} has none)")
        return Choice(
            Backend.WAYLAND_DATA_CONTROL,
            "Wayland: clipboard followed in the background (data-control)",
            (why, "Qt's Wayland backend follows the clipboard through data-control whatever "
             f"has focus, {primary}.", _WORKS),
            platform=platform, data_control=facts.user_data_control is None)
    reasons = (why,) if why == facts.why_no_data_control() else (
        why, facts.why_no_data_control())
    return Choice(Backend.WAYLAND_FOCUS,
                  "Wayland: the clipboard syncs only while a vdagent-bridge window has focus",
                  (*reasons, _FOCUS_ONLY, _WORKS), platform=platform, background=False)
