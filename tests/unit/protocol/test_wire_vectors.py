"""Byte-exact wire vectors for every vdagent message, written by hand from docs/protocol.md §2–§5.

Every vector below was typed from the layout tables of docs/protocol.md §2 and §5 (spice-protocol
``vd_agent.h``: little-endian, packed), one field per line with its meaning, and never produced
by our encoder. Each one is checked both ways: ``decode(vector) == message`` and
``encode(message) == vector``, under every wire format it applies to. The optional clipboard
fields (docs/protocol.md §5.3, §4.3) give three formats:

- ``FULL``: CLIPBOARD_SELECTION and CLIPBOARD_GRAB_SERIAL negotiated (the Linux agent);
- ``SELECTION_ONLY``: the 4-byte selection prefix but no grab serial;
- ``LEGACY``: neither (before caps, or the Windows agent).

The second half frames each vector as a whole message (chunk header + message header + payload,
docs/protocol.md §2.2–§2.3) and checks ``frame_message`` against the hand-built bytes, then feeds
them to a ``Deframer`` whole, byte by byte, in two pieces at every split point, and followed by more
data (every parser test runs its input whole, byte by byte and with trailing data).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import pytest

from vdagent_bridge.protocol import codec, wire
from vdagent_bridge.protocol.codec import FULL, LEGACY, Limits, WireFormat
from vdagent_bridge.protocol.constants import (
    ClipboardType,
    DisplayConfigFlag,
    FileXferErrorType,
    FileXferStatus,
    GIOErrorCode,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    ReplyError,
    Selection,
)
from vdagent_bridge.protocol.deframer import Deframer, RawMessage
from vdagent_bridge.protocol.errors import RemoteProtocolError
from vdagent_bridge.protocol.framer import frame_message
from vdagent_bridge.protocol.messages import (
    AnnounceCapabilities,
    AudioVolumeSync,
    ClientDisconnected,
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
)

SELECTION_ONLY = WireFormat(selection=True, grab_serial=False)
ALL_FORMATS = (FULL, SELECTION_ONLY, LEGACY)
WITH_SELECTION = (FULL, SELECTION_ONLY)
LIMITS = Limits()


def h(text: str) -> bytes:
    """Bytes from hex text; spaces are ignored so fields can be grouped."""
    return bytes.fromhex(text)


@dataclass(frozen=True)
class Vector:
    """One hand-written payload and the message it is."""

    name: str
    formats: tuple[WireFormat, ...]
    payload: bytes
    message: Message
    #: The field that takes "bytes up to the end of the message", so trailing bytes become
    #: part of it; None when any trailing bytes make the payload malformed.
    absorbs_trailing: str | None = None
    #: False for payloads we accept but never produce (vdagentd's 1-byte RELEASE).
    encodes: bool = True

    @property
    def msg_type(self) -> MessageType:
        return self.message.TYPE  # type: ignore[union-attr]  # never an UnknownMessage


VECTORS = [
    # ----- 1 MOUSE_STATE: exactly 13 bytes (docs/protocol.md §5.1) ------------------------------
    Vector(
        "mouse_state",
        ALL_FORMATS,
        h(
            "64000000"  # u32 x = 100
            "c8000000"  # u32 y = 200
            "0a000000"  # u32 buttons = LEFT (1<<1) | RIGHT (1<<3); bit 0 is unused
            "01"  # u8 display_id = 1
        ),
        MouseState(100, 200, MouseButton.LEFT | MouseButton.RIGHT, 1),
    ),
    Vector(
        "mouse_state_little_endian_wheel",
        ALL_FORMATS,
        h(
            "7f070000"  # u32 x = 1919 (0x077f): last pixel of a 1920 wide screen
            "37040000"  # u32 y = 1079 (0x0437)
            "14000000"  # u32 buttons = MIDDLE (1<<2) | WHEEL_UP (1<<4)
            "00"  # u8 display_id = 0
        ),
        MouseState(1919, 1079, MouseButton.MIDDLE | MouseButton.WHEEL_UP, 0),
    ),
    # ----- 2 MONITORS_CONFIG: u32 count, u32 flags, count x MonConfig (§4.2) ----------------
    Vector(
        "monitors_config_one",
        ALL_FORMATS,
        h(
            "01000000"  # u32 num_of_monitors = 1
            "01000000"  # u32 flags = USE_POS
            "58020000"  # MonConfig u32 height = 600   (height comes first!)
            "20030000"  #           u32 width = 800
            "20000000"  #           u32 depth = 32
            "00000000"  #           i32 x = 0
            "00000000"  #           i32 y = 0
        ),
        MonitorsConfig((MonitorConfig(800, 600, 32, 0, 0),), MonitorsConfigFlag.USE_POS),
    ),
    Vector(
        "monitors_config_two",
        ALL_FORMATS,
        h(
            "02000000"  # u32 num_of_monitors = 2
            "01000000"  # u32 flags = USE_POS
            "38040000"  # [0] u32 height = 1080
            "80070000"  #     u32 width = 1920
            "20000000"  #     u32 depth = 32
            "00000000"  #     i32 x = 0
            "00000000"  #     i32 y = 0
            "00030000"  # [1] u32 height = 768
            "00040000"  #     u32 width = 1024
            "10000000"  #     u32 depth = 16
            "80070000"  #     i32 x = 1920
            "9cffffff"  #     i32 y = -100
        ),
        MonitorsConfig(
            (MonitorConfig(1920, 1080, 32, 0, 0), MonitorConfig(1024, 768, 16, 1920, -100)),
            MonitorsConfigFlag.USE_POS,
        ),
    ),
    Vector(
        "monitors_config_sparse_disabled_monitor",
        ALL_FORMATS,
        h(
            "01000000"  # u32 num_of_monitors = 1
            "00000000"  # u32 flags = none
            "00000000"  # u32 height = 0   (0x0 = disabled, SPARSE_MONITORS_CONFIG)
            "00000000"  # u32 width = 0
            "20000000"  # u32 depth = 32
            "00000000"  # i32 x = 0
            "00000000"  # i32 y = 0
        ),
        MonitorsConfig((MonitorConfig(0, 0, 32, 0, 0),), MonitorsConfigFlag.NONE),
    ),
    Vector(
        "monitors_config_physical_size",
        ALL_FORMATS,
        h(
            "01000000"  # u32 num_of_monitors = 1
            "03000000"  # u32 flags = USE_POS | PHYSICAL_SIZE
            "58020000"  # MonConfig u32 height = 600
            "20030000"  #           u32 width = 800
            "20000000"  #           u32 depth = 32
            "00000000"  #           i32 x = 0
            "00000000"  #           i32 y = 0
            "a900"  # MonitorMM u16 height = 169 mm   (height first again)
            "2d01"  #           u16 width = 301 mm
        ),
        MonitorsConfig(
            (MonitorConfig(800, 600, 32, 0, 0),),
            MonitorsConfigFlag.USE_POS | MonitorsConfigFlag.PHYSICAL_SIZE,
            ((301, 169),),  # (width, height), like MonitorConfig
        ),
    ),
    # ----- 3 REPLY: u32 type, u32 error (§4.2) ---------------------------------------------
    Vector(
        "reply_monitors_config_success",
        ALL_FORMATS,
        h(
            "02000000"  # u32 type = MONITORS_CONFIG (the acknowledged message)
            "01000000"  # u32 error = SUCCESS
        ),
        Reply(MessageType.MONITORS_CONFIG, ReplyError.SUCCESS),
    ),
    Vector(
        "reply_display_config_error",
        ALL_FORMATS,
        h(
            "05000000"  # u32 type = DISPLAY_CONFIG
            "02000000"  # u32 error = ERROR
        ),
        Reply(MessageType.DISPLAY_CONFIG, ReplyError.ERROR),
    ),
    # ----- 4 CLIPBOARD: [sel] u32 type, data to the end (§4.3) -----------------------------
    Vector(
        "clipboard_with_selection",
        WITH_SELECTION,
        h(
            "01"  # u8 selection = PRIMARY
            "000000"  # u8 pad[3]
            "01000000"  # u32 type = UTF8_TEXT
            "68690a"  # data = "hi\n" (no trailing NUL)
        ),
        ClipboardData(Selection.PRIMARY, ClipboardType.UTF8_TEXT, b"hi\n"),
        absorbs_trailing="data",
    ),
    Vector(
        "clipboard_legacy",
        (LEGACY,),
        h(
            "01000000"  # u32 type = UTF8_TEXT   (no prefix: CLIPBOARD implied)
            "68690a"  # data = "hi\n"
        ),
        ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, b"hi\n"),
        absorbs_trailing="data",
    ),
    Vector(
        "clipboard_no_data_answer",
        WITH_SELECTION,
        h(
            "00"  # u8 selection = CLIPBOARD
            "000000"  # u8 pad[3]
            "00000000"  # u32 type = NONE, no data: the Linux agent's "no data" (§10.8)
        ),
        ClipboardData(Selection.CLIPBOARD, ClipboardType.NONE, b""),
        absorbs_trailing="data",
    ),
    Vector(
        "clipboard_png_legacy",
        (LEGACY,),
        h(
            "02000000"  # u32 type = IMAGE_PNG
            "89504e470d0a1a0a"  # data = the PNG signature
        ),
        ClipboardData(Selection.CLIPBOARD, ClipboardType.IMAGE_PNG, b"\x89PNG\r\n\x1a\n"),
        absorbs_trailing="data",
    ),
    # ----- 5 DISPLAY_CONFIG: u32 flags, u32 depth (§4.2) -----------------------------------
    Vector(
        "display_config",
        ALL_FORMATS,
        h(
            "09000000"  # u32 flags = DISABLE_WALLPAPER (1) | SET_COLOR_DEPTH (8)
            "10000000"  # u32 depth = 16
        ),
        DisplayConfig(
            DisplayConfigFlag.DISABLE_WALLPAPER | DisplayConfigFlag.SET_COLOR_DEPTH, 16
        ),
    ),
    # ----- 6 ANNOUNCE_CAPABILITIES: u32 request, u32 caps[] (§3) ---------------------------
    Vector(
        "announce_capabilities_linux_agent",
        ALL_FORMATS,
        h(
            "01000000"  # u32 request = 1: answer with your caps
            "e78d0300"  # u32 caps[0] = 0x00038de7, vdagentd 0.22.1 (§3, seen live §12)
        ),
        AnnounceCapabilities(True, (0x00038DE7,)),
    ),
    Vector(
        "announce_capabilities_answer_two_words",
        ALL_FORMATS,
        h(
            "00000000"  # u32 request = 0: an answer
            "77500300"  # u32 caps[0] = 0x00035077, spice-gtk's word (§3)
            "00000080"  # u32 caps[1] = bit 63: a future capability, kept as is
        ),
        AnnounceCapabilities(False, (0x00035077, 0x80000000)),
    ),
    Vector(
        "announce_capabilities_no_words",
        ALL_FORMATS,
        h("00000000"),  # u32 request = 0, no caps words
        AnnounceCapabilities(False, ()),
    ),
    # ----- 7 CLIPBOARD_GRAB: [sel] [serial] u32 types[] (§4.3) -----------------------------
    Vector(
        "clipboard_grab_full",
        (FULL,),
        h(
            "00"  # u8 selection = CLIPBOARD
            "000000"  # u8 pad[3]
            "05000000"  # u32 serial = 5
            "01000000"  # u32 types[0] = UTF8_TEXT
            "02000000"  # u32 types[1] = IMAGE_PNG
        ),
        ClipboardGrab(
            Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG), 5
        ),
    ),
    Vector(
        "clipboard_grab_full_no_types",
        (FULL,),
        h(
            "01"  # u8 selection = PRIMARY
            "000000"  # u8 pad[3]
            "04030201"  # u32 serial = 0x01020304, no types follow
        ),
        ClipboardGrab(Selection.PRIMARY, (), 0x01020304),
    ),
    Vector(
        "clipboard_grab_full_all_six_types",
        (FULL,),
        h(
            "01"  # u8 selection = PRIMARY
            "000000"  # u8 pad[3]
            "ffffffff"  # u32 serial = 0xffffffff
            "01000000"  # UTF8_TEXT
            "02000000"  # IMAGE_PNG
            "03000000"  # IMAGE_BMP
            "04000000"  # IMAGE_TIFF
            "05000000"  # IMAGE_JPG
            "06000000"  # FILE_LIST
        ),
        ClipboardGrab(
            Selection.PRIMARY,
            (
                ClipboardType.UTF8_TEXT,
                ClipboardType.IMAGE_PNG,
                ClipboardType.IMAGE_BMP,
                ClipboardType.IMAGE_TIFF,
                ClipboardType.IMAGE_JPG,
                ClipboardType.FILE_LIST,
            ),
            0xFFFFFFFF,
        ),
    ),
    Vector(
        "clipboard_grab_selection_only",
        (SELECTION_ONLY,),
        h(
            "01"  # u8 selection = PRIMARY
            "000000"  # u8 pad[3]   (no serial without CLIPBOARD_GRAB_SERIAL)
            "01000000"  # u32 types[0] = UTF8_TEXT
        ),
        ClipboardGrab(Selection.PRIMARY, (ClipboardType.UTF8_TEXT,), None),
    ),
    Vector(
        "clipboard_grab_legacy",
        (LEGACY,),
        h(
            "01000000"  # u32 types[0] = UTF8_TEXT   (no prefix, no serial)
            "02000000"  # u32 types[1] = IMAGE_PNG
            "03000000"  # u32 types[2] = IMAGE_BMP
        ),
        ClipboardGrab(
            Selection.CLIPBOARD,
            (ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG, ClipboardType.IMAGE_BMP),
        ),
    ),
    Vector(
        "clipboard_grab_legacy_no_types",
        (LEGACY,),
        b"",  # nothing at all: CLIPBOARD, no types
        ClipboardGrab(Selection.CLIPBOARD, ()),
    ),
    # ----- 8 CLIPBOARD_REQUEST: [sel] u32 type (§4.3) --------------------------------------
    Vector(
        "clipboard_request_with_selection",
        WITH_SELECTION,
        h(
            "01"  # u8 selection = PRIMARY
            "000000"  # u8 pad[3]
            "02000000"  # u32 type = IMAGE_PNG
        ),
        ClipboardRequest(Selection.PRIMARY, ClipboardType.IMAGE_PNG),
    ),
    Vector(
        "clipboard_request_legacy",
        (LEGACY,),
        h("01000000"),  # u32 type = UTF8_TEXT   (CLIPBOARD implied)
        ClipboardRequest(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT),
    ),
    # ----- 9 CLIPBOARD_RELEASE: [sel] only (§4.3, §10.7) -----------------------------------
    Vector(
        "clipboard_release_with_selection",
        WITH_SELECTION,
        h(
            "01"  # u8 selection = PRIMARY
            "000000"  # u8 pad[3]
        ),
        ClipboardRelease(Selection.PRIMARY),
    ),
    Vector(
        "clipboard_release_legacy",
        (LEGACY,),
        b"",  # empty: CLIPBOARD implied
        ClipboardRelease(Selection.CLIPBOARD),
    ),
    Vector(
        "clipboard_release_one_byte_quirk",
        ALL_FORMATS,
        h("01"),  # u8 selection = PRIMARY, no padding: vdagentd release_clipboards() (§7.4)
        ClipboardRelease(Selection.PRIMARY),
        encodes=False,
    ),
    # ----- 10 FILE_XFER_START: u32 id, GKeyFile text (§4.4) --------------------------------
    Vector(
        "file_xfer_start",
        ALL_FORMATS,
        h("07000000")  # u32 id = 7
        + b"[vdagent-file-xfer]\nname=a.txt\nsize=3\n"  # the key file text
        + h("00"),  # the NUL the agent needs: it loads the text with length -1
        FileXferStart(7, b"[vdagent-file-xfer]\nname=a.txt\nsize=3\n\x00"),
        absorbs_trailing="metadata",
    ),
    # ----- 11 FILE_XFER_STATUS: u32 id, u32 result, detail to the end (§4.4) ---------------
    Vector(
        "file_xfer_status_can_send_data",
        ALL_FORMATS,
        h(
            "07000000"  # u32 id = 7
            "00000000"  # u32 result = CAN_SEND_DATA
        ),
        FileXferStatusMessage(7, FileXferStatus.CAN_SEND_DATA),
        absorbs_trailing="data",
    ),
    Vector(
        "file_xfer_status_detailed_error",
        ALL_FORMATS,
        h(
            "07000000"  # u32 id = 7
            "02000000"  # u32 result = ERROR
            "00"  # u8 error_type = GLIB_IO     \  5 bytes, packed
            "0e000000"  # u32 error_code = G_IO_ERROR_PERMISSION_DENIED (14)  /
        ),
        FileXferStatusMessage(7, FileXferStatus.ERROR, h("00 0e000000")),
        absorbs_trailing="data",
    ),
    Vector(
        "file_xfer_status_not_enough_space",
        ALL_FORMATS,
        h(
            "07000000"  # u32 id = 7
            "04000000"  # u32 result = NOT_ENOUGH_SPACE
            "0000100000000000"  # u64 disk_free_space = 1 MiB (0x100000)
        ),
        FileXferStatusMessage(7, FileXferStatus.NOT_ENOUGH_SPACE, h("0000100000000000")),
        absorbs_trailing="data",
    ),
    Vector(
        "file_xfer_status_cancelled_by_host",
        ALL_FORMATS,
        h(
            "2a000000"  # u32 id = 42
            "01000000"  # u32 result = CANCELLED
        ),
        FileXferStatusMessage(42, FileXferStatus.CANCELLED),
        absorbs_trailing="data",
    ),
    # ----- 12 FILE_XFER_DATA: u32 id, u64 size, data[size] (§4.4) --------------------------
    Vector(
        "file_xfer_data",
        ALL_FORMATS,
        h(
            "07000000"  # u32 id = 7
            "0500000000000000"  # u64 size = 5
            "68656c6c6f"  # data = "hello"
        ),
        FileXferData(7, b"hello"),
    ),
    Vector(
        "file_xfer_data_empty",
        ALL_FORMATS,
        h(
            "07000000"  # u32 id = 7
            "0000000000000000"  # u64 size = 0: completes a zero-byte file
        ),
        FileXferData(7, b""),
    ),
    # ----- 13 CLIENT_DISCONNECTED: empty (§4.5) --------------------------------------------
    Vector("client_disconnected", ALL_FORMATS, b"", ClientDisconnected()),
    # ----- 14 MAX_CLIPBOARD: i32 max (§4.3) ------------------------------------------------
    Vector(
        "max_clipboard_unlimited",
        ALL_FORMATS,
        h("ffffffff"),  # i32 max = -1: no limit
        MaxClipboard(-1),
    ),
    Vector(
        "max_clipboard_100_mib",
        ALL_FORMATS,
        h("00004006"),  # i32 max = 104857600 (0x06400000), spice-gtk's default
        MaxClipboard(100 * 1024 * 1024),
    ),
    # ----- 15 AUDIO_VOLUME_SYNC: u8, u8, u8 n, u16 volume[n] at offset 3 (§4.5) ------------
    Vector(
        "audio_volume_sync",
        ALL_FORMATS,
        h(
            "01"  # u8 is_playback = 1
            "00"  # u8 mute = 0
            "02"  # u8 nchannels = 2
            "3412"  # u16 volume[0] = 0x1234   (offset 3: unaligned)
            "ffff"  # u16 volume[1] = 0xffff
        ),
        AudioVolumeSync(True, False, (0x1234, 0xFFFF)),
    ),
    Vector(
        "audio_volume_sync_muted_no_channels",
        ALL_FORMATS,
        h(
            "00"  # u8 is_playback = 0: the record stream
            "01"  # u8 mute = 1
            "00"  # u8 nchannels = 0
        ),
        AudioVolumeSync(False, True, ()),
    ),
    # ----- 16 GRAPHICS_DEVICE_INFO: u32 count, count x DeviceDisplayInfo (§4.5) ------------
    Vector(
        "graphics_device_info",
        ALL_FORMATS,
        h(
            "02000000"  # u32 count = 2
            "00000000"  # [0] u32 channel_id = 0
            "00000000"  #     u32 monitor_id = 0
            "01000000"  #     u32 device_display_id = 1
            "0e000000"  #     u32 device_address_len = 14
        )
        + b"pci/0000/02.0\x00"  # u8 device_address[14], NUL-terminated
        + h(
            "01000000"  # [1] u32 channel_id = 1
            "02000000"  #     u32 monitor_id = 2
            "03000000"  #     u32 device_display_id = 3
            "00000000"  #     u32 device_address_len = 0
        ),
        GraphicsDeviceInfo(
            (
                DeviceDisplayInfo(0, 0, 1, b"pci/0000/02.0\x00"),
                DeviceDisplayInfo(1, 2, 3, b""),
            )
        ),
    ),
    Vector(
        "graphics_device_info_empty",
        ALL_FORMATS,
        h("00000000"),  # u32 count = 0
        GraphicsDeviceInfo(()),
    ),
]

BY_NAME = {v.name: v for v in VECTORS}
FORMAT_NAMES = {FULL: "full", SELECTION_ONLY: "selection_only", LEGACY: "legacy"}


def cases(*, encodable_only: bool = False) -> list[object]:
    return [
        pytest.param(v, fmt, id=f"{v.name}-{FORMAT_NAMES[fmt]}")
        for v in VECTORS
        for fmt in v.formats
        if v.encodes or not encodable_only
    ]


CASES = cases()
ENCODING_CASES = cases(encodable_only=True)


def test_every_message_type_has_a_vector() -> None:
    covered = {v.msg_type for v in VECTORS}
    assert covered == set(MessageType)


# ----- payloads ------------------------------------------------------------------------------


@pytest.mark.parametrize(("vector", "fmt"), CASES)
def test_decodes_hand_written_payload(vector: Vector, fmt: WireFormat) -> None:
    message = codec.decode(vector.msg_type, vector.payload, fmt, LIMITS)
    assert message == vector.message
    assert type(message) is type(vector.message)


@pytest.mark.parametrize(("vector", "fmt"), ENCODING_CASES)
def test_encodes_to_hand_written_payload(vector: Vector, fmt: WireFormat) -> None:
    assert codec.encode(vector.message, fmt) == (vector.msg_type, vector.payload)


#: Two bytes: one would be a well-formed 1-byte RELEASE after an empty legacy one.
TRAILING = h("eeef")


@pytest.mark.parametrize(("vector", "fmt"), CASES)
def test_payload_with_trailing_data(vector: Vector, fmt: WireFormat) -> None:
    msg_type = vector.msg_type
    if vector.absorbs_trailing is not None:
        field = vector.absorbs_trailing
        expected = replace(
            vector.message,
            **{field: getattr(vector.message, field) + TRAILING},
        )
        assert codec.decode(msg_type, vector.payload + TRAILING, fmt, LIMITS) == expected
    else:
        with pytest.raises(RemoteProtocolError) as info:
            codec.decode(msg_type, vector.payload + TRAILING, fmt, LIMITS)
        assert info.value.message_type == msg_type


def test_enum_fields_decode_to_enum_members() -> None:
    grab = codec.decode(
        MessageType.CLIPBOARD_GRAB, BY_NAME["clipboard_grab_full"].payload, FULL, LIMITS
    )
    assert isinstance(grab, ClipboardGrab)
    assert type(grab.selection) is Selection
    assert all(type(t) is ClipboardType for t in grab.types)
    reply = codec.decode(MessageType.REPLY, h("02000000 01000000"), FULL, LIMITS)
    assert isinstance(reply, Reply)
    assert type(reply.type) is MessageType
    assert type(reply.error) is ReplyError


def test_detailed_error_detail_is_five_packed_bytes() -> None:
    detail = wire.FileXferStatusError.parse(h("00 0e000000"))
    assert wire.FileXferStatusError.sizeof() == 5
    assert detail.error_type == FileXferErrorType.GLIB_IO
    assert detail.error_code == GIOErrorCode.PERMISSION_DENIED


def test_not_enough_space_detail_is_a_u64() -> None:
    detail = wire.FileXferStatusNotEnoughSpace.parse(h("0000100000000000"))
    assert detail.disk_free_space == 1024 * 1024


# ----- whole framed messages -----------------------------------------------------------------


def frame_by_hand(msg_type: int, payload: bytes, port: int = 1) -> bytes:
    """chunk header (u32 port, u32 size) + message header (u32 protocol = 1, u32 type,
    u64 opaque = 0, u32 size) + payload, as one chunk (docs/protocol.md §2.2–§2.3). Written with
    ``int.to_bytes`` so it shares nothing with ``wire``."""
    size = len(payload)
    return (
        port.to_bytes(4, "little")
        + (20 + size).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + int(msg_type).to_bytes(4, "little")
        + bytes(8)
        + size.to_bytes(4, "little")
        + payload
    )


FRAMED_MOUSE_STATE = h(
    "01000000"  # chunk u32 port = 1 (VDP_CLIENT_PORT)
    "21000000"  # chunk u32 size = 33 = 20 + 13
    "01000000"  # message u32 protocol = 1
    "01000000"  # message u32 type = MOUSE_STATE
    "0000000000000000"  # message u64 opaque = 0
    "0d000000"  # message u32 size = 13
    "64000000 c8000000 0a000000 01"  # payload: x = 100, y = 200, LEFT|RIGHT, display 1
)

FRAMED_CAPS = h(
    "01000000"  # chunk u32 port = 1
    "1c000000"  # chunk u32 size = 28 = 20 + 8
    "01000000"  # message u32 protocol = 1
    "06000000"  # message u32 type = ANNOUNCE_CAPABILITIES
    "0000000000000000"  # message u64 opaque = 0
    "08000000"  # message u32 size = 8
    "01000000 e78d0300"  # payload: request = 1, caps[0] = 0x00038de7
)

FRAMED_CLIENT_DISCONNECTED = h(
    "01000000"  # chunk u32 port = 1
    "14000000"  # chunk u32 size = 20: the message header alone
    "01000000"  # message u32 protocol = 1
    "0d000000"  # message u32 type = CLIENT_DISCONNECTED
    "0000000000000000"  # message u64 opaque = 0
    "00000000"  # message u32 size = 0
)


def test_hand_framed_messages_agree_with_the_helper() -> None:
    mouse = BY_NAME["mouse_state"].payload
    assert frame_by_hand(MessageType.MOUSE_STATE, mouse) == FRAMED_MOUSE_STATE
    assert frame_by_hand(MessageType.ANNOUNCE_CAPABILITIES, h("01000000 e78d0300")) == (
        FRAMED_CAPS
    )
    assert frame_by_hand(MessageType.CLIENT_DISCONNECTED, b"") == FRAMED_CLIENT_DISCONNECTED


FRAMED_CASES = [
    pytest.param(v.msg_type, v.payload, id=v.name)
    for v in VECTORS
]


def as_tuples(items: Iterable[object]) -> list[tuple[int, int, bytes]]:
    """Deframer items as (port, type, payload); every item must be a message."""
    out = []
    for item in items:
        assert isinstance(item, RawMessage), item
        out.append((item.port, item.type, item.payload))
    return out


def deframe(*pieces: bytes) -> tuple[list[tuple[int, int, bytes]], Deframer]:
    deframer = Deframer(max_message_size=LIMITS.max_message_size)
    for piece in pieces:
        deframer.feed(piece)
    return as_tuples(deframer.items), deframer


@pytest.mark.parametrize(("msg_type", "payload"), FRAMED_CASES)
def test_frame_message_builds_the_hand_framed_bytes(msg_type: int, payload: bytes) -> None:
    out = bytearray()
    frame_message(out, msg_type, payload)
    assert bytes(out) == frame_by_hand(msg_type, payload)


@pytest.mark.parametrize(("msg_type", "payload"), FRAMED_CASES)
def test_deframer_reads_framed_vector_whole(msg_type: int, payload: bytes) -> None:
    items, deframer = deframe(frame_by_hand(msg_type, payload))
    assert items == [(1, msg_type, payload)]
    assert deframer.buffered() == 0


@pytest.mark.parametrize(("msg_type", "payload"), FRAMED_CASES)
def test_deframer_reads_framed_vector_byte_by_byte(msg_type: int, payload: bytes) -> None:
    framed = frame_by_hand(msg_type, payload)
    items, deframer = deframe(*(framed[i : i + 1] for i in range(len(framed))))
    assert items == [(1, msg_type, payload)]
    assert deframer.buffered() == 0


@pytest.mark.parametrize(("msg_type", "payload"), FRAMED_CASES)
def test_deframer_reads_framed_vector_split_anywhere(msg_type: int, payload: bytes) -> None:
    framed = frame_by_hand(msg_type, payload)
    for split in range(len(framed) + 1):
        items, _ = deframe(framed[:split], framed[split:])
        assert items == [(1, msg_type, payload)], f"split at {split}"


@pytest.mark.parametrize(("msg_type", "payload"), FRAMED_CASES)
def test_deframer_reads_framed_vector_followed_by_more(msg_type: int, payload: bytes) -> None:
    framed = frame_by_hand(msg_type, payload)
    items, deframer = deframe(framed + FRAMED_MOUSE_STATE + FRAMED_CAPS[:11])
    assert items == [
        (1, msg_type, payload),
        (1, MessageType.MOUSE_STATE, FRAMED_MOUSE_STATE[28:]),
    ]
    assert deframer.buffered() == 11 - 8  # the chunk header is read, 3 header bytes wait
    deframer.feed(FRAMED_CAPS[11:])
    assert as_tuples(deframer.items)[2:] == [
        (1, MessageType.ANNOUNCE_CAPABILITIES, h("01000000 e78d0300"))
    ]


@pytest.mark.parametrize(("vector", "fmt"), CASES)
def test_framed_vector_decodes_to_its_message(vector: Vector, fmt: WireFormat) -> None:
    ((_, msg_type, payload),), _ = deframe(frame_by_hand(vector.msg_type, vector.payload))
    assert codec.decode(msg_type, payload, fmt, LIMITS) == vector.message
