"""Which clipboard backend the app chooses at start: the decision table, and the probe.

The table's rows are the desktops of issue 14: X11; wlroots compositors and KWin ≤ Plasma 6.4
(wlr data-control v2); Plasma ≥ 6.5 and the newest wlroots, niri, COSMIC (ext only); GNOME's
mutter (neither, but XWayland serves it); weston (nothing); and what the user forces.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vdagent_bridge.display import (
    Backend,
    BackendError,
    Globals,
    Override,
    choose,
    probe_globals,
)
from vdagent_bridge.display.choice import DATA_CONTROL_ENV

X11 = {"DISPLAY": ":0"}
WAYLAND = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":1"}
WAYLAND_ONLY = {"WAYLAND_DISPLAY": "wayland-0"}
QT = (6, 11)

SWAY_17 = Globals({"wl_seat": 7, "zwlr_data_control_manager_v1": 2,
                   "zwp_primary_selection_device_manager_v1": 1})
KWIN_527 = Globals({"wl_seat": 8, "zwlr_data_control_manager_v1": 2})
WLR_V1 = Globals({"wl_seat": 5, "zwlr_data_control_manager_v1": 1})
PLASMA_65 = Globals({"wl_seat": 9, "ext_data_control_manager_v1": 1})
MUTTER = Globals({"wl_seat": 8, "gtk_shell1": 5, "zwp_primary_selection_device_manager_v1": 1})
WESTON = Globals({"wl_seat": 7, "weston_desktop_shell": 1})


@pytest.mark.parametrize(
    ("environ", "found", "qt", "backend", "platform", "data_control"),
    [
        # an X11 session: xcb, whatever Qt
        (X11, None, QT, Backend.X11, "xcb", False),
        # wlroots (sway 1.7) and KWin 5.27: Qt's own wlr data-control, natively
        (WAYLAND, SWAY_17, QT, Backend.WAYLAND_DATA_CONTROL, "wayland", True),
        (WAYLAND, KWIN_527, QT, Backend.WAYLAND_DATA_CONTROL, "wayland", True),
        (WAYLAND_ONLY, SWAY_17, QT, Backend.WAYLAND_DATA_CONTROL, "wayland", True),
        # the same compositor with a Qt older than 6.10: XWayland, which at least serves X11
        # focus; without XWayland, native and focus-bound
        (WAYLAND, SWAY_17, (6, 9), Backend.XWAYLAND, "xcb", False),
        (WAYLAND_ONLY, SWAY_17, (6, 9), Backend.WAYLAND_FOCUS, "wayland", False),
        # ext only (Plasma 6.5+): this Qt binds no ext; XWayland where there is one
        (WAYLAND, PLASMA_65, QT, Backend.XWAYLAND, "xcb", False),
        (WAYLAND_ONLY, PLASMA_65, QT, Backend.WAYLAND_FOCUS, "wayland", False),
        # GNOME: no data-control, mutter serves X11 clients whatever the focus
        (WAYLAND, MUTTER, QT, Backend.XWAYLAND, "xcb", False),
        (WAYLAND_ONLY, MUTTER, QT, Backend.WAYLAND_FOCUS, "wayland", False),
        # weston: nothing at all, native (the note says: only while focused)
        (WAYLAND, WESTON, QT, Backend.WAYLAND_FOCUS, "wayland", False),
        # the compositor could not be asked: XWayland where there is one, as before
        (WAYLAND, None, QT, Backend.XWAYLAND, "xcb", False),
        (WAYLAND_ONLY, None, QT, Backend.WAYLAND_FOCUS, "wayland", False),
    ],
)
def test_the_backend_follows_the_session_the_compositor_and_qt(
    environ: dict[str, str], found: Globals | None, qt: tuple[int, int], backend: Backend,
    platform: str, data_control: bool,
) -> None:
    choice = choose(environ, found, qt)
    assert (choice.backend, choice.platform, choice.data_control) == (
        backend, platform, data_control)


def test_the_choice_says_why_and_what_follows_from_it() -> None:
    sway = choose(WAYLAND, SWAY_17, QT)
    assert sway.summary == "Wayland: clipboard followed in the background (data-control)"
    assert sway.background
    assert "zwlr_data_control_manager_v1 (version 2), which Qt 6.11 uses" in sway.details[0]
    assert "PRIMARY too" in sway.details[1]
    v1 = choose(WAYLAND, WLR_V1, QT)
    assert "not PRIMARY" in v1.details[1]
    plasma = choose(WAYLAND, PLASMA_65, QT)
    assert plasma.summary == ("Wayland through XWayland: clipboard only while an X11 window "
                              "has focus")
    assert not plasma.background
    assert "only ext_data_control_manager_v1, which Qt 6.11 does not use" in plasma.details[0]
    gnome = choose(WAYLAND, MUTTER, QT)
    assert gnome.summary == "Wayland session, clipboard through XWayland" and gnome.background
    assert "GNOME (mutter)" in gnome.details[0]
    weston = choose(WAYLAND, WESTON, QT)
    assert weston.summary == ("Wayland: the clipboard syncs only while a vdagent-bridge "
                              "window has focus")
    assert not weston.background
    assert "no data-control protocol" in weston.details[0]
    failed = choose(WAYLAND, None, QT, probe_problem="pywayland is not installed")
    assert "could not be asked what it offers: pywayland is not installed" in failed.details[0]
    x11 = choose(X11, None, QT)
    assert x11.summary == "X11: clipboard and PRIMARY followed in the background"


def test_the_override_wins_over_the_compositor_and_the_environment() -> None:
    forced_x11 = choose(WAYLAND | {"QT_QPA_PLATFORM": "wayland"}, SWAY_17, QT, Override.X11)
    assert (forced_x11.backend, forced_x11.platform) == (Backend.XWAYLAND, "xcb")
    assert "--clipboard-backend x11" in forced_x11.details[0]
    forced_wl = choose(WAYLAND, MUTTER, QT, Override.WAYLAND)
    assert (forced_wl.backend, forced_wl.platform) == (Backend.WAYLAND_FOCUS, "wayland")
    forced_dc = choose(WAYLAND, KWIN_527, QT, Override.WAYLAND)
    assert forced_dc.backend is Backend.WAYLAND_DATA_CONTROL and forced_dc.data_control


@pytest.mark.parametrize(("environ", "override", "message"), [
    (WAYLAND_ONLY, Override.X11, "--clipboard-backend x11: no X display (DISPLAY is unset)"),
    (X11, Override.WAYLAND,
     "--clipboard-backend wayland: no Wayland display (WAYLAND_DISPLAY is unset)"),
])
def test_an_override_without_its_display_is_a_one_line_error(
    environ: dict[str, str], override: Override, message: str,
) -> None:
    with pytest.raises(BackendError) as caught:
        choose(environ, SWAY_17, QT, override)
    assert str(caught.value) == message


def test_the_users_own_qt_settings_are_kept() -> None:
    pinned = choose(WAYLAND | {"QT_QPA_PLATFORM": "xcb"}, SWAY_17, QT)
    assert (pinned.backend, pinned.platform) == (Backend.XWAYLAND, None)
    native = choose(WAYLAND | {"QT_QPA_PLATFORM": "wayland"}, SWAY_17, QT)
    assert (native.backend, native.platform, native.data_control) == (
        Backend.WAYLAND_DATA_CONTROL, None, True)
    # the user switched Qt's data-control on: nothing to set; off: it stays off
    on = choose(WAYLAND | {DATA_CONTROL_ENV: "1"}, SWAY_17, QT)
    assert on.backend is Backend.WAYLAND_DATA_CONTROL and not on.data_control
    off = choose(WAYLAND | {DATA_CONTROL_ENV: "0"}, SWAY_17, QT)
    assert off.backend is Backend.XWAYLAND
    assert "QT_WAYLAND_USE_DATA_CONTROL is set to off." in off.details
    offscreen = choose({"QT_QPA_PLATFORM": "offscreen"}, None, QT)
    assert (offscreen.backend, offscreen.platform) == (Backend.OTHER, None)
    assert not offscreen.background


def test_apply_sets_what_qt_reads_at_start_and_nothing_else() -> None:
    environ = dict(WAYLAND)
    choose(environ, SWAY_17, QT).apply(environ)
    assert environ == WAYLAND | {"QT_QPA_PLATFORM": "wayland", DATA_CONTROL_ENV: "1"}
    pinned = WAYLAND | {"QT_QPA_PLATFORM": "wayland", DATA_CONTROL_ENV: "1"}
    before = dict(pinned)
    choose(pinned, SWAY_17, QT).apply(pinned)
    assert pinned == before
    gnome = dict(WAYLAND)
    choose(gnome, MUTTER, QT).apply(gnome)
    assert gnome == WAYLAND | {"QT_QPA_PLATFORM": "xcb"}


# ---------------------------------------------------------------- the probe (real sockets)


def test_the_probe_says_in_one_line_why_it_found_nothing(tmp_path: Path) -> None:
    assert probe_globals({}).problem == "WAYLAND_DISPLAY is unset"
    missing = probe_globals({"WAYLAND_DISPLAY": "wayland-9", "XDG_RUNTIME_DIR": str(tmp_path)})
    assert missing.globals is None
    assert missing.problem is not None and missing.problem.startswith(
        "cannot connect to wayland-9")


@pytest.fixture
def silent_compositor(tmp_path: Path) -> Iterator[Path]:
    """A UNIX socket that accepts a Wayland client and never says a word."""
    path = tmp_path / "wayland-silent"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    yield path
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_compositor_that_does_not_answer_cannot_hang_the_start(
    silent_compositor: Path,
) -> None:
    result = probe_globals({"WAYLAND_DISPLAY": str(silent_compositor)}, timeout=0.3)
    assert result.globals is None
    assert result.problem == "the compositor did not answer in 0.3 s"
    assert os.path.exists(silent_compositor)
