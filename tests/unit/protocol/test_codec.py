"""The codec: payload <-> message, and what it does with bad input and bad values.

Specification (codec module docstring, docs/guest-agent.md §4.2; sizes are checked before
anything is allocated, and every error is one of the engine's):

- a payload that does not match its type's layout raises RemoteProtocolError naming the type,
  never a construct or struct error;
- a count the guest controls (types in a GRAB, caps words, monitors, devices) over ``Limits``
  raises LimitExceeded with ``.limit`` and ``.actual``, and is checked before parsing, so a
  hostile count costs nothing;
- an unknown message type is an UnknownMessage, never an error; unknown enum values are kept
  as plain ints;
- a message that cannot be encoded raises LocalProtocolError.
"""

from __future__ import annotations

import time
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdagent_bridge.protocol import codec
from vdagent_bridge.protocol.codec import FULL, LEGACY, Limits, WireFormat
from vdagent_bridge.protocol.constants import (
    ClipboardType,
    DisplayConfigFlag,
    FileXferStatus,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    ReplyError,
    Selection,
)
from vdagent_bridge.protocol.errors import (
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from vdagent_bridge.protocol.messages import (
    AnnounceCapabilities,
    AudioVolumeSync,
    ClipboardData,
    ClipboardGrab,
    ClipboardRelease,
    ClipboardRequest,
    DeviceDisplayInfo,
    DisplayConfig,
    FileXferData,
    FileXferStart,
    FileXferStatusMessage,
    GraphicsDeviceInfo,
    MaxClipboard,
    Message,
    MonitorConfig,
    MonitorsConfig,
    MouseState,
    Reply,
    UnknownMessage,
)

SELECTION_ONLY = WireFormat(selection=True, grab_serial=False)
SERIAL_ONLY = WireFormat(selection=False, grab_serial=True)
ALL_FORMATS = (FULL, SELECTION_ONLY, SERIAL_ONLY, LEGACY)
LIMITS = Limits()


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def decode(msg_type: int, payload: bytes, fmt: WireFormat = FULL, limits: Limits = LIMITS) -> Any:
    """codec.decode, typed ``Any`` so tests can read the fields of the message they expect."""
    return codec.decode(msg_type, payload, fmt, limits)


def assert_malformed(
    msg_type: int, payload: bytes, fmt: WireFormat = FULL
) -> RemoteProtocolError:
    """The payload raises exactly RemoteProtocolError (not LimitExceeded) naming its type."""
    with pytest.raises(RemoteProtocolError) as info:
        decode(msg_type, payload, fmt)
    assert type(info.value) is RemoteProtocolError
    assert info.value.message_type == msg_type
    return info.value


# ----- the table ------------------------------------------------------------------------------


def test_every_message_type_has_one_layout_and_every_message_class_one_type() -> None:
    assert set(codec._LAYOUTS) == set(MessageType)
    for msg_type, layout in codec._LAYOUTS.items():
        assert layout.message.TYPE is msg_type  # type: ignore[attr-defined]
    classes = [c for c in get_args(Message) if c is not UnknownMessage]
    assert sorted(c.__name__ for c in classes) == sorted(
        layout.message.__name__ for layout in codec._LAYOUTS.values()
    )


def test_an_object_posing_as_a_message_is_not_encoded() -> None:
    """The table is keyed on ``TYPE``, but the class must be the message class of that type."""

    class Impostor:
        TYPE = MessageType.MOUSE_STATE

    with pytest.raises(LocalProtocolError, match="not a vdagent message"):
        codec.encode(Impostor(), FULL)  # type: ignore[arg-type]


# ----- exact and minimum sizes (docs/guest-agent.md §4.2) -----------------------------------

#: (type, format, the only accepted size)
EXACT_SIZES = [
    (MessageType.MOUSE_STATE, FULL, 13),
    (MessageType.REPLY, FULL, 8),
    (MessageType.DISPLAY_CONFIG, FULL, 8),
    (MessageType.CLIPBOARD_REQUEST, FULL, 8),
    (MessageType.CLIPBOARD_REQUEST, LEGACY, 4),
    (MessageType.MAX_CLIPBOARD, FULL, 4),
    (MessageType.CLIENT_DISCONNECTED, FULL, 0),
]


@pytest.mark.parametrize(
    ("msg_type", "fmt", "size"),
    EXACT_SIZES,
    ids=[f"{t.name}-{s}" for t, _, s in EXACT_SIZES],
)
def test_fixed_size_payload_must_have_its_exact_size(
    msg_type: MessageType, fmt: WireFormat, size: int
) -> None:
    decode(msg_type, bytes(size), fmt)
    for wrong in sorted({0, size - 1, size + 1, size + 4, 2 * size + 1} - {size}):
        if wrong >= 0:
            assert_malformed(msg_type, bytes(wrong), fmt)


@pytest.mark.parametrize("size", [0, 2, 3, 5, 8])
def test_release_with_selection_takes_four_bytes_or_the_one_byte_quirk(size: int) -> None:
    assert_malformed(MessageType.CLIPBOARD_RELEASE, bytes(size), FULL)


def test_release_with_selection_accepts_four_bytes_and_one_byte() -> None:
    assert decode(MessageType.CLIPBOARD_RELEASE, h("01000000")) == ClipboardRelease(
        Selection.PRIMARY
    )
    assert decode(MessageType.CLIPBOARD_RELEASE, h("01")) == ClipboardRelease(Selection.PRIMARY)


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_legacy_release_is_empty_or_the_one_byte_quirk(size: int) -> None:
    assert decode(MessageType.CLIPBOARD_RELEASE, b"", LEGACY) == ClipboardRelease(
        Selection.CLIPBOARD
    )
    assert_malformed(MessageType.CLIPBOARD_RELEASE, bytes(size), LEGACY)


#: (type, format, the smallest accepted size)
MINIMUM_SIZES = [
    (MessageType.MONITORS_CONFIG, FULL, 8),
    (MessageType.CLIPBOARD, FULL, 8),
    (MessageType.CLIPBOARD, LEGACY, 4),
    (MessageType.ANNOUNCE_CAPABILITIES, FULL, 4),
    (MessageType.CLIPBOARD_GRAB, FULL, 8),
    (MessageType.CLIPBOARD_GRAB, SELECTION_ONLY, 4),
    (MessageType.CLIPBOARD_GRAB, SERIAL_ONLY, 4),
    (MessageType.FILE_XFER_START, FULL, 4),
    (MessageType.FILE_XFER_STATUS, FULL, 8),
    (MessageType.FILE_XFER_DATA, FULL, 12),
    (MessageType.AUDIO_VOLUME_SYNC, FULL, 3),
    (MessageType.GRAPHICS_DEVICE_INFO, FULL, 4),
]


@pytest.mark.parametrize(
    ("msg_type", "fmt", "size"),
    MINIMUM_SIZES,
    ids=[f"{t.name}-{f.selection:d}{f.grab_serial:d}" for t, f, _ in MINIMUM_SIZES],
)
def test_payload_shorter_than_its_minimum_is_malformed(
    msg_type: MessageType, fmt: WireFormat, size: int
) -> None:
    decode(msg_type, bytes(size), fmt)
    for short in range(size):
        assert_malformed(msg_type, bytes(short), fmt)


# ----- inconsistent payloads -----------------------------------------------------------------


def test_grab_with_a_truncated_type_is_malformed() -> None:
    for tail in (1, 2, 3):
        assert_malformed(MessageType.CLIPBOARD_GRAB, bytes(8 + 4 + tail), FULL)
        assert_malformed(MessageType.CLIPBOARD_GRAB, bytes(4 + 4 + tail), SELECTION_ONLY)
        assert_malformed(MessageType.CLIPBOARD_GRAB, bytes(4 + tail), LEGACY)


def test_caps_with_a_truncated_word_is_malformed() -> None:
    for tail in (1, 2, 3):
        assert_malformed(MessageType.ANNOUNCE_CAPABILITIES, bytes(8 + tail))


def test_monitors_config_must_hold_exactly_its_monitors() -> None:
    one = u32(1) + u32(0) + bytes(20)
    assert decode(MessageType.MONITORS_CONFIG, one) == MonitorsConfig(
        (MonitorConfig(0, 0, 0, 0, 0),)
    )
    assert_malformed(MessageType.MONITORS_CONFIG, one[:-1])  # a monitor cut short
    assert_malformed(MessageType.MONITORS_CONFIG, one + bytes(1))  # trailing byte
    assert_malformed(MessageType.MONITORS_CONFIG, u32(2) + u32(0) + bytes(20))  # one missing


def test_monitors_config_physical_size_flag_needs_the_mm_tail() -> None:
    flags = u32(MonitorsConfigFlag.PHYSICAL_SIZE)
    assert_malformed(MessageType.MONITORS_CONFIG, u32(1) + flags + bytes(20))
    assert_malformed(MessageType.MONITORS_CONFIG, u32(1) + flags + bytes(20 + 2))
    decoded = decode(MessageType.MONITORS_CONFIG, u32(1) + flags + bytes(20) + h("0100 0200"))
    assert decoded.physical_sizes == ((2, 1),)


def test_monitors_config_without_the_flag_rejects_an_mm_tail() -> None:
    # vdagentd 0.22.1 requires exactly 8 + n*20 (docs/guest-agent.md §11): the tail is flag-driven.
    assert_malformed(MessageType.MONITORS_CONFIG, u32(1) + u32(0) + bytes(20 + 4))


def test_file_xfer_data_size_must_match_the_data() -> None:
    head = u32(7) + (5).to_bytes(8, "little")
    assert decode(MessageType.FILE_XFER_DATA, head + b"hello") == FileXferData(7, b"hello")
    assert_malformed(MessageType.FILE_XFER_DATA, head + b"hell")
    assert_malformed(MessageType.FILE_XFER_DATA, head + b"hello!")


def test_file_xfer_data_claiming_a_huge_size_is_malformed() -> None:
    assert_malformed(MessageType.FILE_XFER_DATA, u32(7) + b"\xff" * 8 + b"abc")


def test_audio_volume_sync_channel_count_must_match() -> None:
    assert_malformed(MessageType.AUDIO_VOLUME_SYNC, h("01 00 02 3412"))  # one volume missing
    assert_malformed(MessageType.AUDIO_VOLUME_SYNC, h("01 00 01 3412 ff"))  # trailing byte
    assert_malformed(MessageType.AUDIO_VOLUME_SYNC, h("01 00 01 34"))  # half a volume


def test_graphics_device_info_address_must_fit() -> None:
    entry = u32(0) + u32(0) + u32(1) + u32(0xFFFFFFFF) + b"pci"
    assert_malformed(MessageType.GRAPHICS_DEVICE_INFO, u32(1) + entry)
    entry = u32(0) + u32(0) + u32(1) + u32(3) + b"pc"
    assert_malformed(MessageType.GRAPHICS_DEVICE_INFO, u32(1) + entry)


def test_graphics_device_info_count_that_cannot_fit_fails_before_parsing() -> None:
    # Within the limit, but 64 entries need at least 64 * 16 bytes.
    assert_malformed(MessageType.GRAPHICS_DEVICE_INFO, u32(64) + bytes(16))


def test_malformed_error_chains_the_parser_error() -> None:
    err = assert_malformed(MessageType.MOUSE_STATE, bytes(12))
    assert err.__cause__ is not None
    assert "MOUSE_STATE" in str(err)


# ----- limits, checked before parsing --------------------------------------------------------


def assert_limit(
    msg_type: int, payload: bytes, limits: Limits, limit: int, actual: int,
    fmt: WireFormat = FULL,
) -> None:
    with pytest.raises(LimitExceeded) as info:
        codec.decode(msg_type, payload, fmt, limits)
    assert (info.value.limit, info.value.actual) == (limit, actual)
    assert info.value.message_type == msg_type


@pytest.mark.parametrize(
    ("fmt", "head"),
    [(FULL, h("00000000 05000000")), (SELECTION_ONLY, h("00000000")), (LEGACY, b"")],
    ids=["full", "selection_only", "legacy"],
)
def test_grab_types_over_the_limit(fmt: WireFormat, head: bytes) -> None:
    limits = Limits(max_grab_types=3)
    three = head + u32(1) * 3
    assert len(decode(MessageType.CLIPBOARD_GRAB, three, fmt, limits).types) == 3
    assert_limit(MessageType.CLIPBOARD_GRAB, three + u32(1), limits, 3, 4, fmt)
    # A truncated tail would be a parse error: LimitExceeded shows the count came first.
    assert_limit(MessageType.CLIPBOARD_GRAB, three + u32(1) + b"\x01", limits, 3, 4, fmt)


def test_caps_words_over_the_limit() -> None:
    limits = Limits(max_caps_words=2)
    two = u32(1) + u32(0x38DE7) + u32(0)
    assert decode(MessageType.ANNOUNCE_CAPABILITIES, two, FULL, limits) == (
        AnnounceCapabilities(True, (0x38DE7, 0))
    )
    assert_limit(MessageType.ANNOUNCE_CAPABILITIES, two + u32(0), limits, 2, 3)
    assert_limit(MessageType.ANNOUNCE_CAPABILITIES, two + u32(0) + b"\0\0", limits, 2, 3)


def test_monitors_over_the_limit() -> None:
    limits = Limits(max_monitors=2)
    two = u32(2) + u32(0) + bytes(40)
    assert len(decode(MessageType.MONITORS_CONFIG, two, FULL, limits).monitors) == 2
    assert_limit(MessageType.MONITORS_CONFIG, u32(3) + u32(0) + bytes(60), limits, 2, 3)


def test_devices_over_the_limit() -> None:
    limits = Limits(max_devices=1)
    entry = u32(0) + u32(0) + u32(0) + u32(0)
    assert len(decode(MessageType.GRAPHICS_DEVICE_INFO, u32(1) + entry, FULL, limits)
               .display_info) == 1
    assert_limit(MessageType.GRAPHICS_DEVICE_INFO, u32(2) + entry * 2, limits, 1, 2)


@pytest.mark.parametrize(
    ("msg_type", "payload"),
    [
        (MessageType.MONITORS_CONFIG, u32(0xFFFFFFFF) + u32(0)),
        (MessageType.GRAPHICS_DEVICE_INFO, u32(0xFFFFFFFF)),
    ],
    ids=["monitors", "devices"],
)
def test_a_count_of_2_32_minus_1_fails_fast(msg_type: MessageType, payload: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(LimitExceeded) as info:
        decode(msg_type, payload)
    assert time.perf_counter() - start < 0.1
    assert info.value.actual == 0xFFFFFFFF


def test_a_megabyte_of_grab_types_fails_fast() -> None:
    payload = h("00000000 00000000") + bytes(1024 * 1024)
    start = time.perf_counter()
    with pytest.raises(LimitExceeded) as info:
        decode(MessageType.CLIPBOARD_GRAB, payload)
    assert time.perf_counter() - start < 0.1
    assert info.value.actual == 256 * 1024


def test_limit_exceeded_is_a_remote_protocol_error() -> None:
    assert issubclass(LimitExceeded, RemoteProtocolError)


# ----- unknown values ------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", [0, 17, 18, 1000, 0xFFFFFFFF])
def test_unknown_type_is_kept_whole(msg_type: int) -> None:
    for payload in (b"", b"\x00", bytes(range(40))):
        assert decode(msg_type, payload) == UnknownMessage(msg_type, payload)
    assert codec.encode(UnknownMessage(msg_type, b"raw"), FULL) == (msg_type, b"raw")


def test_unknown_enum_values_are_kept_as_ints() -> None:
    reply = decode(MessageType.REPLY, u32(99) + u32(7))
    assert reply == Reply(99, 7)
    assert type(reply.type) is int and type(reply.error) is int

    data = decode(MessageType.CLIPBOARD, h("09000000") + u32(77) + b"x")
    assert data == ClipboardData(9, 77, b"x")
    assert type(data.selection) is int and type(data.type) is int

    grab = decode(MessageType.CLIPBOARD_GRAB, h("02000000") + u32(3) + u32(1) + u32(1000))
    assert grab == ClipboardGrab(Selection.SECONDARY, (ClipboardType.UTF8_TEXT, 1000), 3)
    assert type(grab.types[0]) is ClipboardType and type(grab.types[1]) is int

    request = decode(MessageType.CLIPBOARD_REQUEST, h("ff000000") + u32(0xFFFFFFFF))
    assert request == ClipboardRequest(255, 0xFFFFFFFF)

    assert decode(MessageType.CLIPBOARD_RELEASE, h("c8")) == ClipboardRelease(200)

    status = decode(MessageType.FILE_XFER_STATUS, u32(1) + u32(42))
    assert status == FileXferStatusMessage(1, 42)
    assert type(status.result) is int


def test_unknown_flag_bits_are_kept() -> None:
    mouse = decode(MessageType.MOUSE_STATE, u32(0) + u32(0) + u32(0x101) + b"\0")
    assert int(mouse.buttons) == 0x101
    assert MouseButton.LEFT not in mouse.buttons
    monitors = decode(MessageType.MONITORS_CONFIG, u32(0) + u32(0x81))
    assert int(monitors.flags) == 0x81
    assert MonitorsConfigFlag.USE_POS in monitors.flags
    display = decode(MessageType.DISPLAY_CONFIG, u32(0x10) + u32(0))
    assert int(display.flags) == 0x10


def test_caps_request_is_any_nonzero_word() -> None:
    assert decode(MessageType.ANNOUNCE_CAPABILITIES, u32(2)).request is True
    assert decode(MessageType.ANNOUNCE_CAPABILITIES, u32(0)).request is False


def test_prefix_padding_is_not_checked() -> None:
    # "Pad bytes are written as zero by every implementation seen" (§4.3): read leniently.
    assert decode(MessageType.CLIPBOARD_REQUEST, h("01ffffff") + u32(1)) == ClipboardRequest(
        Selection.PRIMARY, ClipboardType.UTF8_TEXT
    )


# ----- encoding bad values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        ClipboardGrab(Selection.PRIMARY, (ClipboardType.UTF8_TEXT,)),
        ClipboardRequest(Selection.PRIMARY, ClipboardType.UTF8_TEXT),
        ClipboardRelease(Selection.PRIMARY),
        ClipboardData(Selection.SECONDARY, ClipboardType.UTF8_TEXT, b"x"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_only_clipboard_selection_exists_without_the_selection_prefix(message: object) -> None:
    for fmt in (LEGACY, SERIAL_ONLY):
        with pytest.raises(LocalProtocolError):
            codec.encode(message, fmt)  # type: ignore[arg-type]


def test_grab_needs_a_serial_when_grab_serial_is_negotiated() -> None:
    grab = ClipboardGrab(Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT,), None)
    for fmt in (FULL, SERIAL_ONLY):
        with pytest.raises(LocalProtocolError):
            codec.encode(grab, fmt)


def test_grab_serial_is_left_out_when_not_negotiated() -> None:
    grab = ClipboardGrab(Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT,), 5)
    assert codec.encode(grab, LEGACY) == (MessageType.CLIPBOARD_GRAB, u32(1))


@pytest.mark.parametrize(
    "message",
    [
        MouseState(-1, 0),
        MouseState(0, 0x1_0000_0000),
        MouseState(0, 0, MouseButton.NONE, 256),
        MonitorsConfig((MonitorConfig(-1, 600),)),
        MonitorsConfig((MonitorConfig(800, 600, 32, 0x8000_0000, 0),)),
        MonitorsConfig((MonitorConfig(800, 600),), MonitorsConfigFlag.PHYSICAL_SIZE, None),
        MonitorsConfig(
            (MonitorConfig(800, 600),), MonitorsConfigFlag.PHYSICAL_SIZE, ((1, 2), (3, 4))
        ),
        MonitorsConfig(
            (MonitorConfig(800, 600),), MonitorsConfigFlag.PHYSICAL_SIZE, ((70000, 1),)
        ),
        Reply(-1, ReplyError.SUCCESS),
        ClipboardData(256, ClipboardType.UTF8_TEXT, b""),
        ClipboardData(Selection.CLIPBOARD, 0x1_0000_0000, b""),
        DisplayConfig(DisplayConfigFlag.NONE, -1),
        AnnounceCapabilities(True, (0x1_0000_0000,)),
        ClipboardGrab(Selection.CLIPBOARD, (-1,), 0),
        ClipboardGrab(Selection.CLIPBOARD, (1,), 0x1_0000_0000),
        ClipboardRequest(Selection.CLIPBOARD, -1),
        ClipboardRelease(-1),
        FileXferStart(-1, b""),
        FileXferStatusMessage(0x1_0000_0000, FileXferStatus.SUCCESS),
        FileXferData(-1, b""),
        FileXferData(0x1_0000_0000, b"x"),
        MaxClipboard(0x8000_0000),
        MaxClipboard(-0x8000_0001),
        AudioVolumeSync(True, False, (0x1_0000,)),
        AudioVolumeSync(True, False, (0,) * 256),
        GraphicsDeviceInfo((DeviceDisplayInfo(-1, 0, 0, b""),)),
        "not a message",
    ],
    ids=repr,
)
def test_unencodable_values_raise_local_protocol_error(message: object) -> None:
    with pytest.raises(LocalProtocolError):
        codec.encode(message, FULL)  # type: ignore[arg-type]


# ----- nothing but RemoteProtocolError escapes decode ----------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    msg_type=st.integers(0, 18),
    payload=st.binary(max_size=80),
    fmt=st.sampled_from(ALL_FORMATS),
)
def test_decode_of_any_bytes_is_a_message_or_remote_protocol_error(
    msg_type: int, payload: bytes, fmt: WireFormat
) -> None:
    limits = Limits(max_grab_types=4, max_caps_words=4, max_monitors=2, max_devices=2)
    try:
        codec.decode(msg_type, payload, fmt, limits)
    except RemoteProtocolError:
        pass
