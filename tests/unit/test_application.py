"""The composition root on a qasync loop (offscreen): the demo guest as a VM, both clipboard
directions, switches applied and persisted, reconnect, notifications, ordered shutdown; and
the command line that builds it."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before pytest-qt creates the QApplication

import asyncio  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable, Coroutine, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import pytest  # noqa: E402
import shiboken6  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QClipboard, QGuiApplication  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from qasync import QEventLoop  # noqa: E402

from vdagent_bridge import application as application_module  # noqa: E402
from vdagent_bridge import startup as startup_module  # noqa: E402
from vdagent_bridge.application import DEMO_VM, Application  # noqa: E402
from vdagent_bridge.cli import main  # noqa: E402
from vdagent_bridge.demo.guest import Holder  # noqa: E402
from vdagent_bridge.display import Backend, BackendError, Override  # noqa: E402
from vdagent_bridge.options import Options, Overrides  # noqa: E402
from vdagent_bridge.protocol import Selection  # noqa: E402
from vdagent_bridge.runtime import Endpoint, Runstate, Site  # noqa: E402
from vdagent_bridge.startup import choose_backend, display_gone, display_problem  # noqa: E402
from vdagent_bridge.state import AppPaths  # noqa: E402
from vdagent_bridge.state.config import Policy, VmConfig  # noqa: E402
from vdagent_bridge.state.settings import AUTOSTART_FILE  # noqa: E402
from vdagent_bridge.ui.demo_guest import sample_image  # noqa: E402
from vdagent_bridge.ui.model import Toggle  # noqa: E402
from vdagent_bridge.ui.tray import Tray  # noqa: E402
from vdagent_bridge.ui.window import MainWindow  # noqa: E402

T = TypeVar("T")


def run(qapp: QApplication, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a qasync loop over the test's QApplication, as the app does."""
    loop = QEventLoop(qapp)
    try:
        result: T = loop.run_until_complete(asyncio.wait_for(coro, 30))
        return result
    finally:
        loop.close()


