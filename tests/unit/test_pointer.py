"""The pointer bridge and the pointer surface (offscreen, on a qasync loop), against the
simulated guest on a real UNIX socket: what the guest receives is checked, not our state."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before pytest-qt creates the QApplication

import asyncio  # noqa: E402
import stat  # noqa: E402
from collections.abc import AsyncIterator, Callable, Coroutine  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import (  # noqa: E402
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QImageWriter,
    QMouseEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QApplication  # noqa: E402
from qasync import QEventLoop  # noqa: E402

from tests.helpers import until  # noqa: E402
from vdagent_bridge.bridges import GuestScreen, PointerBridge, ScreenUnavailable  # noqa: E402
from vdagent_bridge.demo import GuestServer  # noqa: E402
from vdagent_bridge.demo.guest import SimulatedGuest  # noqa: E402
from vdagent_bridge.protocol import MonitorConfig, MouseButton  # noqa: E402
from vdagent_bridge.protocol.messages import MouseState  # noqa: E402
from vdagent_bridge.runtime import AgentCommands, Endpoint, Site, VmRuntime  # noqa: E402
from vdagent_bridge.runtime.pointer import CONGESTED as HIGH_WATER  # noqa: E402
from vdagent_bridge.ui.pointer_surface import KEYBOARD_NOTE, PointerSurface  # noqa: E402

T = TypeVar("T")
LEFT, MIDDLE, RIGHT = MouseButton.LEFT, MouseButton.MIDDLE, MouseButton.RIGHT
EV_REL, REL_WHEEL = 0x02, 0x08


def run(qapp: QApplication, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a qasync loop over the test's QApplication, as the app does (which
    lives on when its windows close)."""
    qapp.setQuitOnLastWindowClosed(False)
    loop = QEventLoop(qapp)
    try:
        result: T = loop.run_until_complete(asyncio.wait_for(coro, 30))
        return result
    finally:
        loop.close()


async def settle() -> None:
    """Long enough for anything scheduled to have been sent and received."""
    await asyncio.sleep(0.1)


def quick() -> Any:
    while True:
        yield 0.05


class Vm:
    """A VmRuntime connected to the simulated guest, and its pointer bridge."""

    def __init__(self, runtime: VmRuntime, server: GuestServer, bridge: PointerBridge) -> None:
        self.runtime, self.server, self.bridge = runtime, server, bridge

    @property
    def guest(self) -> SimulatedGuest:
        return self.server.guest

    def positions(self) -> list[tuple[int, int, int]]:
        return [(m.x, m.y, int(m.buttons)) for m in self.guest.mouse]


@asynccontextmanager
async def connected(tmp_path: Path, **bridge_kw: Any) -> AsyncIterator[Vm]:
    path = tmp_path / "agent.sock"
    async with GuestServer(path) as server:
        runtime = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], delays=quick)
        task = asyncio.create_task(runtime.run())
        await until(lambda: runtime.session.mouse_ready)
        bridge = PointerBridge(runtime, **bridge_kw)
        try:
            yield Vm(runtime, server, bridge)
        finally:
            bridge.close()
            await runtime.stop()
            await asyncio.wait_for(task, 5)


# ------------------------------------------------------------------ the bridge


