"""The Qt clipboard bridge, offscreen, against real host sessions paired with simulated guests.

The offscreen platform's clipboard lives in this process and has no PRIMARY, so PRIMARY is
covered here only as policy (what is never grabbed or answered); the X11 system test
(tests/system/test_clipboard_bridge_x11.py) runs it for real.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before pytest-qt creates the QApplication

from collections import deque  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData  # noqa: E402
from PySide6.QtGui import QClipboard, QColor, QGuiApplication, QImage, QImageWriter  # noqa: E402
from pytestqt.qtbot import QtBot  # noqa: E402

from tests.helpers import Pair, drain  # noqa: E402
from vdagent_bridge.bridges import ClipboardBridge, ClipboardPolicy, ImageLimits  # noqa: E402
from vdagent_bridge.bridges.clipboard import PASSWORD_HINT, HostChange, host_change  # noqa: E402
from vdagent_bridge.demo.guest import Holder, SimulatedGuest  # noqa: E402
from vdagent_bridge.protocol import (  # noqa: E402
    LINUX_AGENT_CAPS,
    Capability,
    Caps,
    ClipboardReceived,
    ClipboardRequestFailed,
    ClipboardType,
    Event,
    HostSession,
    Owner,
    Selection,
)
from vdagent_bridge.runtime import AgentCommands  # noqa: E402

CB = Selection.CLIPBOARD
PRIMARY = Selection.PRIMARY
TEXT = ClipboardType.UTF8_TEXT
PNG = ClipboardType.IMAGE_PNG
BMP = ClipboardType.IMAGE_BMP
JPG = ClipboardType.IMAGE_JPG
TIFF = ClipboardType.IMAGE_TIFF


class FakeVm(AgentCommands):
    """A VM for the bridge: the real command API over a HostSession paired in memory with a
    SimulatedGuest.

    ``flush`` moves bytes both ways and hands the host events to the bridge, one at a time
    (events raised while one is handled wait their turn, as with the runtime's reader). With
    :attr:`hold` set, ``flush`` moves nothing, so a test can put a policy change between a
    request and its answer.
    """

    def __init__(self, name: str, guest: SimulatedGuest | None = None) -> None:
        self.name = name
        self.pair = Pair(guest=guest)
        self.bridge: ClipboardBridge | None = None
        self.hold = False
        self._queue: deque[Event] = deque()
        self._delivering = False
        #: Every event handed to the bridge.
        self.events: list[Event] = []
        super().__init__()

    @property
    def session(self) -> HostSession:  # type: ignore[override]
        return self.pair.host

    @property
    def connected(self) -> bool:
        return True

    @property
    def guest(self) -> SimulatedGuest:
        return self.pair.guest

    def now(self) -> float:
        return self.pair.now

    def flush(self) -> None:
        if self.hold:
            return
        self._deliver(self.pair.pump())

    def receive_from_guest(self) -> None:
        """Only the guest → host half: what the guest queued reaches the host session."""
        self.session.receive_data(bytes(self.guest.data_to_send()), self.now())
        events, _ = drain(self.session)
        self._deliver(events)

    def _deliver(self, events: list[Event]) -> None:
        self._queue.extend(events)
        if self._delivering or self.bridge is None:
            return
        self._delivering = True
        try:
            while self._queue:
                event = self._queue.popleft()
                self.events.append(event)
                self.bridge.handle_event(self.name, event)
        finally:
            self._delivering = False

    # guest-side actions, each followed by a flush
    def copy(self, selection: Selection, data: dict[ClipboardType, bytes]) -> None:
        self.guest.copy(selection, data)
        self.flush()

    def paste(self, selection: Selection, kind: ClipboardType) -> bytes | None:
        """What a guest application pasting ``kind`` gets (None: nothing was asked)."""
        self.guest.pasted.pop(selection, None)
        if not self.guest.paste(selection, kind):
            return None
        self.flush()
        return self.guest.pasted[selection][1]

    def holder(self, selection: Selection) -> Holder:
        return self.guest.selections[selection].holder


@pytest.fixture
def clipboard(qapp: QGuiApplication) -> Iterator[QClipboard]:
    board = QGuiApplication.clipboard()
    board.clear()
    yield board
    board.clear()


@pytest.fixture
def bridge(clipboard: QClipboard) -> Iterator[ClipboardBridge]:
    bridge = ClipboardBridge(clipboard)
    yield bridge
    bridge.close()


def attach(bridge: ClipboardBridge, name: str = "vm", policy: ClipboardPolicy | None = None,
           guest: SimulatedGuest | None = None) -> FakeVm:
    vm = FakeVm(name, guest)
    vm.bridge = bridge
    bridge.add_vm(vm, policy or ClipboardPolicy())
    return vm


def png_bytes(image: QImage, fmt: bytes = b"PNG") -> bytes:
    array = QByteArray()
    buffer = QBuffer(array)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    assert QImageWriter(buffer, fmt).write(image)
    buffer.close()
    return bytes(array.data())


def red_image(width: int = 4, height: int = 3) -> QImage:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(255, 0, 0))
    return image


def decode(data: bytes) -> QImage:
    image = QImage()
    assert image.loadFromData(data)
    return image


# ------------------------------------------------------------------ host → guest


def test_host_text_copy_is_offered_to_the_guest_and_read_when_pasted(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setText("héllo\nworld")
    assert vm.holder(CB) is Holder.HOST
    assert tuple(vm.guest.selections[CB].data) == (TEXT,)
    clipboard.setText("changed before the paste")
    assert vm.paste(CB, TEXT) == b"changed before the paste"


def test_host_copy_does_not_bounce_back_from_the_guest(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setText("mine")
    assert vm.session.owner(CB) is Owner.HOST
    assert bridge.host_owner(CB) is None and list(bridge.fetching()) == []
    assert clipboard.text() == "mine"


def test_host_image_is_offered_as_png_bmp_jpeg_tiff_and_converted_on_request(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setImage(red_image())
    assert set(vm.guest.selections[CB].data) == {PNG, BMP, JPG, TIFF}
    for kind, magic in ((PNG, b"\x89PNG"), (BMP, b"BM"), (JPG, b"\xff\xd8"),
                        (TIFF, b"II*\x00")):
        data = vm.paste(CB, kind)
        assert data is not None and data.startswith(magic), kind
        assert decode(data).size().toTuple() == (4, 3)


def test_clearing_the_host_clipboard_releases_the_guest(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setText("soon gone")
    clipboard.clear()
    assert vm.session.owner(CB) is Owner.NONE
    assert vm.holder(CB) is Holder.NOBODY


@pytest.mark.parametrize(("readable", "secret", "ours", "refusals", "action"), [
    (True, False, False, False, HostChange.OFFER),
    (True, False, False, True, HostChange.OFFER),
    (True, True, False, False, HostChange.RELEASE),  # a password manager's copy
    (False, True, False, True, HostChange.RELEASE),
    (False, False, False, False, HostChange.RELEASE),  # the clipboard went empty
    (False, False, True, True, HostChange.RELEASE),  # the bridge emptied it itself
    (False, False, False, True, HostChange.KEEP),  # XWayland: maybe a refused read
])
def test_what_a_host_change_does_to_the_guests(
    readable: bool, secret: bool, ours: bool, refusals: bool, action: HostChange
) -> None:
    assert host_change(readable=readable, secret=secret, cleared_by_us=ours,
                       refusals=refusals) is action


def test_under_xwayland_an_unreadable_host_change_leaves_the_guest_its_clipboard(
    clipboard: QClipboard,
) -> None:
    """Issue 14: a Wayland copy is announced to XWayland's clients, whose read is then refused
    while no X11 window has focus; the bridge took that for an empty clipboard and released
    the guest's, so the user's last copy vanished from the guest."""
    bridge = ClipboardBridge(clipboard, refusals=True)
    try:
        vm = attach(bridge)
        clipboard.setText("the last copy that could be read")
        clipboard.setMimeData(QMimeData())  # what a refused read looks like to Qt
        assert vm.holder(CB) is Holder.HOST
        assert vm.paste(CB, TEXT) is not None  # the paste is answered (empty: nothing readable)
        clipboard.setText("a readable copy again")
        assert vm.paste(CB, TEXT) == b"a readable copy again"
    finally:
        bridge.close()


def secret(text: str) -> QMimeData:
    """A copy as KeePassXC makes it: the text, marked for clipboard managers."""
    mime = QMimeData()
    mime.setText(text)
    mime.setData(PASSWORD_HINT, QByteArray(b"secret"))
    return mime


def test_a_password_managers_copy_is_never_offered_nor_read_for_a_guest(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setText("an ordinary copy")
    assert vm.holder(CB) is Holder.HOST
    clipboard.setMimeData(secret("hunter2"))
    assert vm.holder(CB) is Holder.NOBODY  # the older offer would now read the secret
    later = attach(bridge, "later")
    assert later.holder(CB) is Holder.NOBODY
    clipboard.setText("not a secret")
    assert vm.paste(CB, TEXT) == b"not a secret"


def test_a_paste_racing_a_password_managers_copy_gets_nothing(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    """The guest's request was on its way when the secret was copied; when it arrives the
    offer is released (the session answers it empty) and the bridge, which reads the host
    clipboard only then, would not read a secret for a guest either."""
    vm = attach(bridge)
    clipboard.setText("offered before the secret")
    vm.hold = True
    assert vm.guest.paste(CB, TEXT)
    clipboard.setMimeData(secret("hunter2"))
    vm.hold = False
    vm.flush()
    assert vm.guest.pasted[CB][1] == b""


def test_a_vm_attached_later_is_offered_what_the_host_holds(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    clipboard.setText("already there")
    vm = attach(bridge)
    assert vm.paste(CB, TEXT) == b"already there"


def test_host_text_over_the_to_guest_limit_is_refused_with_a_notice(
    bridge: ClipboardBridge, clipboard: QClipboard, qtbot: QtBot
) -> None:
    vm = attach(bridge, policy=ClipboardPolicy(max_to_guest=10))
    clipboard.setText("x" * 11)
    with qtbot.waitSignal(bridge.notice, timeout=1000) as blocker:
        assert vm.paste(CB, TEXT) == b""
    assert blocker.args is not None
    assert "larger than the host → guest limit of 10 bytes" in blocker.args[0]
    clipboard.setText("x" * 10)
    assert vm.paste(CB, TEXT) == b"x" * 10


# ------------------------------------------------------------------ guest → host


def test_guest_text_copy_lands_on_the_host_clipboard_without_echo(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    vm.copy(CB, {TEXT: "from the guest ✓".encode()})
    assert clipboard.text() == "from the guest ✓"
    assert bridge.host_owner(CB) == "vm"
    # The host clipboard change it caused did not grab the guest back.
    assert vm.session.owner(CB) is Owner.GUEST
    assert vm.holder(CB) is Holder.GUEST


def test_crlf_guest_text_is_converted_both_ways(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    windows = Caps.of([*LINUX_AGENT_CAPS, Capability.GUEST_LINEEND_CRLF])
    vm = attach(bridge, guest=SimulatedGuest(caps=windows))
    vm.copy(CB, {TEXT: b"one\r\ntwo\r\n"})
    assert clipboard.text() == "one\ntwo\n"
    clipboard.setText("three\nfour")
    assert vm.paste(CB, TEXT) == b"three\r\nfour"


def test_guest_png_is_decoded_and_kept_byte_for_byte(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    data = png_bytes(red_image(5, 2))
    vm.copy(CB, {PNG: data, BMP: png_bytes(red_image(5, 2), b"BMP")})
    assert clipboard.image().size().toTuple() == (5, 2)
    mime = clipboard.mimeData()
    assert bytes(mime.data("image/png").data()) == data
    # Only one image type was fetched: PNG.
    assert [e.type for e in vm.events if isinstance(e, ClipboardReceived)] == [PNG]


def test_guest_bmp_only_is_decoded(bridge: ClipboardBridge, clipboard: QClipboard) -> None:
    vm = attach(bridge)
    vm.copy(CB, {BMP: png_bytes(red_image(3, 3), b"BMP")})
    assert clipboard.image().pixelColor(1, 1) == QColor(255, 0, 0)


def test_guest_image_over_the_dimension_limit_is_not_decoded(
    clipboard: QClipboard, qtbot: QtBot
) -> None:
    bridge = ClipboardBridge(clipboard, image_limits=ImageLimits(max_width=100, max_height=100))
    try:
        vm = attach(bridge)
        clipboard.setText("older host text")
        with qtbot.waitSignal(bridge.notice, timeout=1000) as blocker:
            vm.copy(CB, {PNG: png_bytes(red_image(101, 1))})
        assert blocker.args is not None and "101×1 pixels is over the limit" in blocker.args[0]
        assert clipboard.text() == "" and clipboard.image().isNull()
    finally:
        bridge.close()


def test_guest_garbage_image_is_refused_with_a_notice(
    bridge: ClipboardBridge, clipboard: QClipboard, qtbot: QtBot
) -> None:
    vm = attach(bridge)
    with qtbot.waitSignal(bridge.notice, timeout=1000) as blocker:
        vm.copy(CB, {PNG: b"\x89PNG not really"})
    assert blocker.args is not None and "not a readable PNG image" in blocker.args[0]
    assert clipboard.image().isNull()


def test_guest_data_over_the_to_host_limit_never_crosses(
    bridge: ClipboardBridge, clipboard: QClipboard, qtbot: QtBot
) -> None:
    vm = attach(bridge, policy=ClipboardPolicy(max_to_host=10))
    assert vm.guest.max_clipboard == 10  # the agent is told, so it sends nothing larger
    clipboard.setText("older host text")
    with qtbot.waitSignal(bridge.notice, timeout=1000) as blocker:
        vm.copy(CB, {TEXT: b"y" * 11})
    assert blocker.args is not None
    assert "larger than the guest → host limit of 10 bytes" in blocker.args[0]
    assert "clipboard is too large" in vm.guest.log
    # The stale host text is not left to be pasted as if it were the guest's copy.
    assert clipboard.text() == ""
    vm.copy(CB, {TEXT: b"y" * 10})
    assert clipboard.text() == "y" * 10


def test_guest_without_max_clipboard_is_checked_on_arrival(
    bridge: ClipboardBridge, clipboard: QClipboard, qtbot: QtBot
) -> None:
    caps = Caps.of([c for c in LINUX_AGENT_CAPS if c != Capability.MAX_CLIPBOARD])
    vm = attach(bridge, policy=ClipboardPolicy(max_to_host=10), guest=SimulatedGuest(caps=caps))
    with qtbot.waitSignal(bridge.notice, timeout=1000) as blocker:
        vm.copy(CB, {TEXT: b"z" * 11})
    assert blocker.args is not None and "(11 bytes) was not copied" in blocker.args[0]
    assert clipboard.text() == ""


def test_guest_release_clears_the_host_clipboard_it_still_owns(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    vm.copy(CB, {TEXT: b"guest text"})
    vm.guest.clear(CB)
    vm.flush()
    assert clipboard.text() == ""
    vm.copy(CB, {TEXT: b"guest text again"})
    clipboard.setText("a host copy took over")
    vm.guest.clear(CB)  # the guest no longer owns its own selection: nothing to release
    vm.flush()
    assert clipboard.text() == "a host copy took over"


# ------------------------------------------------------------------ policy


def test_to_guest_off_offers_nothing_until_switched_on(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge, policy=ClipboardPolicy.from_direction("to-host"))
    clipboard.setText("private")
    assert vm.holder(CB) is Holder.NOBODY
    assert vm.paste(CB, TEXT) is None
    bridge.update_policy("vm", to_guest=True)
    assert vm.paste(CB, TEXT) == b"private"


def test_to_guest_switched_off_releases_and_answers_a_racing_paste_with_nothing(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setText("secret")
    vm.hold = True
    assert vm.guest.paste(CB, TEXT)  # on its way while the user switches the direction off
    bridge.update_policy("vm", to_guest=False)
    vm.hold = False
    vm.flush()
    assert vm.guest.pasted[CB] == (TEXT, b"")
    assert vm.holder(CB) is Holder.NOBODY


def test_to_host_off_fetches_nothing(bridge: ClipboardBridge, clipboard: QClipboard) -> None:
    vm = attach(bridge, policy=ClipboardPolicy.from_direction("to-guest"))
    clipboard.setText("host text")
    vm.copy(CB, {TEXT: b"guest text"})
    assert clipboard.text() == "host text"
    assert not any(isinstance(e, (ClipboardReceived, ClipboardRequestFailed)) for e in vm.events)


def test_to_host_switched_off_drops_data_already_on_its_way(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    clipboard.setText("host text")
    vm.hold = True
    vm.guest.copy(CB, {TEXT: b"guest text"})
    vm.receive_from_guest()  # the grab arrives; the bridge requests (held)
    assert [r.type for r in vm.session.pending_requests[0]] == [TEXT]
    bridge.update_policy("vm", to_host=False)
    vm.hold = False
    vm.flush()  # the answer arrives after the switch
    assert clipboard.text() == "host text"
    assert list(bridge.fetching()) == []


def test_primary_is_neither_grabbed_nor_answered_unless_enabled(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)  # PRIMARY off by default
    clipboard.setText("host text")
    assert vm.holder(PRIMARY) is Holder.NOBODY
    vm.copy(PRIMARY, {TEXT: b"guest selection"})
    assert vm.session.pending_requests == ([], [])
    # Even if something else grabbed PRIMARY in the guest, the bridge answers nothing.
    vm.session.grab_clipboard(PRIMARY, (TEXT,))
    vm.flush()
    assert vm.paste(PRIMARY, TEXT) == b""


def test_primary_enabled_on_a_platform_without_selection_stays_inert(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    assert not clipboard.supportsSelection()  # offscreen
    vm = attach(bridge, policy=ClipboardPolicy(primary=True))
    vm.copy(PRIMARY, {TEXT: b"guest selection"})
    assert vm.session.pending_requests == ([], [])
    assert bridge.host_owner(PRIMARY) is None


@pytest.mark.parametrize(
    ("policy", "to_guest", "to_host"),
    [
        # (policy, [CLIPBOARD, PRIMARY] allowed to the guest, [CLIPBOARD, PRIMARY] to the host)
        (ClipboardPolicy(), [True, False], [True, False]),
        (ClipboardPolicy(primary=True), [True, True], [True, True]),
        (ClipboardPolicy.from_direction("to-guest", primary=True), [True, True], [False, False]),
        (ClipboardPolicy.from_direction("to-host", primary=True), [False, False], [True, True]),
        (ClipboardPolicy.from_direction("off", primary=True), [False, False], [False, False]),
    ],
)
def test_policy_table(policy: ClipboardPolicy, to_guest: list[bool], to_host: list[bool]) -> None:
    assert [policy.allows_to_guest(s) for s in (CB, PRIMARY)] == to_guest
    assert [policy.allows_to_host(s) for s in (CB, PRIMARY)] == to_host
    assert not policy.allows_to_guest(Selection.SECONDARY)
    assert not policy.allows_to_host(Selection.SECONDARY)


def test_to_guest_off_refuses_requests_whatever_grabbed_the_guest(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge, policy=ClipboardPolicy.from_direction("to-host"))
    clipboard.setText("host text")
    vm.session.grab_clipboard(CB, (TEXT,))  # not the bridge: it would not have
    vm.flush()
    assert vm.paste(CB, TEXT) == b""


def test_direction_words_of_the_command_line() -> None:
    assert ClipboardPolicy.from_direction("both") == ClipboardPolicy()
    assert ClipboardPolicy.from_direction("off", primary=True) == ClipboardPolicy(
        to_guest=False, to_host=False, primary=True
    )
    with pytest.raises(ValueError, match="use one of both, to-guest, to-host, off"):
        ClipboardPolicy.from_direction("sideways")


def test_raising_the_to_host_limit_tells_the_guest(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge, policy=ClipboardPolicy(max_to_host=10))
    bridge.update_policy("vm", max_to_host=1000)
    assert vm.guest.max_clipboard == 1000
    vm.copy(CB, {TEXT: b"w" * 11})
    assert clipboard.text() == "w" * 11


# ------------------------------------------------------------------ several VMs


def test_host_copy_goes_to_every_vm_whose_to_guest_is_on(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    one, two = attach(bridge, "one"), attach(bridge, "two")
    closed = attach(bridge, "closed", ClipboardPolicy.from_direction("to-host"))
    clipboard.setText("for everyone")
    assert one.paste(CB, TEXT) == two.paste(CB, TEXT) == b"for everyone"
    assert closed.holder(CB) is Holder.NOBODY


def test_a_guest_copy_reaches_the_other_vms_but_not_back_to_its_own(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    one, two = attach(bridge, "one"), attach(bridge, "two")
    one.copy(CB, {TEXT: b"copied in one"})
    assert bridge.host_owner(CB) == "one"
    assert one.session.owner(CB) is Owner.GUEST
    assert two.paste(CB, TEXT) == b"copied in one"


def test_the_most_recent_guest_grab_owns_the_host_clipboard(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    one, two = attach(bridge, "one"), attach(bridge, "two")
    one.hold = True
    one.guest.copy(CB, {TEXT: b"older, slow"})
    one.receive_from_guest()  # one's request is in flight
    two.copy(CB, {TEXT: b"newer"})
    one.hold = False
    one.flush()  # one's answer comes late: dropped
    assert clipboard.text() == "newer" and bridge.host_owner(CB) == "two"
    # one's release does not clear what two put there; two's does.
    one.guest.clear(CB)
    one.flush()
    assert clipboard.text() == "newer"
    two.guest.clear(CB)
    two.flush()
    assert clipboard.text() == ""


def test_a_release_does_not_cancel_another_vms_newer_fetch(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    one, two = attach(bridge, "one"), attach(bridge, "two")
    one.copy(CB, {TEXT: b"from one"})
    two.hold = True
    two.guest.copy(CB, {TEXT: b"from two"})
    two.receive_from_guest()  # two's data is on its way
    one.guest.clear(CB)  # one's release empties the host clipboard it still holds...
    one.flush()
    assert clipboard.text() == ""
    two.hold = False
    two.flush()  # ...but two's newer copy still lands
    assert clipboard.text() == "from two"


def test_a_host_copy_supersedes_a_guest_fetch_in_flight(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    vm.hold = True
    vm.guest.copy(CB, {TEXT: b"guest, slow"})
    vm.receive_from_guest()
    clipboard.setText("host, newer")
    vm.hold = False
    vm.flush()
    assert clipboard.text() == "host, newer"
    assert vm.session.owner(CB) is Owner.HOST


def test_events_of_an_unknown_or_removed_vm_are_ignored(
    bridge: ClipboardBridge, clipboard: QClipboard
) -> None:
    vm = attach(bridge)
    bridge.remove_vm("vm")
    vm.copy(CB, {TEXT: b"nobody listens"})
    assert clipboard.text() == ""
    with pytest.raises(ValueError, match="attached"):
        bridge.add_vm(attach(bridge, "twice"))