async def until(condition: Callable[[], object], what: str | Callable[[], str],
                timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(
                f"timed out waiting for {what if isinstance(what, str) else what()}"
            )
        await asyncio.sleep(0.01)


def open_menu(tray: Tray) -> None:
    """Open and close the tray menu (Qt emits aboutToShow, which rebuilds it)."""
    tray.menu.popup(QPoint(0, 0))
    tray.menu.hide()


def quick() -> Iterator[float]:
    while True:
        yield 0.05


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return AppPaths(config=tmp_path / "config", state=tmp_path / "state")


@pytest.fixture
def clipboard(qapp: QApplication) -> Iterator[QClipboard]:
    board = QGuiApplication.clipboard()
    board.clear()
    yield board
    board.clear()


def demo_options(paths: AppPaths, **kw: Any) -> Options:
    return Options(paths=paths, demo=True, tray=False,
                   autostart_dir=paths.config / "autostart", **kw)


class Recorder:
    def __init__(self, app: Application) -> None:
        self.notices: list[tuple[str, str, str]] = []
        app.notify.connect(lambda *args: self.notices.append(args))


def test_demo_both_directions_then_a_clean_quit(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)

    async def scenario() -> None:
        task = asyncio.create_task(app.run(), name="app")
        await until(lambda: app.demo is not None and app.vms()
                    and app.vms()[0].runstate is Runstate.CONNECTED, "the demo connected")
        demo = app.demo
        assert demo is not None
        runtime = app._vms[DEMO_VM].runtime
        await until(lambda: runtime.session.clipboard_ready, "caps exchanged")

        # guest → host: copy "in the guest", the host clipboard gets it
        demo.copy_text("Hello from the guest")
        await until(lambda: clipboard.text() == "Hello from the guest", "the host clipboard")
        assert app.demo_window is not None
        app.demo_window.refresh()
        assert app.demo_window.clipboard_source.text() == "copied in the guest"

        # an image copied in the guest reaches the host as an image
        demo.copy_image(sample_image())
        await until(lambda: not clipboard.image().isNull(), "the guest's image on the host")
        assert clipboard.image().size() == sample_image().size()
        await until(lambda: app.demo_window is not None
                    and app.demo_window.clipboard_view.pixmap() is not None
                    and not app.demo_window.clipboard_view.pixmap().isNull(),
                    "the image in the demo window")

        # host → guest: copy on the host, the demo guest pastes it and shows it
        clipboard.setText("Hello from the host")
        await until(lambda: demo.clipboard().text == "Hello from the host", "the guest paste")
        assert demo.clipboard().source == "host"
        await until(lambda: app.demo_window is not None
                    and app.demo_window.clipboard_view.text() == "Hello from the host",
                    "the demo window")

        app.quit()
        assert await task == 0
        assert runtime.runstate is Runstate.IDLE
        assert not Path(demo.path).exists()
        assert not Path(demo.path).parent.exists(), "the demo's private directory is removed"

    run(qapp, scenario())
    assert isinstance(app.window, MainWindow) and app.tray is None
    assert app.window.demo_button is not None
    for window in (app.window, app.demo_window):
        assert window is not None
        assert not shiboken6.isValid(window) or not window.isVisible(), "closed at quit"
    assert ("demo", "connected to the built-in demo guest", "info") in seen.notices
    assert not app._helpers


def test_the_demo_window_shows_every_host_copy_after_a_guest_copy(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    # Seen by a new user: after a guest copy, only the first host copy showed in the window.
    app = Application(demo_options(paths), tray_available=False, delays=quick)

    async def scenario() -> None:
        task = asyncio.create_task(app.run(), name="app")
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.clipboard_ready, "the demo")
        demo, window = app.demo, app.demo_window
        assert demo is not None and window is not None
        demo.copy_text("copied in the guest")
        await until(lambda: clipboard.text() == "copied in the guest", "the host clipboard")
        for text in ("first host copy", "second host copy", "third host copy"):
            clipboard.setText(text)
            await until(lambda text=text: window.clipboard_view.text() == text,  # type: ignore[misc]
                        lambda text=text: f"{text!r} in the demo window, which shows "  # type: ignore[misc]
                        f"{window.clipboard_view.text()!r}")
            assert window.clipboard_source.text() == "pasted from the host"
        app.quit()
        assert await task == 0

    run(qapp, scenario())


def test_switches_apply_at_once_persist_and_win_over_the_config_next_time(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(demo_options(paths, demo_policy=Policy(primary=True)),
                      tray_available=False, delays=quick)

    async def scenario() -> None:
        task = asyncio.create_task(app.run(), name="app")
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.clipboard_ready, "the demo")
        assert app.bridge is not None and app.demo is not None
        assert app.bridge.policy(DEMO_VM).primary is True

        app.set_toggle(DEMO_VM, Toggle.TO_HOST, False)
        assert app.bridge.policy(DEMO_VM).to_host is False
        app.demo.copy_text("must stay in the guest")
        await asyncio.sleep(0.3)
        assert clipboard.text() != "must stay in the guest"

        app.set_toggle(DEMO_VM, Toggle.TO_HOST, True)
        app.set_paused(True)
        policy = app.bridge.policy(DEMO_VM)
        assert (policy.to_guest, policy.to_host) == (False, False)
        assert app.vms()[0].to_host is True, "pausing keeps the switches"
        clipboard.setText("the host, paused")
        await asyncio.sleep(0.3)
        assert app.demo.guest.selections[Selection.CLIPBOARD].holder is not Holder.HOST

        app.set_paused(False)
        app.set_toggle(DEMO_VM, Toggle.PRIMARY, False)
        app.set_toggle(DEMO_VM, Toggle.TO_GUEST, False)
        app.quit()
        await task

    run(qapp, scenario())
    saved = json.loads((paths.state / "settings.json").read_text())
    assert saved == {"schema_version": 1, "paused": False,
                     "vms": {"demo": {"to_host": True, "primary": False, "to_guest": False}}}

    # The next start: the saved switches override the config's policy (primary = true)...
    again = Application(demo_options(paths, demo_policy=Policy(primary=True)),
                        tray_available=False, delays=quick)

    async def second() -> None:
        task = asyncio.create_task(again.run())
        await until(lambda: again.bridge is not None and again.vms(), "the second start")
        assert again.bridge is not None
        policy = again.bridge.policy(DEMO_VM)
        assert (policy.to_guest, policy.to_host, policy.primary) == (False, True, False)
        again.quit()
        await task

    run(qapp, second())

    # ... and the command line overrides both, for that run only.
    third = Application(demo_options(paths, overrides=Overrides("both", True, False)),
                        tray_available=False, delays=quick)

    async def third_run() -> None:
        task = asyncio.create_task(third.run())
        await until(lambda: third.bridge is not None and third.vms(), "the third start")
        assert third.bridge is not None
        policy = third.bridge.policy(DEMO_VM)
        assert (policy.to_guest, policy.to_host, policy.primary) == (True, True, True)
        assert third.switches(DEMO_VM)["pointer"] is False
        third.quit()
        await task

    run(qapp, third_run())
    assert json.loads((paths.state / "settings.json").read_text()) == saved


def test_reconnect_starts_a_fresh_connection(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.demo is not None and app.demo.server.connections == 1,
                    "the first connection")
        await until(lambda: app.vms()[0].runstate is Runstate.CONNECTED, "connected")
        app.reconnect(DEMO_VM)
        app.reconnect(DEMO_VM)  # a second click while it reconnects does nothing more
        assert app.demo is not None
        await until(lambda: app.demo is not None and app.demo.server.connections == 2,
                    "the second connection")
        await until(lambda: app.vms()[0].runstate is Runstate.CONNECTED, "connected again")
        assert app.demo.guest.log.count("New client connected") == 2
        app.quit()
        await task

    run(qapp, scenario())
    texts = [text for _, text, _ in seen.notices]
    assert sum(text.startswith("connected to") for text in texts) == 2
    assert not any(text.startswith("disconnected") for text in texts)


def test_the_app_does_not_drain_the_refcount_of_true(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    """PySide6 6.12 drops a reference to True on every Python-side Signal.emit(); on Python
    3.11 a few hundred of them abort the interpreter (ui/model.py). The app's notifications
    must not go through emit(): many state changes leave the count where it was."""
    import gc
    import sys

    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)
    gc.collect()  # what earlier tests left holds references to True too
    before = sys.getrefcount(True)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.vms() and app.vms()[0].runstate is Runstate.CONNECTED,
                    "connected")
        for i in range(50):
            app.set_toggle(DEMO_VM, Toggle.PRIMARY, i % 2 == 0)
            app.set_paused(i % 2 == 0)
        for _ in range(3):
            app.reconnect(DEMO_VM)
            await until(lambda: not app._vms[DEMO_VM].reconnecting
                        and app.vms()[0].runstate is Runstate.CONNECTED, "reconnected")
        app.quit()
        await task

    run(qapp, scenario())
    gc.collect()
    assert sys.getrefcount(True) - before > -20, seen.notices