def test_many_moves_in_one_loop_turn_reach_the_guest_as_one_message_with_the_last_position(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            for i in range(50):
                vm.bridge.move(10 + i, 20 + i)
            await until(lambda: vm.guest.mouse)
            await settle()
            assert vm.positions() == [(59, 69, 0)]
            assert vm.bridge.coalesced == 49

    run(qapp, scenario())


def test_motion_is_sent_again_once_the_interval_has_passed(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path, min_interval=0.05) as vm:
            vm.bridge.move(1, 1)
            await until(lambda: len(vm.guest.mouse) == 1)
            vm.bridge.move(2, 2)
            vm.bridge.move(3, 3)
            await asyncio.sleep(0.02)
            assert len(vm.guest.mouse) == 1  # not before the interval is over
            await until(lambda: len(vm.guest.mouse) == 2)
            assert vm.positions() == [(1, 1, 0), (3, 3, 0)]

    run(qapp, scenario())


def test_a_press_after_moves_sends_the_move_then_the_press_in_order(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            vm.bridge.move(5, 5)
            vm.bridge.move(100, 200)
            assert vm.bridge.press(LEFT)
            assert vm.bridge.release(LEFT)
            await until(lambda: len(vm.guest.mouse) >= 3)
            await settle()
            assert vm.positions() == [(100, 200, 0), (100, 200, int(LEFT)), (100, 200, 0)]

    run(qapp, scenario())


def test_buttons_are_never_merged_or_dropped(qapp: QApplication, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            vm.bridge.move(7, 8)
            for action, button in [("press", LEFT), ("press", RIGHT), ("release", LEFT),
                                   ("press", MIDDLE), ("release", RIGHT),
                                   ("release", MIDDLE), ("press", MouseButton.SIDE),
                                   ("release", MouseButton.SIDE)]:
                getattr(vm.bridge, action)(button)
            await until(lambda: len(vm.guest.mouse) >= 9)
            await settle()
            masks = [b for _, _, b in vm.positions()]
            assert masks == [0, 0x02, 0x0A, 0x08, 0x0C, 0x04, 0, 0x40, 0]
            # In the guest: one key record per change, in order.
            keys = [(c, v) for t, c, v in vm.guest.uinput_records() if t == 0x01]
            assert keys == [(0x110, 1), (0x111, 1), (0x110, 0), (0x112, 1), (0x111, 0),
                            (0x112, 0), (0x113, 1), (0x113, 0)]

    run(qapp, scenario())


def test_wheel_steps_are_the_wheel_bit_pressed_then_released(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            vm.bridge.move(300, 400)
            assert vm.bridge.wheel(2)
            assert vm.bridge.wheel(-1)
            assert not vm.bridge.wheel(3, horizontal=True)  # no horizontal wheel
            await until(lambda: len(vm.guest.mouse) >= 7)
            await settle()
            assert vm.positions() == [(300, 400, 0), (300, 400, 0x10), (300, 400, 0),
                                      (300, 400, 0x10), (300, 400, 0), (300, 400, 0x20),
                                      (300, 400, 0)]
            wheel = [v for t, c, v in vm.guest.uinput_records() if (t, c) == (EV_REL, REL_WHEEL)]
            assert wheel == [1, 1, -1]

    run(qapp, scenario())


def test_coordinates_are_clamped_to_the_guest_display(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path, guest_size=(800, 600)) as vm:
            vm.bridge.move(5000, -3)
            await until(lambda: vm.guest.mouse)
            assert vm.positions() == [(799, 0, 0)]

    run(qapp, scenario())


def test_pointer_off_sends_nothing_and_nothing_stale_when_back_on(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            vm.bridge.move(10, 10)
            await until(lambda: vm.guest.mouse)
            vm.bridge.move(20, 20)  # pending when the switch goes off: dropped
            vm.bridge.set_enabled(False)
            assert vm.bridge.unavailable() == "pointer off"
            vm.bridge.move(30, 30)
            assert not vm.bridge.press(LEFT)
            assert not vm.bridge.wheel(1)
            assert not vm.bridge.resize_guest(640, 480)
            assert vm.runtime.session.bytes_to_send == 0
            await settle()
            assert vm.positions() == [(10, 10, 0)]

            vm.bridge.set_enabled(True)
            await settle()
            assert vm.positions() == [(10, 10, 0)]  # nothing stale on the way back
            # The next event carries the host's real state: the button pressed meanwhile.
            vm.bridge.move(40, 40)
            await until(lambda: len(vm.guest.mouse) == 2)
            assert vm.positions()[-1] == (40, 40, int(LEFT))

    run(qapp, scenario())


def test_nothing_is_queued_before_the_guest_announced_the_pointer(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        runtime = VmRuntime("vm", [Site(Endpoint("unix", path=str(tmp_path / "none")))],
                            delays=quick)
        bridge = PointerBridge(runtime)
        assert bridge.unavailable() == "not connected"
        bridge.move(1, 2)
        assert not bridge.press(LEFT)
        await settle()
        assert runtime.session.bytes_to_send == 0
        assert bridge.guest_size() == (1024, 768)
        with pytest.raises(ValueError, match="0..255"):
            PointerBridge(runtime, display_id=256)

    run(qapp, scenario())


def test_motion_waits_while_output_is_held_and_only_the_latest_goes(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path, min_interval=0.0) as vm:
            session = vm.runtime.session
            conn = vm.runtime.connection
            assert conn is not None
            conn.hold = True  # as during a migration: our output stays in the session
            session.send_clipboard_data  # noqa: B018 (the session is real)
            for _ in range(HIGH_WATER // 33 + 10):  # fill the session beyond the mark
                session.send_mouse(1, 1)
            held = session.bytes_to_send
            for i in range(20):
                vm.bridge.move(100 + i, 100)
                await asyncio.sleep(0.005)
            assert session.bytes_to_send == held  # motion waited
            conn.hold = False
            vm.runtime.flush()
            await until(lambda: vm.guest.mouse and vm.guest.mouse[-1].x == 119)
            await settle()
            assert [m.x for m in vm.guest.mouse if m.x != 1] == [119]

    run(qapp, scenario())


def test_resize_guest_sends_monitors_config_and_the_guest_size_follows(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path, guest_size=(1280, 800)) as vm:
            assert vm.bridge.guest_size() == (1280, 800)  # configured
            assert vm.bridge.resize_guest(640, 480)
            await until(lambda: vm.guest.monitors == (MonitorConfig(640, 480),))
            assert vm.bridge.guest_size() == (640, 480)  # what we sent
            vm.bridge.set_observed_size((800, 600))
            assert vm.bridge.guest_size() == (800, 600)  # what the screen shows
            assert not vm.bridge.resize_guest(0, 480)

    run(qapp, scenario())


# ------------------------------------------------------------------ the surface


class FakeRuntime(AgentCommands):
    """Enough of a VM for geometry tests: nothing connected."""

    name = "vm"
    connected = False  # type: ignore[assignment]

    def __init__(self) -> None:
        from vdagent_bridge.protocol import HostSession

        self.session = HostSession()
        super().__init__()

    def flush(self) -> None:  # pragma: no cover - nothing is ever sent
        raise AssertionError("nothing may be sent")


def surface_of(size: tuple[int, int], guest: tuple[int, int]) -> PointerSurface:
    bridge = PointerBridge(FakeRuntime(), guest_size=guest)
    surface = PointerSurface(bridge, "vm")
    surface.resize(*size)
    return surface


def test_mapping_keeps_the_aspect_ratio_and_reaches_both_corners(qapp: QApplication) -> None:
    surface = surface_of((600, 384), (1024, 768))  # letterbox bars left and right
    assert surface.guest_area() == (44, 0, 512, 384)
    assert surface.map_to_guest(QPointF(44, 0)) == (0, 0)
    assert surface.map_to_guest(QPointF(555, 383)) == (1023, 767)
    assert surface.map_to_guest(QPointF(0, 0)) == (0, 0)  # in the bar: clamped
    assert surface.map_to_guest(QPointF(599, 383)) == (1023, 767)
    # Half way: 256·1023/511 = 512.5 → 513 and 192·767/383 = 384.5 → 385 (half up).
    assert surface.map_to_guest(QPointF(44 + 256, 192)) == (513, 385)

    tall = surface_of((400, 500), (800, 600))  # bars above and below
    assert tall.guest_area() == (0, 100, 400, 300)
    assert tall.map_to_guest(QPointF(0, 100)) == (0, 0)
    assert tall.map_to_guest(QPointF(399, 399)) == (799, 599)

    same = surface_of((640, 480), (640, 480))  # scale 1: the identity
    assert all(same.map_to_guest(QPointF(x, y)) == (x, y)
               for x, y in [(0, 0), (1, 1), (320, 240), (639, 479), (123, 456)])

    up = surface_of((1600, 1200), (800, 600))  # larger than the guest
    assert up.map_to_guest(QPointF(0, 0)) == (0, 0)
    assert up.map_to_guest(QPointF(1599, 1199)) == (799, 599)


class HiDpiSurface(PointerSurface):
    """A surface on a screen with 1.5 device pixels per logical pixel."""

    def devicePixelRatioF(self) -> float:  # noqa: N802 (Qt's name)
        return 1.5


def test_mapping_is_in_device_pixels_on_a_scaled_screen(qapp: QApplication) -> None:
    bridge = PointerBridge(FakeRuntime(), guest_size=(1200, 900))
    surface = HiDpiSurface(bridge, "vm")
    surface.resize(400, 300)  # logical: 600×450 device pixels
    assert surface.device_size() == (600, 450)
    assert surface.guest_area() == (0, 0, 600, 450)
    assert surface.map_to_guest(QPointF(0, 0)) == (0, 0)
    # Logical 399.5 is device 599.25: the last device pixel, the guest's last.
    assert surface.map_to_guest(QPointF(399.5, 299.5)) == (1199, 899)
    # Device pixel 300 (logical 200.0): round_half_up(300·1199/599 = 600.5) = 601.
    assert surface.map_to_guest(QPointF(200, 100)) == (601, (150 * 899 * 2 + 449) // 898)
    image = surface.grab().toImage()
    assert not image.isNull()


def test_resize_guest_to_surface_asks_for_the_surface_size_in_device_pixels(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            surface = PointerSurface(vm.bridge, "vm")
            surface.resize(720, 450)
            assert surface.resize_guest_to_surface()
            await until(lambda: vm.guest.monitors == (MonitorConfig(720, 450),))
            assert surface.guest_area() == (0, 0, 720, 450)
            vm.bridge.set_enabled(False)
            assert not surface.resize_guest_to_surface()
            surface.close_for_quit()

    run(qapp, scenario())


def mouse(kind: QEvent.Type, x: float, y: float,
          button: Qt.MouseButton = Qt.MouseButton.NoButton,
          buttons: Qt.MouseButton = Qt.MouseButton.NoButton) -> QMouseEvent:
    return QMouseEvent(kind, QPointF(x, y), QPointF(x, y), button, buttons,
                       Qt.KeyboardModifier.NoModifier)


def wheel(x: float, y: float, dy: int, dx: int = 0) -> QWheelEvent:
    return QWheelEvent(QPointF(x, y), QPointF(x, y), QPoint(0, 0), QPoint(dx, dy),
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                       Qt.ScrollPhase.NoScrollPhase, False)


def test_qt_pointer_events_on_the_surface_reach_the_guest_mapped(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            surface = PointerSurface(vm.bridge, "vm")
            surface.resize(512, 384)  # half the guest's 1024×768
            surface.show()
            send = QApplication.sendEvent
            for x in range(10, 100):
                send(surface, mouse(QEvent.Type.MouseMove, x, 50))
            await until(lambda: vm.guest.mouse)
            left, no = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
            send(surface, mouse(QEvent.Type.MouseButtonPress, 100, 50, left, left))
            send(surface, mouse(QEvent.Type.MouseButtonRelease, 100, 50, left, no))
            send(surface, mouse(QEvent.Type.MouseButtonPress, 511, 383,
                                Qt.MouseButton.RightButton, Qt.MouseButton.RightButton))
            send(surface, mouse(QEvent.Type.MouseButtonRelease, 511, 383,
                                Qt.MouseButton.RightButton, no))
            send(surface, wheel(511, 383, 120))
            send(surface, wheel(511, 383, 60))  # half a notch: kept
            send(surface, wheel(511, 383, 60))  # … one notch with the rest
            send(surface, wheel(511, 383, -240))
            send(surface, wheel(511, 383, 0, 120))  # horizontal: nothing
            await until(lambda: len(vm.guest.mouse) >= 14)
            await settle()
            x99, y50 = (99 * 1023 * 2 + 511) // 1022, (50 * 767 * 2 + 383) // 766
            x100 = (100 * 1023 * 2 + 511) // 1022
            corner = [(1023, 767, b) for b in (0, 8, 0, 0x10, 0, 0x10, 0, 0x20, 0, 0x20, 0)]
            expected = [
                (x99, y50, 0),  # 90 moves in one loop turn: one message
                (x100, y50, 0), (x100, y50, 2), (x100, y50, 0),  # move, press, release
                *corner,
            ]
            got = vm.positions()
            assert got == expected, got
            surface.close_for_quit()

    run(qapp, scenario())


def test_a_button_held_when_the_surface_hides_is_released_in_the_guest(
    qapp: QApplication, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            surface = PointerSurface(vm.bridge, "vm")
            surface.show()
            left = Qt.MouseButton.LeftButton
            QApplication.sendEvent(surface, mouse(QEvent.Type.MouseButtonPress, 5, 5, left,
                                                  left))
            surface.close()  # a normal close hides
            assert surface.isHidden()
            await until(lambda: len(vm.guest.mouse) >= 3)
            assert [b for _, _, b in vm.positions()][-2:] == [2, 0]
            surface.close_for_quit()

    run(qapp, scenario())


def drop_event(mime: QMimeData, kind: type[Any] = QDropEvent) -> Any:
    event = kind(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                 Qt.KeyboardModifier.NoModifier)
    event.setAccepted(False)
    return event


def test_dropped_local_files_are_handed_over_and_others_refused(
    qapp: QApplication, tmp_path: Path
) -> None:
    # The handlers are called directly: a drop sent with sendEvent only reaches the widget
    # inside a drag Qt itself runs.
    surface = surface_of((400, 300), (1024, 768))
    got: list[list[Path]] = []
    surface.files_dropped.connect(got.append)
    one, two = tmp_path / "a.txt", tmp_path / "b c.bin"
    one.write_text("a")
    two.write_bytes(b"b")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(one)), QUrl.fromLocalFile(str(two))])
    enter = drop_event(mime, QDragEnterEvent)
    surface.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = drop_event(mime)
    surface.dropEvent(drop)
    assert drop.isAccepted()
    assert got == [[one, two]]
    assert surface._status == "sending 2 files to the guest"

    links = QMimeData()
    links.setUrls([QUrl("https://example.org/file.txt")])
    enter = drop_event(links, QDragEnterEvent)
    surface.dragEnterEvent(enter)
    assert not enter.isAccepted()
    assert "only local files" in surface._status
    surface.dropEvent(drop_event(links))
    text = QMimeData()
    text.setText("just text")
    surface.dropEvent(drop_event(text))
    assert surface._status == "only files can be dropped here (to send to the guest)"
    folder = QMimeData()
    folder.setUrls([QUrl.fromLocalFile(str(tmp_path))])
    surface.dropEvent(drop_event(folder))
    assert "folders cannot be sent" in surface._status
    assert got == [[one, two]]


def test_the_placeholder_says_what_is_missing_and_that_the_keyboard_stays(
    qapp: QApplication,
) -> None:
    surface = surface_of((400, 300), (1024, 768))
    assert surface.bridge.unavailable() == "not connected"
    assert surface._problem == "no screen image: the VM has no QMP"
    image = surface.grab().toImage()
    assert not image.isNull()
    centre = image.pixelColor(200, 150)
    assert centre != QColor("#141414")  # the guest area is drawn
    assert "vdagent protocol has no keyboard" in KEYBOARD_NOTE


def test_the_surface_shows_the_screendump_and_maps_to_its_size(
    qapp: QApplication, tmp_path: Path
) -> None:
    screen = QImage(800, 600, QImage.Format.Format_RGB32)
    screen.fill(QColor("#c03030"))
    calls: list[int] = []

    async def dump() -> QImage | None:
        calls.append(1)
        await asyncio.sleep(0.12)  # slower than the interval: ticks are skipped
        return screen

    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            surface = PointerSurface(vm.bridge, "vm", screendump=dump, interval=0.03)
            surface.resize(400, 300)
            surface.show()
            await until(lambda: surface.dumps >= 2)
            assert surface.skipped >= 2
            assert vm.bridge.guest_size() == (800, 600)  # the screen's own size
            assert surface.map_to_guest(QPointF(399, 299)) == (799, 599)
            shot = surface.grab().toImage()
            assert shot.pixelColor(200, 150) == QColor("#c03030")
            surface.hide()
            count = len(calls)
            await asyncio.sleep(0.2)
            assert len(calls) == count  # no dumps while hidden
            surface.close_for_quit()

    run(qapp, scenario())


def test_a_failing_screendump_shows_why(qapp: QApplication, tmp_path: Path) -> None:
    async def dump() -> QImage | None:
        raise ScreenUnavailable("no screen image: the QMP monitor is not connected")

    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            surface = PointerSurface(vm.bridge, "vm", screendump=dump, interval=0.02)
            surface.show()
            await until(lambda: surface._problem.startswith("no screen image"))
            assert surface.current_image() is None
            surface.close_for_quit()

    run(qapp, scenario())


class DumpingVm:
    """A VM whose screendump writes a PNG, as QEMU would (or has no monitor)."""

    def __init__(self, monitor: bool = True) -> None:
        self.monitor = monitor
        self.paths: list[Path] = []

    async def screendump(self, path: Path) -> bool:
        if not self.monitor:
            return False
        self.paths.append(path)
        image = QImage(64, 48, QImage.Format.Format_RGB32)
        image.fill(QColor("green"))
        assert QImageWriter(str(path), b"png").write(image)
        return True


def test_guest_screen_loads_the_dump_from_a_private_directory(
    qapp: QApplication,
) -> None:
    async def scenario() -> None:
        vm = DumpingVm()
        screen = GuestScreen(vm)
        image = await screen()
        assert image is not None and (image.width(), image.height()) == (64, 48)
        directory = vm.paths[0].parent
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        screen.close()
        assert not directory.exists()

        with pytest.raises(ScreenUnavailable, match="not connected"):
            await GuestScreen(DumpingVm(monitor=False))()

    run(qapp, scenario())


def test_runtime_screendump_without_qmp_is_false(qapp: QApplication, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            assert not await vm.runtime.screendump(tmp_path / "screen")
            with pytest.raises(ScreenUnavailable, match="no QMP monitor configured"):
                await GuestScreen(vm.runtime)()

    run(qapp, scenario())


def test_mouse_state_messages_are_13_byte_bodies(qapp: QApplication, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as vm:
            vm.bridge.move(3, 4)
            await until(lambda: vm.guest.mouse)
            assert vm.guest.mouse == [MouseState(3, 4, MouseButton.NONE, 0)]
            assert "mouse event for unknown monitor" not in vm.guest.log

    run(qapp, scenario())


# ------------------------------------------------------------------ screendump over QMP


class FakeQemu:
    """A QMP monitor that answers like QEMU: ``png`` says whether ``screendump`` takes
    ``format=png`` (QEMU >= 7.1); ``fail`` makes every dump fail as with no display."""

    def __init__(self, path: Path, *, png: bool, fail: bool = False) -> None:
        self.path, self.png, self.fail = path, png, fail
        self.dumps: list[dict[str, Any]] = []
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> FakeQemu:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import json

        def send(obj: dict[str, Any]) -> None:
            writer.write(json.dumps(obj).encode() + b"\r\n")

        send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0},
                                  "package": ""}, "capabilities": []}})
        decoder, buf = json.JSONDecoder(), ""
        try:
            while chunk := await reader.read(65536):
                buf += chunk.decode()
                while buf.strip():  # QMP is a stream of JSON values, not lines
                    try:
                        msg, end = decoder.raw_decode(buf.lstrip())
                    except json.JSONDecodeError:
                        break
                    buf = buf.lstrip()[end:]
                    self._answer(msg, send)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _answer(self, msg: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        name, args, ident = msg["execute"], msg.get("arguments", {}), msg.get("id")
        reply: dict[str, Any] = {"return": {}}
        if name == "query-status":
            reply = {"return": {"status": "running", "running": True}}
        elif name == "screendump":
            self.dumps.append(args)
            if self.fail:
                reply = {"error": {"class": "GenericError",
                                   "desc": "There is no console to take a "
                                           "screendump from"}}
            elif "format" in args and not self.png:
                reply = {"error": {"class": "GenericError",
                                   "desc": "Parameter 'format' is unexpected"}}
            else:
                image = QImage(40, 30, QImage.Format.Format_RGB32)
                image.fill(QColor("navy"))
                fmt = b"png" if "format" in args else b"ppm"
                assert QImageWriter(args["filename"], fmt).write(image)
        if ident is not None:
            reply["id"] = ident
        send(reply)


@pytest.mark.parametrize("png", [True, False], ids=["qemu-7.1+", "older-qemu"])
def test_runtime_screendump_uses_the_followers_monitor_png_or_ppm(
    qapp: QApplication, tmp_path: Path, png: bool
) -> None:
    async def scenario() -> None:
        agent, qmp = tmp_path / "agent.sock", tmp_path / "qmp.sock"
        async with GuestServer(agent), FakeQemu(qmp, png=png) as qemu:
            runtime = VmRuntime("vm", [Site(Endpoint("unix", path=str(agent)),
                                            Endpoint("unix", path=str(qmp)))], delays=quick)
            task = asyncio.create_task(runtime.run())
            await until(lambda: runtime.qmp_open)
            screen = GuestScreen(runtime)
            for _ in range(2):
                image = await screen()
                assert image is not None and (image.width(), image.height()) == (40, 30)
            # One monitor (the follower's), and older QEMUs are asked for PNG only once.
            formats = [d.get("format") for d in qemu.dumps]
            assert formats == (["png", "png"] if png else ["png", None, None])
            assert all(Path(d["filename"]).is_absolute() for d in qemu.dumps)
            screen.close()
            await runtime.stop()
            await asyncio.wait_for(task, 5)
            assert not runtime.qmp_open
            assert not await runtime.screendump(tmp_path / "screen")  # no monitor open

    run(qapp, scenario())


def test_a_failed_screendump_says_why(qapp: QApplication, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, qmp = tmp_path / "agent.sock", tmp_path / "qmp.sock"
        async with GuestServer(agent), FakeQemu(qmp, png=True, fail=True):
            runtime = VmRuntime("vm", [Site(Endpoint("unix", path=str(agent)),
                                            Endpoint("unix", path=str(qmp)))], delays=quick)
            task = asyncio.create_task(runtime.run())
            await until(lambda: runtime.qmp_open)
            with pytest.raises(ScreenUnavailable, match="no console to take a screendump"):
                await GuestScreen(runtime)()
            await runtime.stop()
            await asyncio.wait_for(task, 5)

    run(qapp, scenario())
