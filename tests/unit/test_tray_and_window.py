"""The tray menu, the fallback window and the status icons, against a fake controller
(offscreen: the tray menu exists and is rebuilt there even though no tray shows it)."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before pytest-qt creates the QApplication

from collections.abc import Sequence  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QPoint  # noqa: E402
from PySide6.QtGui import QAction  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QFileDialog,
    QMenu,
    QMessageBox,
    QSystemTrayIcon,
)
from pytestqt.qtbot import QtBot  # noqa: E402

from vdagent_bridge.display import Globals, choose  # noqa: E402
from vdagent_bridge.runtime import Runstate  # noqa: E402
from vdagent_bridge.ui.desktop import desktop_note  # noqa: E402
from vdagent_bridge.ui.icons import SIZES, draw, status_icon  # noqa: E402
from vdagent_bridge.ui.model import (  # noqa: E402
    Controller,
    DesktopNote,
    IconState,
    Level,
    Toggle,
    VmStatus,
    overall_icon_state,
    vm_icon_state,
)
from vdagent_bridge.ui.tray import Tray  # noqa: E402
from vdagent_bridge.ui.window import MainWindow  # noqa: E402


def vm(name: str = "win11", runstate: Runstate = Runstate.CONNECTED, **kw: object) -> VmStatus:
    fields: dict[str, object] = dict(detail="unix:/run/win11.sock", to_guest=True,
                                     to_host=True, primary=False, paused=False)
    fields.update(kw)
    return VmStatus(name, runstate, **fields)  # type: ignore[arg-type]


class FakeController(Controller):
    """Records what the UI asks for and applies it to its VM list."""

    def __init__(self, vms: Sequence[VmStatus], *, primary: bool = True,
                 demo: bool = False, note: DesktopNote | None = None) -> None:
        super().__init__()
        self.note = note
        self.statuses = list(vms)
        self.is_paused = False
        self.autostart = False
        self.primary = primary
        self.demo = demo
        self.calls: list[tuple[object, ...]] = []

    def vms(self) -> Sequence[VmStatus]:
        return list(self.statuses)

    def paused(self) -> bool:
        return self.is_paused

    def primary_supported(self) -> bool:
        return self.primary

    def set_toggle(self, vm: str, toggle: Toggle, on: bool) -> None:
        self.calls.append(("toggle", vm, toggle, on))
        changes: dict[str, Any] = {toggle.value: on}
        self.statuses = [replace(s, **changes) if s.name == vm else s for s in self.statuses]
        self.changed.emit()

    def set_paused(self, paused: bool) -> None:
        self.calls.append(("paused", paused))
        self.is_paused = paused
        self.changed.emit()

    def reconnect(self, vm: str) -> None:
        self.calls.append(("reconnect", vm))

    def autostart_enabled(self) -> bool:
        return self.autostart

    def set_autostart(self, enabled: bool) -> None:
        self.calls.append(("autostart", enabled))
        self.autostart = enabled

    def has_demo_guest(self) -> bool:
        return self.demo

    def show_demo_guest(self) -> None:
        self.calls.append(("demo",))

    def about_text(self) -> str:
        return "<b>vdagent-bridge</b> test"

    def quit(self) -> None:
        self.calls.append(("quit",))

    def desktop_note(self) -> DesktopNote | None:
        return self.note

    def send_files(self, vm: str, paths: Sequence[Path]) -> None:
        self.calls.append(("send", vm, list(paths)))

    def cancel_transfer(self, vm: str) -> None:
        self.calls.append(("cancel", vm))

    def open_pointer_surface(self, vm: str) -> None:
        self.calls.append(("surface", vm))

    def resize_guest_to_surface(self, vm: str) -> None:
        self.calls.append(("resize", vm))


def texts(actions: list[QAction]) -> list[str]:
    return ["---" if a.isSeparator() else a.text() for a in actions]


def open_menu(tray: Tray) -> None:
    """Open and close the tray menu, as a click would (Qt emits aboutToShow). Not
    ``aboutToShow.emit()``: see ui/model.py on Python-side emits."""
    tray.menu.popup(QPoint(0, 0))
    tray.menu.hide()


def action(tray: Tray, text: str) -> QAction:
    found = [a for a in tray.actions() if a.text() == text]
    assert len(found) == 1, f"{text!r} in {texts(tray.actions())}"
    return found[0]


@pytest.fixture
def tray(qapp: QApplication) -> Tray:
    return Tray(FakeController([vm()]))


# ---------------------------------------------------------------- icons


def test_every_state_has_a_distinct_icon_at_every_size(qapp: QApplication) -> None:
    for size in SIZES:
        images = {state: draw(state, size).toImage() for state in IconState}
        assert all(image.width() == size for image in images.values())
        assert len({bytes(image.constBits()) for image in images.values()}) == len(IconState)
    assert not status_icon(IconState.ERROR).isNull()


@pytest.mark.parametrize(
    ("states", "paused", "expected"),
    [
        ([Runstate.CONNECTED], False, IconState.CONNECTED),
        ([Runstate.CONNECTED, Runstate.CONNECTING], False, IconState.CONNECTING),
        ([Runstate.CONNECTED, Runstate.WAITING], False, IconState.CONNECTING),
        ([Runstate.MIGRATING, Runstate.WAITING], False, IconState.MIGRATING),
        ([Runstate.FAILED, Runstate.MIGRATING], False, IconState.ERROR),
        ([Runstate.FAILED], True, IconState.PAUSED),
        ([], False, IconState.CONNECTING),
    ],
)
def test_the_tray_icon_shows_the_most_urgent_state(
    states: list[Runstate], paused: bool, expected: IconState
) -> None:
    vms = [vm(f"vm{i}", state) for i, state in enumerate(states)]
    assert overall_icon_state(vms, paused) is expected


def test_paused_vms_do_not_count_for_the_icon_unless_all_are() -> None:
    vms = [vm("a", Runstate.FAILED, paused=True), vm("b", Runstate.CONNECTED)]
    assert overall_icon_state(vms, False) is IconState.CONNECTED
    assert overall_icon_state([vm("a", paused=True)], False) is IconState.PAUSED
    assert vm_icon_state(vm("a", Runstate.FAILED), paused=True) is IconState.PAUSED


# ---------------------------------------------------------------- tray menu


def test_menu_lists_the_vm_its_switches_and_the_global_actions(tray: Tray) -> None:
    assert texts(tray.menu.actions()) == [
        "win11: connected",
        "unix:/run/win11.sock",
        "Clipboard to guest",
        "Clipboard to host",
        "PRIMARY selection too",
        "Pointer to guest",
        "Pause this VM",
        "Send file to guest…",
        "Open pointer surface",
        "Resize guest to surface",
        "Reconnect win11",
        "---",
        "Pause all VMs",
        "Start at login",
        "---",
        "About vdagent-bridge",
        "Quit",
    ]
    checked = {a.text(): a.isChecked() for a in tray.menu.actions() if a.isCheckable()}
    assert checked == {"Clipboard to guest": True, "Clipboard to host": True,
                       "PRIMARY selection too": False, "Pointer to guest": True,
                       "Pause this VM": False,
                       "Pause all VMs": False, "Start at login": False}
    assert not action(tray, "win11: connected").isEnabled()


def test_switches_in_the_menu_reach_the_controller(tray: Tray) -> None:
    controller = tray._controller
    assert isinstance(controller, FakeController)
    action(tray, "Clipboard to host").trigger()
    action(tray, "PRIMARY selection too").trigger()
    action(tray, "Pointer to guest").trigger()
    action(tray, "Open pointer surface").trigger()
    action(tray, "Resize guest to surface").trigger()
    action(tray, "Pause all VMs").trigger()
    action(tray, "Start at login").trigger()
    action(tray, "Reconnect win11").trigger()
    action(tray, "Quit").trigger()
    assert controller.calls == [
        ("toggle", "win11", Toggle.TO_HOST, False),
        ("toggle", "win11", Toggle.PRIMARY, True),
        ("toggle", "win11", Toggle.POINTER, False),
        ("surface", "win11"),
        ("resize", "win11"),
        ("paused", True),
        ("autostart", True),
        ("reconnect", "win11"),
        ("quit",),
    ]


def test_send_file_opens_a_picker_that_does_not_block(tray: Tray, tmp_path: Path) -> None:
    files = [tmp_path / "a.txt", tmp_path / "b c.bin"]
    for f in files:
        f.write_bytes(b"x")
    action(tray, "Send file to guest…").trigger()
    dialog = tray._picker
    assert isinstance(dialog, QFileDialog) and dialog.isVisible() and not dialog.isModal()
    assert dialog.fileMode() is QFileDialog.FileMode.ExistingFiles
    assert dialog.windowTitle() == "Send files to win11"
    # What a user's choice does: the dialog's filesSelected with the chosen paths.
    dialog.setDirectory(str(tmp_path))
    dialog.selectFile('"a.txt" "b c.bin"')
    dialog.accept()
    assert tray._controller.calls == [("send", "win11", files)]  # type: ignore[attr-defined]


def test_a_transfer_in_progress_shows_with_a_cancel(qapp: QApplication) -> None:
    controller = FakeController([vm(transfer="Sending notes.txt (1 of 2): 40% of 3.1 MB")])
    tray = Tray(controller)
    line = action(tray, "Sending notes.txt (1 of 2): 40% of 3.1 MB")
    assert not line.isEnabled()
    action(tray, "Cancel file transfer").trigger()
    assert controller.calls == [("cancel", "win11")]
    idle = Tray(FakeController([vm()]))
    assert "Cancel file transfer" not in texts(idle.actions())


def test_the_desktop_note_heads_the_menu_with_details_in_its_tooltip(
    qapp: QApplication,
) -> None:
    note = DesktopNote("Wayland: the clipboard syncs only while a window has focus",
                       ("Wayland lets only the focused app use the clipboard.",
                        "The pointer surface works."))
    tray = Tray(FakeController([vm()], note=note))
    first = tray.menu.actions()[0]
    assert first.text() == note.summary and not first.isEnabled()
    assert first.toolTip() == "Wayland lets only the focused app use the clipboard.\n" \
        "The pointer surface works."
    assert tray.menu.toolTipsVisible()
    assert tray.menu.actions()[1].isSeparator()
    window = MainWindow(FakeController([vm()], note=note))
    assert not window.note.isHidden() and note.summary in window.note.text()
    plain = MainWindow(FakeController([vm()]))
    assert plain.note.isHidden()
    window.close_for_quit()
    plain.close_for_quit()


# ---------------------------------------------------------------- what the desktop allows


def test_the_note_says_the_backend_chosen_at_start() -> None:
    choice = choose({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"},
                    Globals({"zwlr_data_control_manager_v1": 2}), (6, 11))
    note = desktop_note(choice, "wayland", selection=True, tray=True)
    assert note.summary == "Wayland: clipboard followed in the background (data-control)"
    assert note.details == choice.details
    x11 = desktop_note(choose({"DISPLAY": ":0"}, None, (6, 11)), "xcb", selection=True,
                       tray=True)
    assert x11.summary == "X11: clipboard and PRIMARY followed in the background"


def test_native_wayland_without_data_control_says_plainly_that_background_sync_does_not_work(
) -> None:
    choice = choose({"WAYLAND_DISPLAY": "wayland-0"}, Globals({"wl_seat": 7}), (6, 11))
    note = desktop_note(choice, "wayland", selection=False, tray=False)
    assert note.summary.startswith("Wayland: the clipboard syncs only while")
    joined = " ".join(note.details)
    assert "not followed in the background" in joined
    assert "PRIMARY selection is not available" in joined
    assert "No system tray" in joined


def test_a_qt_that_did_not_load_the_chosen_platform_is_not_hidden() -> None:
    choice = choose({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"},
                    Globals({"zwlr_data_control_manager_v1": 2}), (6, 11))
    note = desktop_note(choice, "xcb", selection=True, tray=True)
    assert note.summary == "Clipboard through Qt's xcb platform"
    assert note.details[0].startswith("Chosen: Wayland: clipboard followed in the background")
    assert "but Qt runs on 'xcb'" in note.details[0]


def test_x11_without_a_tray_or_primary_says_so() -> None:
    note = desktop_note(choose({"DISPLAY": ":0"}, None, (6, 11)), "xcb", selection=False,
                        tray=False)
    assert "PRIMARY selection is not available" in " ".join(note.details)
    assert "No system tray" in note.details[-1]


def test_offscreen_has_no_desktop_clipboard() -> None:
    note = desktop_note(None, "offscreen", selection=False, tray=False)
    assert "offscreen" in note.summary


def test_the_menu_is_rebuilt_when_it_opens(tray: Tray) -> None:
    controller = tray._controller
    assert isinstance(controller, FakeController)
    controller.statuses = [vm(runstate=Runstate.FAILED, detail="permission denied",
                              to_guest=False)]
    controller.autostart = True
    assert "win11: error" not in texts(tray.menu.actions())  # not before it opens
    open_menu(tray)
    assert texts(tray.menu.actions())[:2] == ["win11: error", "permission denied"]
    assert not action(tray, "Clipboard to guest").isChecked()
    assert action(tray, "Start at login").isChecked()


def test_primary_is_greyed_out_where_the_display_has_none(qapp: QApplication) -> None:
    tray = Tray(FakeController([vm()], primary=False))
    primary = action(tray, "PRIMARY selection too (not on this display)")
    assert not primary.isEnabled()


def test_the_demo_guest_entry_shows_only_with_the_demo(qapp: QApplication) -> None:
    tray = Tray(FakeController([vm("demo")], demo=True))
    action(tray, "Show the demo guest").trigger()
    assert ("demo",) in tray._controller.calls  # type: ignore[attr-defined]
    plain = Tray(FakeController([vm()]))
    assert "Show the demo guest" not in texts(plain.actions())


def test_many_vms_get_a_submenu_each(qapp: QApplication) -> None:
    controller = FakeController([vm("a"), vm("b", Runstate.WAITING), vm("c", paused=True)])
    tray = Tray(controller)
    top = texts(tray.menu.actions())
    assert top[:3] == ["a: connected", "b: waiting to reconnect", "c: connected, paused"]
    submenu = tray.menu.actions()[1].menu()
    assert isinstance(submenu, QMenu)
    assert "Reconnect b" in texts(submenu.actions())
    next(a for a in submenu.actions() if a.text() == "Clipboard to guest").trigger()
    assert controller.calls == [("toggle", "b", Toggle.TO_GUEST, False)]
    open_menu(tray)  # rebuilding replaces the submenus
    assert len(tray._submenus) == 3


def test_the_icon_and_tooltip_follow_the_controller(tray: Tray) -> None:
    controller = tray._controller
    assert isinstance(controller, FakeController)
    connected = tray.icon.icon().pixmap(22, 22).toImage()
    controller.set_paused(True)
    assert tray.icon.icon().pixmap(22, 22).toImage() != connected
    assert tray.icon.toolTip() == "vdagent-bridge — paused\nwin11: connected"


def test_notifications_go_to_the_tray(tray: Tray, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[tuple[object, ...]] = []
    monkeypatch.setattr(tray.icon, "showMessage", lambda *args: shown.append(args))
    tray._controller.notify.emit("win11", "connected", Level.INFO.value)
    tray._controller.notify.emit("Clipboard", "too large", Level.WARNING.value)
    assert shown == [
        ("win11", "connected", QSystemTrayIcon.MessageIcon.Information, 6000),
        ("Clipboard", "too large", QSystemTrayIcon.MessageIcon.Warning, 6000),
    ]


def test_about_opens_a_box_that_does_not_block(tray: Tray, qtbot: QtBot) -> None:
    action(tray, "About vdagent-bridge").trigger()
    boxes = [w for w in QApplication.topLevelWidgets()
             if isinstance(w, QMessageBox) and w.isVisible()]
    assert len(boxes) == 1 and not boxes[0].isModal()
    assert "vdagent-bridge" in boxes[0].text()
    boxes[0].close()


def test_a_long_detail_is_shortened_in_the_middle(qapp: QApplication) -> None:
    path = "unix:/run/user/1000/libvirt/qemu/run/channel/target/domain-7-win11/org.qemu.sock"
    tray = Tray(FakeController([vm(detail=path)]))
    line = tray.menu.actions()[1]
    assert len(line.text()) == 60 and "…" in line.text()
    assert line.text().startswith("unix:/run/user/1000/") and line.text().endswith("org.qemu.sock")
    assert line.toolTip() == path


def test_closing_the_tray_disconnects_it(tray: Tray) -> None:
    tray.close()
    assert not tray.icon.isVisible()
    tray._controller.changed.emit()  # nothing is redrawn any more: no error


# ---------------------------------------------------------------- fallback window


def test_window_has_the_same_controls(qtbot: QtBot) -> None:
    controller = FakeController([vm(), vm("dev", Runstate.WAITING, detail="trying x")],
                                demo=True)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    assert list(window.vm_boxes) == ["win11", "dev"]
    box = window.vm_boxes["dev"]
    assert box.title() == "dev"
    assert (box.status.text(), box.detail.text()) == ("waiting to reconnect", "trying x")
    assert [b.text() for b in box.toggles.values()] == [
        "Clipboard to guest", "Clipboard to host", "PRIMARY selection too",
        "Pointer to guest", "Pause this VM",
    ]
    assert [b.isChecked() for b in box.toggles.values()] == [True, True, False, True, False]
    assert window.demo_button is not None

    box.toggles[Toggle.TO_GUEST].click()
    box.toggles[Toggle.PAUSED].click()
    box.reconnect.click()
    box.surface.click()
    box.resize_guest.click()
    window.pause.click()
    window.autostart.click()
    window.demo_button.click()
    assert controller.calls == [
        ("toggle", "dev", Toggle.TO_GUEST, False),
        ("toggle", "dev", Toggle.PAUSED, True),
        ("reconnect", "dev"),
        ("surface", "dev"),
        ("resize", "dev"),
        ("paused", True),
        ("autostart", True),
        ("demo",),
    ]
    assert not box.toggles[Toggle.TO_GUEST].isChecked()
    assert box.status.text() == "waiting to reconnect, paused"
    assert box.transfer.isHidden() and box.cancel.isHidden()
    controller.statuses = [vm(), vm("dev", transfer="Sending a.iso: 10% of 4.0 GB")]
    controller.changed.emit()
    assert box.transfer.text() == "Sending a.iso: 10% of 4.0 GB" and not box.cancel.isHidden()
    box.cancel.click()
    assert controller.calls[-1] == ("cancel", "dev")
    assert window.pause.isChecked()


def test_window_follows_state_changes_and_shows_notifications(qtbot: QtBot) -> None:
    controller = FakeController([vm(runstate=Runstate.CONNECTING, detail="")], primary=False)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    box = window.vm_boxes["win11"]
    assert box.status.text() == "connecting" and box.detail.isHidden()
    assert not box.toggles[Toggle.PRIMARY].isEnabled()
    controller.statuses = [vm(runstate=Runstate.CONNECTED, detail="unix:/s")]
    controller.changed.emit()
    assert (box.status.text(), box.detail.text()) == ("connected", "unix:/s")
    assert not box.detail.isHidden()
    controller.notify.emit("Clipboard", "the guest clipboard was too large",
                           Level.WARNING.value)
    assert window.message.text().endswith("Clipboard: the guest clipboard was too large")


def test_closing_the_window_quits(qtbot: QtBot) -> None:
    controller = FakeController([vm()])
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    window.close()
    assert controller.calls == [("quit",)]
    other = MainWindow(controller)
    qtbot.addWidget(other)
    other.show()
    other.close_for_quit()  # the app closing it: no second quit
    assert controller.calls == [("quit",)]