def test_a_vm_whose_guest_goes_away_is_reported_and_waits(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths, tmp_path: Path
) -> None:
    from vdagent_bridge.demo import GuestServer

    sock = tmp_path / "vm.sock"
    config = VmConfig("dev", (Site(Endpoint("unix", path=str(sock))),), Policy())
    app = Application(Options(paths=paths, vms=(config,), tray=False,
                              autostart_dir=tmp_path / "autostart"),
                      tray_available=False, delays=quick)
    seen = Recorder(app)

    async def scenario() -> None:
        server = GuestServer(sock)
        await server.start()
        task = asyncio.create_task(app.run())
        await until(lambda: app.vms() and app.vms()[0].runstate is Runstate.CONNECTED
                    and app._vms["dev"].runtime.session.clipboard_ready, "connected")
        # (The server must have accepted the connection before it closes: a connection
        # still in its backlog would be left open.)
        await until(lambda: server.connections == 1, "accepted")
        await server.close()
        await until(lambda: app.vms()[0].runstate in (Runstate.WAITING, Runstate.CONNECTING)
                    and "no agent socket" in app.vms()[0].detail,
                    lambda: f"waiting, not {app.vms()[0]}")
        assert app.vms()[0].detail == f"no agent socket at {sock} (is the VM running?)"
        app.quit()
        await task

    run(qapp, scenario())
    assert ("dev", "disconnected; reconnecting when the agent port is back",
            "warning") in seen.notices
    assert (paths.state / "vms" / "dev.json").exists(), "the runtime saved its state"


