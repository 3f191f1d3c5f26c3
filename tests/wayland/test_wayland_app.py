"""The whole app on headless sway 1.7 and KWin 5.27 (each with XWayland), as a Wayland session
starts it, against the real guest agent (spice-vdagentd and spice-vdagent on their own Xvfb).

Both compositors offer ``zwlr_data_control_manager_v1`` v2, so the app must choose Qt's
Wayland backend with Qt's data-control by itself and then follow the clipboard and PRIMARY in
the background: with another Wayland client focused, and with nothing focused. The host's
applications are wl-clipboard's (``wl-copy``, ``wl-paste``, a background ``wl-paste --watch``);
the guest's are xclip on the guest's display.

A false pass to avoid (measured): ``wl-paste`` can read an older selection the app made, so
every guest → host check first copies a sentinel with ``wl-copy`` and waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_stack import AgentStack, GuestCommandError
from compositors import Compositor, Sway
from session import SETTLE, TIMEOUT, SessionApp, WaylandHost, environment_of, png, png_size, until

pytestmark = pytest.mark.wayland

FOCUS = ("a Wayland window", "nothing")
PNG = png()


@pytest.fixture
def host(compositor: Compositor, tmp_path: Path) -> Iterator[WaylandHost]:
    tools = WaylandHost(compositor, tmp_path / "host")
    yield tools
    tools.close()


def focus(compositor: Compositor, what: str) -> None:
    if what == "nothing":
        compositor.focus_nothing()
    else:
        compositor.focus_wayland_window()


def guest_paste(stack: AgentStack, target: str = "UTF8_STRING",
                selection: str = "clipboard", timeout: float = 3) -> bytes | None:
    try:
        return stack.guest_paste(selection, target, timeout=timeout)
    except GuestCommandError:
        return None


def test_the_app_chooses_qts_wayland_data_control_and_says_so(
    start_app: Callable[..., SessionApp], compositor: Compositor,
) -> None:
    app = start_app()
    log = app.log()
    assert ("clipboard backend: wayland-data-control (Wayland: clipboard followed in the "
            "background (data-control))") in log
    assert "zwlr_data_control_manager_v1 (version 2), which Qt 6" in log
    env = environment_of(app.proc.pid)
    assert "QT_QPA_PLATFORM" not in env and env["DISPLAY"] == compositor.x_display


@pytest.mark.parametrize("focused", FOCUS)
def test_host_copies_text_and_png_reach_the_guest_whatever_has_focus(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost, focused: str,
) -> None:
    start_app()
    focus(compositor, focused)
    host.copy(f"copied in a Wayland app, {focused} focused".encode())
    until(lambda: guest_paste(agent_stack) == f"copied in a Wayland app, {focused} "
          "focused".encode(), "the host's text in the guest")
    host.copy(PNG, "image/png")
    until(lambda: png_size(guest_paste(agent_stack, "image/png")) == (5, 3),
          "the host's PNG in the guest")
    assert compositor.focused() == ("" if focused == "nothing" else "vdb-focus")


@pytest.mark.parametrize("focused", FOCUS)
def test_guest_copies_reach_wayland_apps_and_a_background_watcher_whatever_has_focus(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost, focused: str,
) -> None:
    start_app()
    focus(compositor, focused)
    host.copy(b"sentinel")
    seen = host.watch()
    until(lambda: seen() == [b"sentinel"], "the watcher's start state")
    agent_stack.guest_copy(f"copied in the guest, {focused} focused".encode())
    expected = f"copied in the guest, {focused} focused".encode()
    until(lambda: host.paste() == expected, "the guest's text on the host")
    until(lambda: seen()[-1:] == [expected], "the watcher seeing the guest's copy")
    host.copy(b"sentinel 2")
    agent_stack.guest_copy(PNG, target="image/png")
    until(lambda: png_size(host.paste("image/png")) == (5, 3), "the guest's PNG on the host")
    assert compositor.focused() == ("" if focused == "nothing" else "vdb-focus")


def test_primary_crosses_both_ways_only_with_primary(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost,
) -> None:
    app = start_app()
    compositor.focus_nothing()
    agent_stack.guest_copy(b"guest PRIMARY, not shared", selection="primary")
    host.copy_primary(b"host PRIMARY, not shared")
    time.sleep(SETTLE)
    assert host.paste(primary=True) == b"host PRIMARY, not shared"
    assert guest_paste(agent_stack, selection="primary") == b"guest PRIMARY, not shared"
    app.close()

    start_app("--primary")
    compositor.focus_nothing()
    agent_stack.guest_copy(b"guest PRIMARY, shared", selection="primary")
    until(lambda: host.paste(primary=True) == b"guest PRIMARY, shared",
          "the guest's PRIMARY on the host")
    host.copy_primary(b"host PRIMARY, shared")
    until(lambda: guest_paste(agent_stack, selection="primary") == b"host PRIMARY, shared",
          "the host's PRIMARY in the guest")


def test_a_password_managers_copy_never_reaches_the_guest(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost,
) -> None:
    app = start_app()
    compositor.focus_nothing()
    host.copy(b"an ordinary copy")
    until(lambda: guest_paste(agent_stack) == b"an ordinary copy", "the ordinary copy")
    mark = len(app.log())
    host.copy_secret("hunter2")
    app.wait_log("holds a password manager's secret: not offered", since=mark)
    time.sleep(SETTLE)
    assert guest_paste(agent_stack) in (None, b"")
    host.copy(b"ordinary again")
    until(lambda: guest_paste(agent_stack) == b"ordinary again", "the next ordinary copy")


def test_the_selection_at_start_is_offered_once_and_is_not_a_new_copy(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost,
) -> None:
    """What the host clipboard holds when the app binds is its start state: the guest is
    offered it, and it never again overrides what the guest copies afterwards."""
    host.copy(b"on the clipboard before the app started")
    start_app()
    compositor.focus_nothing()
    until(lambda: guest_paste(agent_stack) == b"on the clipboard before the app started",
          "the start state in the guest")
    agent_stack.guest_copy(b"the guest's copy after the start")
    until(lambda: host.paste() == b"the guest's copy after the start", "the guest's copy")
    time.sleep(SETTLE)
    assert guest_paste(agent_stack) == b"the guest's copy after the start"
    assert host.paste() == b"the guest's copy after the start"


def test_under_xwayland_a_refused_read_leaves_the_guest_its_clipboard(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost,
) -> None:
    """Issue 14's bug, on the X11 backend the user forced: a Wayland copy made while no X11
    window has focus is announced to XWayland's clients and its read refused; the app took
    that for an empty clipboard and released the guest's. Kept, the offer is read when the
    guest pastes: by then an X11 window (a viewer under XWayland) may have focus, and the
    Wayland copy crosses."""
    compositor.start_x11_window()
    app = start_app("--clipboard-backend", "x11")
    assert "clipboard backend: xwayland" in app.log()
    compositor.focus_nothing()
    host.x11_copy(b"an X11 app's copy")
    until(lambda: guest_paste(agent_stack) == b"an X11 app's copy", "the X11 copy in the guest")
    mark = len(app.log())
    host.copy(b"a Wayland copy the compositor hides from X11")
    time.sleep(SETTLE)
    targets = agent_stack.guest_targets()
    assert "UTF8_STRING" in targets, targets  # the guest still has the host's offer
    if isinstance(compositor, Sway):  # wlroots announces the copy, then refuses the read;
        # KWin 5.27 announces it to X11 clients only once an X11 window has focus
        assert "changed but offers nothing readable" in app.log()[mark:]
    compositor.focus_x11_window()
    until(lambda: guest_paste(agent_stack) == b"a Wayland copy the compositor hides from X11",
          "the Wayland copy, read when the guest pasted with an X11 window focused")


def test_the_compositor_going_away_ends_the_app_with_one_line(
    compositor: Compositor, agent_stack: AgentStack, tmp_path: Path,
) -> None:
    """A compositor of the same kind of this test's own, stopped under the running app."""
    doomed = type(compositor)(tmp_path / "doomed")
    (tmp_path / "doomed").mkdir()
    doomed.start()
    try:
        app = SessionApp(doomed, agent_stack, tmp_path / "app", [])
        doomed.close()
        app.proc.wait(TIMEOUT)
    finally:
        doomed.close()
    lines = app.log().splitlines()
    assert app.proc.returncode != 0
    assert lines[-1] == ("vdagent-bridge: the Wayland compositor went away (The Wayland "
                         "connection broke. Did the Wayland compositor die?); quitting")
    assert not any("Traceback" in line for line in lines)


