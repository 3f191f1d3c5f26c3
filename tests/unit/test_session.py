"""The host session, specified against the simulated spice-vdagentd 0.22.1.

The simulated guest follows the real agent's observed rules (docs/guest-agent.md); the same
behaviours are checked against the real agent in tests/system/.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import Pair, agent_bytes, drain
from vdagent_bridge.demo.guest import GuestSelection, Holder, SimulatedGuest
from vdagent_bridge.protocol import (
    HOST_CAPS,
    LINUX_AGENT_CAPS,
    CapabilitiesReceived,
    Capability,
    Caps,
    ClipboardGrabbed,
    ClipboardGrabIgnored,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardRequestFailed,
    ClipboardType,
    FailureReason,
    FileTransferFinished,
    FileTransferReady,
    FileXferStatus,
    GuestRequestExpired,
    HostSession,
    LocalProtocolError,
    MessageIgnored,
    MonitorConfig,
    MouseButton,
    Owner,
    ReplyReceived,
    Selection,
    StateError,
)
from vdagent_bridge.protocol.codec import LEGACY, Limits, WireFormat, decode
from vdagent_bridge.protocol.deframer import Deframer
from vdagent_bridge.protocol.messages import (
    AnnounceCapabilities,
    ClipboardData,
    ClipboardGrab,
    ClipboardRelease,
    ClipboardRequest,
    FileXferStatusMessage,
    MaxClipboard,
)

TEXT = ClipboardType.UTF8_TEXT
PNG = ClipboardType.IMAGE_PNG
CB = Selection.CLIPBOARD
PRIMARY = Selection.PRIMARY


def sent_messages(data: bytes, fmt: WireFormat) -> list[object]:
    deframer = Deframer(max_message_size=1 << 30)
    deframer.feed(data)
    out = []
    while (item := deframer.pop()) is not None:
        out.append(decode(item.type, item.payload, fmt, Limits()))  # type: ignore[union-attr]
    return out


# ---------------------------------------------------------------------------- caps


def test_start_announces_caps_with_request():
    session = HostSession()
    session.start(0.0)
    (msg,) = sent_messages(session.data_to_send(), LEGACY)
    assert msg == AnnounceCapabilities(True, HOST_CAPS.to_words())


def test_guest_request_is_answered_with_request_0_and_caps_are_negotiated():
    pair = Pair()
    assert pair.host.guest_caps == LINUX_AGENT_CAPS
    assert pair.host.negotiated == HOST_CAPS & LINUX_AGENT_CAPS
    assert pair.host.wire_format == WireFormat(selection=True, grab_serial=True)
    assert pair.guest.host_caps == HOST_CAPS
    assert "New client connected" in pair.guest.log


def test_max_clipboard_is_sent_to_a_guest_with_the_cap():
    pair = Pair()
    assert pair.guest.max_clipboard == pair.host.max_clipboard > 64 * 1024 * 1024


def test_no_max_clipboard_for_a_guest_without_the_cap():
    caps = Caps.of(c for c in LINUX_AGENT_CAPS if c != Capability.MAX_CLIPBOARD)
    pair = Pair(guest=SimulatedGuest(caps=caps))
    assert pair.guest.max_clipboard == -1


def test_guest_without_selection_or_serial_gets_the_legacy_format():
    caps = Caps.of([Capability.MOUSE_STATE, Capability.CLIPBOARD_BY_DEMAND,
                    Capability.GUEST_LINEEND_CRLF])
    session = HostSession()
    session.start(0.0)
    session.data_to_send()
    session.receive_data(agent_bytes(AnnounceCapabilities(True, caps.words), fmt=LEGACY), 0.0)
    drain(session)
    assert session.wire_format == LEGACY
    session.grab_clipboard(CB, (TEXT,))
    msgs = sent_messages(session.data_to_send(), LEGACY)
    assert ClipboardGrab(CB, (TEXT,), None) in msgs
    # PRIMARY cannot be expressed without the selection prefix: nothing is sent for it.
    session.grab_clipboard(PRIMARY, (TEXT,))
    assert session.data_to_send() == b""


def test_guest_agent_restart_reannounces_resets_serials_and_regrabs_host_selections():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"guest text"})
    pair.host.grab_clipboard(PRIMARY, (TEXT,))
    pair.pump()
    pair.guest.copy(CB, {TEXT: b"more"})
    pair.pump()
    assert pair.host.serial(CB) == 2
    pair.events.clear()

    pair.guest.restart_session_agent()
    pair.pump()

    caps = pair.of_type(CapabilitiesReceived)
    assert caps[0].guest_restarted  # type: ignore[union-attr]
    assert ClipboardReleased(CB) in pair.events
    assert pair.host.owner(CB) is Owner.NONE
    # The host still owns PRIMARY and the new session agent knows it again.
    assert pair.host.owner(PRIMARY) is Owner.HOST
    assert pair.guest.selections[PRIMARY].holder is Holder.HOST
    assert pair.host.serial(PRIMARY) == pair.guest.counters[PRIMARY] == 1
    assert pair.host.serial(CB) == pair.guest.counters[CB] == 0


# ---------------------------------------------------------------------------- guest → host


def test_guest_copy_is_grabbed_requested_and_received():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"hello", PNG: b"\x89PNG..."})
    assert pair.pump() == [ClipboardGrabbed(CB, (TEXT, PNG), 0)]
    assert pair.host.owner(CB) is Owner.GUEST
    pair.host.request_clipboard(CB, PNG, pair.now)
    assert pair.pump() == [ClipboardReceived(CB, PNG, b"\x89PNG...")]


def deliver_into_buffers(host: HostSession, data: bytes, read: int) -> int:
    """Hand ``data`` to the host as a socket would with the receive buffers: each read into
    the buffer the session offers, or fed as bytes. Returns the bytes received in place."""
    pos = in_place = 0
    while pos < len(data):
        view = host.receive_buffer(read)
        if view is None:
            host.receive_data(data[pos : pos + read], 0.0)
            pos += read
            continue
        with view:
            count = min(len(view), len(data) - pos)
            view[:count] = data[pos : pos + count]
        host.received_into(count, 0.0)
        pos += count
        in_place += count
    return in_place


@pytest.mark.parametrize(
    ("caps", "kind", "sent", "received"),
    [
        (LINUX_AGENT_CAPS, PNG, b"\x89PNG" + bytes(range(256)) * 8192, None),
        (
            Caps.of([*LINUX_AGENT_CAPS, Capability.GUEST_LINEEND_CRLF]),
            TEXT,
            b"line\r\n" * 100_000,
            b"line\n" * 100_000,
        ),
    ],
    ids=["png", "crlf_text"],
)
def test_a_large_guest_clipboard_is_received_into_its_own_buffer(
    caps: Caps, kind: ClipboardType, sent: bytes, received: bytes | None
) -> None:
    """HostSession.receive_buffer: the data lands in the buffer the event hands over."""
    pair = Pair(guest=SimulatedGuest(caps=caps))
    pair.guest.copy(CB, {kind: sent})
    pair.pump()
    pair.host.request_clipboard(CB, kind, pair.now)
    pair.guest.receive_data(pair.host.data_to_send())
    answer = pair.guest.data_to_send()
    assert deliver_into_buffers(pair.host, answer, 100_000) >= len(sent) - 100_000
    events, errors = drain(pair.host)
    assert errors == []
    assert events == [ClipboardReceived(CB, kind, received or sent)]
    assert isinstance(events[0], ClipboardReceived)
    assert isinstance(events[0].data, bytearray)  # no copy to bytes


def test_a_large_clipboard_in_the_legacy_format_is_received_into_its_own_buffer() -> None:
    """Without the selection prefix the data starts 4 bytes into the payload, not 8."""
    caps = Caps.of([Capability.MOUSE_STATE, Capability.CLIPBOARD_BY_DEMAND])
    session = HostSession()
    session.start(0.0)
    session.receive_data(agent_bytes(AnnounceCapabilities(True, caps.words), fmt=LEGACY), 0.0)
    session.receive_data(agent_bytes(ClipboardGrab(CB, (PNG,), None), fmt=LEGACY), 0.0)
    drain(session)
    session.request_clipboard(CB, PNG, 0.0)
    png = b"\x89PNG" + bytes(range(256)) * 12_000
    answer = agent_bytes(ClipboardData(CB, PNG, png), fmt=LEGACY)
    assert deliver_into_buffers(session, answer, 64 * 1024) > len(png) - 64 * 1024
    events, errors = drain(session)
    assert (events, errors) == ([ClipboardReceived(CB, PNG, png)], [])


def test_primary_is_a_separate_selection():
    pair = Pair()
    pair.guest.copy(PRIMARY, {TEXT: b"selected"})
    pair.pump()
    assert pair.host.owner(PRIMARY) is Owner.GUEST
    assert pair.host.owner(CB) is Owner.NONE
    pair.host.request_clipboard(PRIMARY, TEXT, pair.now)
    assert pair.pump() == [ClipboardReceived(PRIMARY, TEXT, b"selected")]


def test_request_for_what_the_guest_does_not_offer_is_refused_locally():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    with pytest.raises(StateError):
        pair.host.request_clipboard(CB, PNG, pair.now)
    with pytest.raises(StateError):
        pair.host.request_clipboard(PRIMARY, TEXT, pair.now)


def test_agent_none_reply_fails_the_request():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    pair.host.request_clipboard(CB, TEXT, pair.now)
    # The guest's clipboard owner vanished without a RELEASE reaching us yet.
    pair.guest.selections[CB] = GuestSelection()
    assert pair.pump() == [ClipboardRequestFailed(CB, TEXT, FailureReason.NO_DATA)]


def test_unanswered_request_times_out():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    pair.host.request_clipboard(CB, TEXT, pair.now)
    pair.host.data_to_send()  # the request is lost
    assert pair.host.next_deadline() == pair.now + pair.host.request_timeout
    assert pair.advance(pair.host.request_timeout - 0.1) == []
    assert pair.advance(0.2) == [ClipboardRequestFailed(CB, TEXT, FailureReason.TIMEOUT)]
    assert pair.host.next_deadline() is None


def test_oversize_guest_data_arrives_empty_and_is_reported():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x" * 100})
    pair.pump()
    pair.guest.max_clipboard = 10  # as if we had announced 10 bytes
    pair.host.request_clipboard(CB, TEXT, pair.now)
    assert pair.pump() == [ClipboardRequestFailed(CB, TEXT, FailureReason.EMPTY)]


def test_crlf_guest_text_is_converted_both_ways():
    caps = Caps.of([*LINUX_AGENT_CAPS, Capability.GUEST_LINEEND_CRLF])
    pair = Pair(guest=SimulatedGuest(caps=caps))
    pair.guest.copy(CB, {TEXT: b"a\r\nb\r\n"})
    pair.pump()
    pair.host.request_clipboard(CB, TEXT, pair.now)
    assert pair.pump() == [ClipboardReceived(CB, TEXT, b"a\nb\n")]
    pair.host.grab_clipboard(PRIMARY, (TEXT,))
    pair.pump()
    pair.guest.paste(PRIMARY, TEXT)
    pair.pump()
    pair.host.send_clipboard_data(PRIMARY, TEXT, b"x\ny\r\nz")
    pair.pump()
    assert pair.guest.pasted[PRIMARY] == (TEXT, b"x\r\ny\r\nz")


def test_lf_guest_text_is_passed_unchanged():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"a\r\nb\n"})
    pair.pump()
    pair.host.request_clipboard(CB, TEXT, pair.now)
    assert pair.pump() == [ClipboardReceived(CB, TEXT, b"a\r\nb\n")]


def test_unsolicited_clipboard_data_is_ignored():
    pair = Pair()
    pair.host.receive_data(agent_bytes(ClipboardData(CB, TEXT, b"push")), 0.0)
    events, errors = drain(pair.host)
    assert errors == []
    assert [type(e) for e in events] == [MessageIgnored]


# ---------------------------------------------------------------------------- host → guest


def test_host_copy_is_pasted_in_the_guest():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT, PNG))
    pair.pump()
    assert pair.guest.selections[CB].holder is Holder.HOST
    assert pair.guest.paste(CB, TEXT)
    assert pair.pump() == [ClipboardRequested(CB, TEXT)]
    assert pair.host.send_clipboard_data(CB, TEXT, b"from host")
    pair.pump()
    assert pair.guest.pasted[CB] == (TEXT, b"from host")
    # The request is answered: a second answer has nowhere to go.
    assert not pair.host.send_clipboard_data(CB, TEXT, b"again")


def test_host_grab_before_guest_caps_is_sent_when_caps_arrive():
    guest = SimulatedGuest()
    pair = Pair(guest=guest, connect=False)
    pair.host.start(0.0)
    pair.host.grab_clipboard(CB, (TEXT,))
    sent = sent_messages(pair.host.data_to_send(), LEGACY)
    assert [type(m) for m in sent] == [AnnounceCapabilities]
    guest.receive_data(b"")
    guest.open_port()
    pair.host.receive_data(guest.data_to_send(), 0.0)
    drain(pair.host)
    sent = sent_messages(pair.host.data_to_send(), pair.host.wire_format)
    assert ClipboardGrab(CB, (TEXT,), 0) in sent


def test_guest_request_for_data_the_host_does_not_offer_gets_empty_data():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    pair.host.receive_data(agent_bytes(ClipboardRequest(CB, PNG)), 0.0)
    events, _ = drain(pair.host)
    assert isinstance(events[0], MessageIgnored)
    assert sent_messages(pair.host.data_to_send(), pair.host.wire_format) == [
        ClipboardData(CB, PNG, b"")
    ]


def test_guest_request_the_host_does_not_answer_expires_with_empty_data():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    pair.guest.paste(CB, TEXT)
    pair.pump()
    assert pair.advance(pair.host.guest_request_timeout + 1) == [GuestRequestExpired(CB, TEXT)]
    assert pair.guest.pasted[CB] == (TEXT, b"")


def test_guest_requests_beyond_the_limit_are_answered_empty_at_once():
    session = HostSession(limits=Limits(max_pending_requests=2))
    pair = Pair(host=session)
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    pair.host.receive_data(agent_bytes(*[ClipboardRequest(CB, TEXT)] * 5), 0.0)
    events, _ = drain(pair.host)
    assert sum(isinstance(e, ClipboardRequested) for e in events) == 2
    assert sum(isinstance(e, MessageIgnored) for e in events) == 3
    assert len(pair.host.pending_requests[1]) == 2


def test_host_release_sends_release_and_answers_pending_requests():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    pair.guest.paste(CB, TEXT)
    pair.pump()
    pair.host.release_clipboard(CB)
    pair.pump()
    assert pair.guest.selections[CB].holder is Holder.NOBODY
    assert pair.guest.pasted[CB] == (TEXT, b"")  # the waiting paste is answered, empty
    assert pair.host.owner(CB) is Owner.NONE


# ---------------------------------------------------------------------------- serials


def test_host_grab_is_accepted_after_several_guest_grabs():
    pair = Pair()
    for text in (b"one", b"two", b"three"):
        pair.guest.copy(CB, {TEXT: text})
        pair.pump()
    assert pair.host.serial(CB) == pair.guest.counters[CB] == 3
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    assert pair.guest.selections[CB].holder is Holder.HOST
    assert not any("grab discard" in line for line in pair.guest.log)
    assert pair.host.serial(CB) == pair.guest.counters[CB] == 4


def test_crossing_grabs_end_with_the_host_on_both_sides():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"first"})
    pair.pump()
    # Both grab before seeing the other's grab.
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.guest.copy(CB, {TEXT: b"crossing"})
    pair.pump()
    assert pair.host.owner(CB) is Owner.HOST
    assert pair.guest.selections[CB].holder is Holder.HOST
    assert "client grab wins" in pair.guest.log
    assert any(isinstance(e, ClipboardGrabIgnored) for e in pair.events)


def test_a_second_guest_grab_beats_a_crossing_host_grab_on_both_sides():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.guest.copy(CB, {TEXT: b"one"})
    pair.guest.copy(CB, {TEXT: b"two"})
    pair.pump()
    assert pair.host.owner(CB) is Owner.GUEST
    assert pair.guest.selections[CB].holder is Holder.GUEST
    assert any("grab discard" in line for line in pair.guest.log)
    pair.host.request_clipboard(CB, TEXT, pair.now)
    assert pair.pump()[-1] == ClipboardReceived(CB, TEXT, b"two")


def test_serials_are_per_selection():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"a"})
    pair.guest.copy(CB, {TEXT: b"b"})
    pair.pump()
    pair.host.grab_clipboard(PRIMARY, (TEXT,))
    pair.pump()
    assert pair.host.serial(CB) == 2
    assert pair.host.serial(PRIMARY) == 1
    assert pair.guest.selections[PRIMARY].holder is Holder.HOST


# ---------------------------------------------------------------------------- release


def test_release_is_immediate_for_a_guest_with_no_release_on_regrab():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    pair.guest.clear(CB)
    assert pair.pump() == [ClipboardReleased(CB)]


def test_release_is_deferred_for_an_older_guest_and_cancelled_by_a_regrab():
    caps = Caps.of(c for c in LINUX_AGENT_CAPS if c != Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB)
    pair = Pair(guest=SimulatedGuest(caps=caps))
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    pair.guest.clear(CB)
    assert pair.pump() == []
    pair.guest.copy(CB, {TEXT: b"y"})
    assert [type(e) for e in pair.pump()] == [ClipboardGrabbed]
    assert pair.advance(1.0) == []
    pair.guest.clear(CB)
    pair.pump()
    assert pair.advance(pair.host.release_delay) == [ClipboardReleased(CB)]


def test_one_byte_release_from_the_daemon_is_understood():
    pair = Pair()
    pair.guest.copy(PRIMARY, {TEXT: b"x"})
    pair.pump()
    pair.host.receive_data(b"\x01\0\0\0\x15\0\0\0" + b"\x01\0\0\0\x09\0\0\0" + b"\0" * 8
                           + b"\x01\0\0\0" + b"\x01", 0.0)
    events, errors = drain(pair.host)
    assert errors == []
    assert events == [ClipboardReleased(PRIMARY)]


def test_release_of_a_selection_the_guest_does_not_own_is_ignored():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    pair.host.receive_data(agent_bytes(ClipboardRelease(CB)), 0.0)
    events, _ = drain(pair.host)
    assert [type(e) for e in events] == [MessageIgnored]
    assert pair.host.owner(CB) is Owner.HOST


# ---------------------------------------------------------------------------- pointer


def test_mouse_is_not_sent_before_the_guest_has_the_cap():
    session = HostSession()
    session.start(0.0)
    session.data_to_send()
    assert not session.send_mouse(1, 2)
    assert session.data_to_send() == b""


def test_mouse_moves_clicks_and_wheel_reach_the_guest():
    pair = Pair()
    pair.host.send_mouse(10, 20)
    pair.host.send_mouse(10, 20, MouseButton.LEFT)
    pair.host.send_mouse(10, 20)
    pair.host.send_wheel(True, 10, 20)
    pair.host.send_wheel(False, 10, 20)
    pair.pump()
    assert pair.guest.uinput_records() == [
        (3, 0, 10), (3, 1, 20), (0, 0, 0),
        (1, 0x110, 1), (0, 0, 0),
        (1, 0x110, 0), (0, 0, 0),
        (2, 8, 1), (0, 0, 0), (0, 0, 0),
        (2, 8, -1), (0, 0, 0), (0, 0, 0),
    ]


def test_mouse_coordinates_are_clamped_to_the_monitor():
    pair = Pair()
    pair.host.send_monitors_config((MonitorConfig(800, 600),))
    pair.host.send_mouse(5000, -3)
    pair.pump()
    assert pair.guest.mouse[-1].x == 799
    assert pair.guest.mouse[-1].y == 0


# ---------------------------------------------------------------------------- output queue


def test_pending_output_hands_out_the_queue_without_joining_or_dequeuing_it():
    """What a writer does: take buffers, write some, consume that much; the bytes are
    exactly what data_to_send would have joined, and a large body is not copied."""
    pair = Pair()
    body = bytearray(b"x" * 100_000)
    tid = pair.host.start_file_transfer("big", len(body) + 10)
    pair.pump()
    pair.host.send_mouse(7, 7)
    pair.host.send_file_data(tid, bytes(body[:65536]))
    pair.host.send_file_data(tid, bytes(body[65536:]))
    pair.host.send_mouse(8, 8)
    reference = HostSession.restore(pair.host.snapshot(0.0), 0.0).data_to_send()
    total = pair.host.bytes_to_send
    assert len(reference) == total
    sent = bytearray()
    for take in [1, 40, 41, 2000, 2056, 3, 70_000]:
        buffers = pair.host.pending_output(limit=take, max_buffers=64)
        assert len(buffers) <= 64
        got = b"".join(buffers)[:take]
        sent += got
        pair.host.consume_output(len(got))
        assert pair.host.bytes_to_send == total - len(sent)
    sent += pair.host.data_to_send()
    assert bytes(sent) == reference
    assert pair.host.bytes_to_send == 0 and pair.host.pending_output() == []
    pair.guest.receive_data(bytes(sent))
    pair.host.send_file_data(tid, b"0123456789")
    pair.pump()
    assert pair.guest.files["big"] == bytes(body) + b"0123456789"
    assert [(m.x, m.y) for m in pair.guest.mouse] == [(7, 7), (8, 8)]


def test_consuming_more_than_is_queued_is_a_local_error():
    session = HostSession()
    session.start(0.0)
    with pytest.raises(LocalProtocolError):
        session.consume_output(session.bytes_to_send + 1)


def test_a_large_clipboard_answer_is_queued_as_the_callers_bytes():
    pair = Pair()
    pair.host.grab_clipboard(CB, (TEXT,))
    pair.pump()
    pair.guest.paste(CB, TEXT)
    pair.pump()
    data = bytearray(b"y" * 300_000)
    assert pair.host.send_clipboard_data(CB, TEXT, data)  # type: ignore[arg-type]
    data[-1] = ord("!")  # not copied: the queue holds views of it until it is written
    pair.pump()
    assert pair.guest.pasted[CB] == (TEXT, b"y" * 299_999 + b"!")


def test_monitors_config_is_applied_and_acknowledged():
    pair = Pair()
    assert pair.host.send_monitors_config((MonitorConfig(800, 600), MonitorConfig(640, 480, x=800)))
    assert [e for e in pair.pump() if isinstance(e, ReplyReceived)][0].ok
    assert pair.guest.monitors == (MonitorConfig(800, 600), MonitorConfig(640, 480, x=800))


def test_invalid_monitors_are_refused_locally():
    pair = Pair()
    with pytest.raises(LocalProtocolError):
        pair.host.send_monitors_config(())
    with pytest.raises(LocalProtocolError):
        pair.host.send_monitors_config((MonitorConfig(0, 600),))


# ---------------------------------------------------------------------------- files


def test_file_transfer_lands_in_the_guest():
    pair = Pair()
    data = bytes(range(256)) * 1000
    tid = pair.host.start_file_transfer("report 1.bin", len(data))
    assert pair.pump() == [FileTransferReady(tid)]
    pair.host.send_file_data(tid, data[:1000])
    pair.host.send_file_data(tid, data[1000:])
    (done,) = pair.pump()
    assert isinstance(done, FileTransferFinished) and done.ok
    assert pair.guest.files["report 1.bin"] == data


def test_empty_file_transfer_completes():
    pair = Pair()
    tid = pair.host.start_file_transfer("empty", 0)
    events = pair.pump()
    assert events[0] == FileTransferReady(tid)
    assert isinstance(events[1], FileTransferFinished) and events[1].ok
    assert pair.guest.files["empty"] == b""


def test_file_names_must_be_plain():
    pair = Pair()
    for bad in ("", "..", "a/b", "x\0y"):
        with pytest.raises(LocalProtocolError):
            pair.host.start_file_transfer(bad, 1)


def test_sending_more_than_announced_is_refused():
    pair = Pair()
    tid = pair.host.start_file_transfer("f", 3)
    with pytest.raises(StateError):
        pair.host.send_file_data(tid, b"abc")  # not accepted yet
    pair.pump()
    with pytest.raises(StateError):
        pair.host.send_file_data(tid, b"abcd")


def test_detailed_transfer_errors_are_put_in_words():
    pair = Pair()
    tid = pair.host.start_file_transfer("f", 3)
    pair.host.data_to_send()
    detail = bytes([0]) + (31).to_bytes(4, "little")
    pair.host.receive_data(
        agent_bytes(FileXferStatusMessage(tid, FileXferStatus.ERROR, detail)), 0.0
    )
    (event,), _ = drain(pair.host)
    assert isinstance(event, FileTransferFinished)
    assert event.detail == "the guest agent reported an error: too many open files"
    tid = pair.host.start_file_transfer("g", 3)
    free = (12345).to_bytes(8, "little")
    pair.host.receive_data(
        agent_bytes(FileXferStatusMessage(tid, FileXferStatus.NOT_ENOUGH_SPACE, free)), 0.0
    )
    (event,), _ = drain(pair.host)
    assert event.detail == "not enough free space in the guest (12345 bytes free)"


def test_cancel_tells_the_guest():
    pair = Pair()
    tid = pair.host.start_file_transfer("f", 10)
    pair.pump()
    pair.host.cancel_file_transfer(tid)
    events = pair.pump()
    assert events[0].status == FileXferStatus.CANCELLED  # type: ignore[union-attr]
    assert tid not in pair.guest._incoming


# ---------------------------------------------------------------------------- snapshot


def test_snapshot_is_json_and_continues_the_conversation_without_reannouncing():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"before"})
    pair.host.grab_clipboard(PRIMARY, (TEXT,))
    pair.pump()
    state = json.loads(json.dumps(pair.host.snapshot(pair.now)))

    restored = HostSession.restore(state, 100.0)
    assert restored.data_to_send() == b""  # nothing announced
    assert restored.owner(CB) is Owner.GUEST
    assert restored.owner(PRIMARY) is Owner.HOST
    assert restored.serial(CB) == 1 and restored.serial(PRIMARY) == 1

    pair2 = Pair(host=restored, guest=pair.guest, connect=False)
    pair2.now = 100.0
    pair2.host.request_clipboard(CB, TEXT, pair2.now)
    assert pair2.pump() == [ClipboardReceived(CB, TEXT, b"before")]
    pair2.host.grab_clipboard(CB, (TEXT,))
    pair2.pump()
    assert pair2.guest.selections[CB].holder is Holder.HOST
    assert not any("grab discard" in line for line in pair2.guest.log)
    assert pair.guest.log.count("New client connected") == 1


def test_snapshot_carries_a_half_received_message_and_queued_output():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    pair.host.request_clipboard(CB, TEXT, pair.now)
    pair.guest.receive_data(pair.host.data_to_send())
    answer = bytes(pair.guest.data_to_send())
    pair.host.receive_data(answer[:13], pair.now)  # the chunk header and part of the message
    pair.host.send_mouse(5, 6)  # queued, not yet written
    assert drain(pair.host) == ([], [])

    restored = HostSession.restore(json.loads(json.dumps(pair.host.snapshot(pair.now))), 7.0)
    pair.guest.receive_data(restored.data_to_send())
    assert pair.guest.mouse[-1].x == 5
    restored.receive_data(answer[13:], 7.0)
    assert drain(restored) == ([ClipboardReceived(CB, TEXT, b"x")], [])


def test_snapshot_rebases_deadlines():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.pump()
    pair.host.request_clipboard(CB, TEXT, 10.0)
    state = pair.host.snapshot(12.0)
    restored = HostSession.restore(state, 1000.0)
    assert restored.next_deadline() == pytest.approx(1000.0 + pair.host.request_timeout - 2.0)


def test_snapshot_refuses_undrained_events():
    pair = Pair()
    pair.guest.copy(CB, {TEXT: b"x"})
    pair.host.receive_data(pair.guest.data_to_send(), 0.0)
    with pytest.raises(StateError):
        pair.host.snapshot(0.0)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(version=99),
        lambda s: s.pop("clipboard"),
        lambda s: s["clipboard"]["selections"]["0"].update(owner="nobody"),
        lambda s: s.update(outgoing="***"),
        lambda s: s["framing"]["assemblies"].update({"1": {"header": "", "type": 4,
                                                            "body": "", "size": 1 << 40,
                                                            "discard": 0}}),
    ],
)
def test_restore_rejects_malformed_snapshots(mutate):
    state = json.loads(json.dumps(Pair().host.snapshot(0.0)))
    mutate(state)
    with pytest.raises(LocalProtocolError):
        HostSession.restore(state, 0.0)


# ---------------------------------------------------------------------------- robustness


def test_messages_a_guest_should_not_send_become_ignored_events():
    pair = Pair()
    pair.host.receive_data(agent_bytes(MaxClipboard(5)), 0.0)
    events, errors = drain(pair.host)
    assert errors == [] and isinstance(events[0], MessageIgnored)


def test_unknown_message_type_is_an_event_not_a_crash():
    pair = Pair()
    pair.host.receive_data(b"\x01\0\0\0\x17\0\0\0" + b"\x01\0\0\0\x63\0\0\0" + b"\0" * 8
                           + b"\x03\0\0\0abc", 0.0)
    events, errors = drain(pair.host)
    assert errors == []
    assert isinstance(events[0], MessageIgnored)


def test_grab_of_an_unsupported_selection_is_ignored():
    pair = Pair()
    pair.host.receive_data(agent_bytes(ClipboardGrab(Selection.SECONDARY, (TEXT,), 0)), 0.0)
    events, _ = drain(pair.host)
    assert isinstance(events[0], ClipboardGrabIgnored)
    assert pair.host.serial(CB) == 0


def test_a_lower_clipboard_limit_is_announced_now_and_after_a_restart() -> None:
    pair = Pair()
    pair.host.set_max_clipboard(1000)
    pair.pump()
    assert pair.guest.max_clipboard == 1000
    pair.guest.restart_session_agent()
    pair.guest.max_clipboard = -1  # a new agent forgets it
    pair.pump()
    assert pair.guest.max_clipboard == 1000
    restored = HostSession.restore(json.loads(json.dumps(pair.host.snapshot(0.0))), 0.0)
    assert restored.max_clipboard == 1000
    with pytest.raises(LocalProtocolError):
        pair.host.set_max_clipboard(-5)


def test_an_unanswered_announce_is_reported_once() -> None:
    session = HostSession(caps_timeout=2.0)
    session.start(10.0)
    assert session.next_deadline() == 12.0
    session.handle_timeout(11.9)
    assert drain(session) == ([], [])
    session.handle_timeout(12.0)
    events, _ = drain(session)
    assert [type(e).__name__ for e in events] == ["CapabilitiesTimedOut"]
    assert session.next_deadline() is None


def test_the_caps_answer_clears_the_announce_deadline() -> None:
    pair = Pair()
    assert pair.host.next_deadline() is None