def test_migration_and_failure_notifications(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    """The words for what the runtime reports (a real migration is in tests/qemu)."""
    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.vms() and app.vms()[0].runstate is Runstate.CONNECTED,
                    "connected")
        runtime = app._vms[DEMO_VM].runtime
        seen.notices.clear()
        app._on_runstate(DEMO_VM, Runstate.MIGRATING)
        runtime.migrations += 1
        app._on_runstate(DEMO_VM, Runstate.CONNECTED)
        app._on_runstate(DEMO_VM, Runstate.MIGRATING)
        app._on_runstate(DEMO_VM, Runstate.CONNECTED)
        runtime.failure = "cannot connect to unix:/x: Permission denied"
        app._on_runstate(DEMO_VM, Runstate.FAILED)
        app._on_runstate(DEMO_VM, Runstate.CONNECTED)
        app.quit()
        await task

    run(qapp, scenario())
    agent = f"unix:{app.demo.path}" if app.demo else ""
    assert seen.notices[:3] == [
        ("demo", f"migration done: continuing on {agent}", "info"),
        ("demo", f"the migration did not complete: staying on {agent}", "warning"),
        ("demo", "cannot connect to unix:/x: Permission denied", "error"),
    ]


def test_the_bridges_size_notices_are_notifications(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(demo_options(paths, demo_policy=Policy(max_to_host=16)),
                      tray_available=False, delays=quick)
    seen = Recorder(app)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.clipboard_ready, "the demo")
        assert app.demo is not None
        app.demo.copy_text("far more than sixteen bytes of guest text")
        await until(lambda: any(title == "Clipboard" for title, _, _ in seen.notices),
                    "the notice")
        app.quit()
        await task

    run(qapp, scenario())
    title, text, level = next(n for n in seen.notices if n[0] == "Clipboard")
    assert "larger than the guest → host limit" in text and level == "warning"


def test_the_tray_is_used_where_there_is_one(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(Options(paths=paths, demo=True, autostart_dir=paths.config / "a"),
                      tray_available=True, delays=quick)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.tray is not None, "the tray")
        assert app.tray is not None
        open_menu(app.tray)
        entries = [a.text() for a in app.tray.actions()]
        assert "Show the demo guest" in entries and "Reconnect demo" in entries
        next(a for a in app.tray.actions() if a.text() == "Start at login").trigger()
        assert app.autostart.enabled()
        next(a for a in app.tray.actions() if a.text() == "Quit").trigger()
        await task

    run(qapp, scenario())
    assert isinstance(app.tray, Tray) and app.window is None
    assert (paths.config / "a" / AUTOSTART_FILE).is_file()