def test_sixteen_mib_of_text_cross_each_way(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost,
) -> None:
    """The default size limit, exactly, both ways, with nothing focused."""
    big = bytes(48 + i % 75 for i in range(16 * 1024 * 1024))  # printable ASCII
    start_app()
    compositor.focus_nothing()
    host.copy(big)
    until(lambda: guest_paste(agent_stack, timeout=20) == big, "16 MiB in the guest")
    host.copy(b"sentinel")
    agent_stack.guest_copy(big[::-1])
    until(lambda: host.paste(timeout=20) == big[::-1], "16 MiB on the host")


def test_two_vms_at_once_each_get_the_host_copy_and_give_theirs(
    start_app: Callable[..., SessionApp], compositor: Compositor, agent_stack: AgentStack,
    host: WaylandHost,
) -> None:
    second = AgentStack().start()
    try:
        app = start_app("--vm", "second", "--endpoint", f"unix:{second.socket_path}")
        app.wait_log(r"second: connected to unix:")
        time.sleep(0.3)
        compositor.focus_nothing()
        host.copy(b"for both guests")
        until(lambda: guest_paste(agent_stack) == b"for both guests", "the copy in the first")
        until(lambda: guest_paste(second) == b"for both guests", "the copy in the second")
        second.guest_copy(b"from the second guest")
        until(lambda: host.paste() == b"from the second guest", "the second guest's copy")
        until(lambda: guest_paste(agent_stack) == b"from the second guest",
              "the second guest's copy in the first")
    finally:
        second.close()