def test_a_tray_that_appears_after_the_start_takes_over_from_the_window(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At login the app may start before the panel hosting the tray: it shows its window,
    keeps asking, and moves to the tray once there is one."""
    monkeypatch.setattr(application_module, "TRAY_POLL", 0.02)
    answers = iter([False, False, False])
    app = Application(Options(paths=paths, demo=True, autostart_dir=paths.config / "a"),
                      tray_available=lambda: next(answers, True), delays=quick)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.window is not None, "the window first")
        window = app.window
        assert window is not None and app.tray is None
        await until(lambda: app.tray is not None, "the tray")
        assert app.window is None
        assert not shiboken6.isValid(window) or not window.isVisible()
        app.quit()
        await task

    run(qapp, scenario())


def test_unusable_settings_are_reported_at_start(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    paths.state.mkdir(parents=True)
    (paths.state / "settings.json").write_text("{torn")
    app = Application(demo_options(paths, seconds=0.2), tray_available=False, delays=quick)
    seen = Recorder(app)
    assert run(qapp, app.run()) == 0
    (title, text, level), *_ = seen.notices
    assert title == "Settings" and "not valid JSON" in text and level == "warning"


def test_seconds_ends_the_run(qapp: QApplication, clipboard: QClipboard,
                              paths: AppPaths) -> None:
    app = Application(demo_options(paths, seconds=0.3), tray_available=False, delays=quick)
    assert run(qapp, app.run()) == 0


# ---------------------------------------------------------------- start-up helpers


def test_display_problems_are_found_before_qt_aborts() -> None:
    assert display_problem({}) is not None
    assert "--console" in (display_problem({}) or "")
    assert display_problem({"DISPLAY": ":0"}) is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None


def test_the_backend_is_chosen_and_set_before_qt_starts(tmp_path: Path) -> None:
    """The driver around the decision table (tests/unit/test_display_choice.py): an X11
    session needs no compositor; a Wayland one that cannot be reached falls back to XWayland
    and says why; a wrong override is one line."""
    x11 = {"DISPLAY": ":0"}
    assert choose_backend(x11).backend is Backend.X11 and x11["QT_QPA_PLATFORM"] == "xcb"
    gone = {"DISPLAY": ":0", "WAYLAND_DISPLAY": str(tmp_path / "wayland-gone")}
    choice = choose_backend(gone)
    assert choice.backend is Backend.XWAYLAND and gone["QT_QPA_PLATFORM"] == "xcb"
    assert "could not be asked what it offers: cannot connect to" in choice.details[0]
    with pytest.raises(BackendError, match="no Wayland display"):
        choose_backend({"DISPLAY": ":0"}, Override.WAYLAND)


# ---------------------------------------------------------------- command line


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Options]:
    """The Options the GUI would be started with (the GUI itself is not started)."""
    calls: list[Options] = []

    def fake_run_app(options: Options) -> int:
        calls.append(options)
        return 0

    monkeypatch.setattr(startup_module, "run_app", fake_run_app)
    return calls


def test_cli_groups_vms_their_sites_and_switches(
    tmp_path: Path, started: list[Options]
) -> None:
    a, b, qmp = tmp_path / "a.sock", tmp_path / "b.sock", tmp_path / "q.sock"
    a.touch()
    b.touch()
    config = tmp_path / "config.toml"
    config.write_text('[defaults]\nprimary = true\n[[vm]]\nname = "b"\nclipboard = "to-host"\n'
                      '[[vm.site]]\nagent = "unix:/elsewhere"\n'
                      '[[vm]]\nname = "c"\n[[vm.site]]\nagent = "unix:/c.sock"\n')
    assert main(["--config", str(config), "--state-dir", str(tmp_path / "s"),
                 "--vm", "a", "--endpoint", f"unix:{a}", "--qmp", f"unix:{qmp}",
                 "--endpoint", "tcp:localhost:4000",
                 "--vm", "b", "--endpoint", f"unix:{b}", "--vm", "c",
                 "--clipboard", "to-guest", "--no-primary", "--pointer", "--no-tray",
                 "--seconds", "5"]) == 0
    (options,) = started
    assert [vm.name for vm in options.vms] == ["a", "b", "c"]
    assert options.vms[0].sites == (
        Site(Endpoint("unix", path=str(a)), Endpoint("unix", path=str(qmp))),
        Site(Endpoint("tcp", host="localhost", port=4000)),
    )
    assert options.vms[0].policy.primary is True  # the config's defaults
    assert options.vms[1].policy.clipboard == "to-host"  # b's own policy, its sites from here
    assert options.vms[1].sites == (Site(Endpoint("unix", path=str(b))),)
    assert options.vms[2].sites == (Site(Endpoint("unix", path="/c.sock")),)  # from config
    assert options.overrides == Overrides("to-guest", False, True)
    assert not options.demo and not options.tray and options.seconds == 5
    assert options.paths.state == tmp_path / "s"
    command = list(options.autostart_command)
    assert command[-11:] == ["--vm", "b", "--endpoint", f"unix:{b}", "--vm", "c",
                             "--clipboard", "to-guest", "--no-primary", "--pointer", "--no-tray"]
    assert "--seconds" not in command
    assert command[command.index("--config") + 1] == str(config)
    assert ["--vm", "a", "--endpoint", f"unix:{a}", "--qmp", f"unix:{qmp}"] == \
        command[command.index("--vm"):command.index("--vm") + 6]


def test_cli_without_vms_runs_the_config_or_else_the_demo(
    tmp_path: Path, started: list[Options]
) -> None:
    state = ["--state-dir", str(tmp_path / "s")]
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["--config", str(empty), *state]) == 0
    assert started[-1].demo and started[-1].vms == () and started[-1].tray
    config = tmp_path / "config.toml"
    config.write_text('[[vm]]\nname = "w"\n[[vm.site]]\nagent = "unix:/nowhere/w.sock"\n')
    assert main(["--config", str(config), *state]) == 0
    assert not started[-1].demo and [vm.name for vm in started[-1].vms] == ["w"]
    assert main(["--config", str(config), "--demo", *state]) == 0
    assert started[-1].demo


def test_an_endpoint_before_the_first_vm_belongs_to_it(
    tmp_path: Path, started: list[Options]
) -> None:
    sock = tmp_path / "x.sock"
    sock.touch()
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["--config", str(empty), "--endpoint", f"unix:{sock}", "--vm", "named"]) == 0
    assert [vm.name for vm in started[-1].vms] == ["named"]
    assert main(["--config", str(empty), "--endpoint", f"unix:{sock}"]) == 0
    assert [vm.name for vm in started[-1].vms] == ["vm"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clipboard", "sideways"], "invalid choice: 'sideways'"),
        (["--vm", "a", "--vm", "a"], "--vm a is given twice"),
        (["--vm", "a", "--qmp", "unix:/q"], "--qmp must follow the --endpoint"),
        (["--demo", "--vm", "a"], "--demo runs the demo guest alone"),
        (["--vm", "ghost"], "--vm ghost: no --endpoint for it, and empty.toml has no VM"),
        (["--import-state", "/x.json"], "--import-state takes over one VM"),
        (["--console", "--vm", "a", "--vm", "b"], "--console follows one VM"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, started: list[Options],
    capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    try:
        code = main(["--config", str(empty), *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0
    assert not started


def test_cli_bad_paths_are_one_line(tmp_path: Path, started: list[Options],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err
    assert main(["--state-dir", str(a_file), "--demo"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not started


def test_cli_without_a_display_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Options],
    capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["--config", str(empty), "--demo"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and err.strip().count("\n") == 0
    assert not started


def test_cli_starts_the_real_gui_and_quits_after_seconds(
    qapp: QApplication, clipboard: QClipboard, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["--config", str(empty), "--demo", "--no-tray", "--seconds", "0.5",
                 "--state-dir", str(tmp_path / "state"), "--log-level", "warning"]) == 0


# ---------------------------------------------------------------- pointer surface, files


def test_the_pointer_surface_opens_at_start_and_obeys_the_pointer_switch(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(demo_options(paths, pointer_surface=True), tray_available=False,
                      delays=quick)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.mouse_ready, "the demo")
        demo_vm = app._vms[DEMO_VM]
        surface = demo_vm.surface
        assert surface is not None and surface.isVisible()
        assert surface.windowTitle() == "demo — pointer — vdagent-bridge"
        guest = app.demo.guest  # type: ignore[union-attr]

        QTest.mouseMove(surface, QPoint(surface.width() - 1, surface.height() - 1))
        width, height = demo_vm.pointer.guest_size()  # type: ignore[union-attr]
        await until(lambda: guest.mouse and (guest.mouse[-1].x, guest.mouse[-1].y)
                    == (width - 1, height - 1), lambda: f"the corner, got {guest.mouse[-1:]}")

        app.set_toggle(DEMO_VM, Toggle.POINTER, False)
        assert app.vms()[0].pointer is False
        seen = len(guest.mouse)
        QTest.mouseClick(surface, Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
        app.set_toggle(DEMO_VM, Toggle.POINTER, True)
        app.set_paused(True)
        QTest.mouseClick(surface, Qt.MouseButton.LeftButton, pos=QPoint(6, 6))
        await asyncio.sleep(0.2)
        assert len(guest.mouse) == seen, "nothing crosses a switched-off pointer"

        app.set_paused(False)
        QTest.mouseClick(surface, Qt.MouseButton.LeftButton, pos=QPoint(7, 7))
        await until(lambda: len(guest.mouse) > seen, "the click after the pause")

        # A second open shows the same window; closing it only hides it.
        surface.close()
        assert not surface.isVisible()
        app.open_pointer_surface(DEMO_VM)
        assert demo_vm.surface is surface and surface.isVisible()
        app.quit()
        await task
        assert demo_vm.surface is None

    run(qapp, scenario())


def test_resize_guest_to_surface_sends_the_surface_size(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths
) -> None:
    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.mouse_ready, "the demo")
        assert app._vms[DEMO_VM].surface is None
        app.resize_guest_to_surface(DEMO_VM)  # opens the surface first
        surface = app._vms[DEMO_VM].surface
        assert surface is not None and surface.isVisible()
        size = surface.device_size()
        guest = app.demo.guest  # type: ignore[union-attr]
        await until(lambda: [(m.width, m.height) for m in guest.monitors] == [size],
                    lambda: f"the guest at {size}, it has {guest.monitors}")

        app.set_toggle(DEMO_VM, Toggle.POINTER, False)
        app.resize_guest_to_surface(DEMO_VM)
        assert seen.notices[-1] == (DEMO_VM, "cannot resize the guest display: pointer off",
                                    "warning")
        app.quit()
        await task

    run(qapp, scenario())


def test_files_go_to_the_guest_batch_after_batch_with_progress_and_notices(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths, tmp_path: Path
) -> None:
    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)
    progress: list[str] = []
    app.changed.connect(lambda: progress.append(app.vms()[0].transfer) if app.vms() else None)
    one, two = tmp_path / "one.txt", tmp_path / "two.bin"
    one.write_bytes(b"first file\n")
    two.write_bytes(bytes(range(256)) * 2048)  # 512 KiB
    third = tmp_path / "third.txt"
    third.write_bytes(b"the second batch")

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.clipboard_ready, "the demo")
        guest = app.demo.guest  # type: ignore[union-attr]
        app.send_files(DEMO_VM, [one, two])
        app.send_files(DEMO_VM, [third])  # queued behind the first batch
        await until(lambda: len(guest.files) == 3, lambda: f"the files, got {guest.files}")
        assert guest.files == {"one.txt": one.read_bytes(), "two.bin": two.read_bytes(),
                               "third.txt": third.read_bytes()}
        await until(lambda: app.vms()[0].transfer == "", "the progress line to clear")

        app.send_files(DEMO_VM, [tmp_path])  # a directory: refused in words
        await until(lambda: any(level == "error" for _, _, level in seen.notices),
                    "the error notice")
        app.quit()
        await task

    run(qapp, scenario())
    infos = [text for _, text, level in seen.notices if level == "info"]
    assert "sent 2 files to the guest" in infos and "sent third.txt to the guest" in infos
    errors = [text for _, text, level in seen.notices if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("file transfer failed: ")
    assert tmp_path.name in errors[0] and "directory" in errors[0]
    assert any(text.startswith("Sending two.bin (2 of 2): ") and text.endswith("% of 512.0 KiB")
               for text in progress), progress


def test_a_transfer_can_be_cancelled(
    qapp: QApplication, clipboard: QClipboard, paths: AppPaths, tmp_path: Path
) -> None:
    app = Application(demo_options(paths), tray_available=False, delays=quick)
    seen = Recorder(app)
    big = tmp_path / "big.iso"
    with open(big, "wb") as out:
        out.truncate(512 << 20)  # sparse: 512 MiB to read, nothing on disk

    async def scenario() -> None:
        task = asyncio.create_task(app.run())
        await until(lambda: app.demo is not None and app.vms()
                    and app._vms[DEMO_VM].runtime.session.clipboard_ready, "the demo")
        app.send_files(DEMO_VM, [big])
        await until(lambda: app.vms()[0].transfer.startswith("Sending big.iso: "),
                    "the transfer to start")
        app.cancel_transfer(DEMO_VM)
        await until(lambda: app.vms()[0].transfer == "", "the progress line to clear")
        assert "big.iso" not in app.demo.guest.files  # type: ignore[union-attr]
        app.quit()
        await task

    run(qapp, scenario())
    assert (DEMO_VM, "sending big.iso cancelled", "warning") in seen.notices


def test_cli_passes_the_clipboard_backend_and_keeps_it_for_login(
    tmp_path: Path, started: list[Options]
) -> None:
    assert main(["--state-dir", str(tmp_path / "s"), "--clipboard-backend", "wayland"]) == 0
    (options,) = started
    assert options.clipboard_backend is Override.WAYLAND
    assert list(options.autostart_command)[-2:] == ["--clipboard-backend", "wayland"]
    assert main(["--state-dir", str(tmp_path / "s")]) == 0
    assert started[-1].clipboard_backend is Override.AUTO
    assert "--clipboard-backend" not in started[-1].autostart_command


def test_a_backend_that_cannot_run_here_is_one_line_before_qt_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert main(["--state-dir", str(tmp_path / "s"), "--clipboard-backend", "wayland"]) == 2
    assert capsys.readouterr().err == ("vdagent-bridge: --clipboard-backend wayland: no "
                                       "Wayland display (WAYLAND_DISPLAY is unset)\n")


def test_a_display_that_breaks_is_one_line_of_ours() -> None:
    assert display_gone("The Wayland connection broke. Did the Wayland compositor die?") == (
        "vdagent-bridge: the Wayland compositor went away (The Wayland connection broke. Did "
        "the Wayland compositor die?); quitting")
    assert display_gone("The X11 connection broke (error 1). Did the X11 server die?\n") == (
        "vdagent-bridge: the X server went away (The X11 connection broke (error 1). Did the "
        "X11 server die?); quitting")
    assert display_gone("QSocketNotifier: Invalid socket") is None
