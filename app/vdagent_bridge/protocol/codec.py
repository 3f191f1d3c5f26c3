"""Message payloads ↔ typed messages, given the negotiated wire format.

The codec is the boundary where construct's containers become :mod:`.messages` dataclasses
and back, and where every construct, struct or value error is wrapped: a payload from the guest
that does not parse raises :class:`RemoteProtocolError`; a message we were asked to encode that
cannot be encoded raises :class:`LocalProtocolError`.

Counts that the guest controls (types in a GRAB, caps words, monitors, devices) are checked
against :class:`Limits` from the payload size *before* construct loops over them, so a hostile
count costs nothing.

Large payloads (CLIPBOARD, FILE_XFER_DATA) are parsed and built with the construct declaration
of their head only; the data bytes are sliced once instead of being copied through construct's
stream three times. The declaration stays the specification of the whole payload.

Each of the 16 message types has one decoder and one encoder, side by side below, and one entry
in the table ``_LAYOUTS`` keyed on the wire type: :func:`decode` looks up the header's type,
:func:`encode` the message's ``TYPE`` (every :mod:`.messages` class carries its own).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from construct import ConstructError, Container

from . import wire
from .constants import (
    SELECTION_PREFIX_SIZE,
    ClipboardType,
    DisplayConfigFlag,
    FileXferStatus,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    ReplyError,
    Selection,
)
from .errors import LimitExceeded, LocalProtocolError, RemoteProtocolError
from .messages import (
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
    UnknownMessage,
)
from .payload import Payload

_E = TypeVar("_E", bound=enum.IntEnum)


@dataclass(frozen=True, slots=True)
class WireFormat:
    """Which optional clipboard fields are on the wire (docs/protocol.md §4.3).

    A field is present exactly when both sides announced the capability: the Linux daemon
    frames by the caps the host announced, QEMU by the caps the guest announced, and each
    announces what it implements, so the intersection is what both agree on.
    """

    selection: bool = False
    grab_serial: bool = False


#: The format before any caps are known: vdagentd and spice-gtk treat all optional caps as
#: absent until caps arrive.
LEGACY = WireFormat()
#: The format with the Linux agent (both optional fields).
FULL = WireFormat(selection=True, grab_serial=True)


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits on what the peer controls. Sizes are payload bytes.

    The defaults take a 64 MiB clipboard with room to spare (spice-gtk's own default is
    100 MiB) while keeping a hostile guest from making us allocate more than that per port.
    """

    #: Largest message payload accepted (the CLIPBOARD message adds 8 bytes to the data).
    max_message_size: int = 128 * 1024 * 1024 + 64
    #: Types in one GRAB. The agent offers at most 6 (vdagent clipboard.c); QEMU drops grabs
    #: with more than 10. We accept a few more than anyone sends.
    max_grab_types: int = 16
    #: Capability words in ANNOUNCE_CAPABILITIES (caps fit one word today: 18 bits).
    max_caps_words: int = 16
    #: Monitors in MONITORS_CONFIG (spice-gtk's maximum is 16).
    max_monitors: int = 16
    #: Entries in GRAPHICS_DEVICE_INFO.
    max_devices: int = 64
    #: Requests the guest may have outstanding towards the host, over all selections.
    max_pending_requests: int = 16


def _enum(cls: type[_E], value: int) -> _E | int:
    """Map a wire value to its enum member, keeping unknown values as plain ints."""
    try:
        return cls(value)
    except ValueError:
        return value


def _check_count(
    what: str, count: int, limit: int, msg_type: MessageType
) -> None:
    if count > limit:
        raise LimitExceeded(what, limit=limit, actual=count, message_type=msg_type)


def _selection_of(prefix: Container | None) -> Selection | int:
    return Selection.CLIPBOARD if prefix is None else _enum(Selection, prefix.selection)


def decode(
    msg_type: int, payload: bytes | Payload, fmt: WireFormat, limits: Limits
) -> Message:
    """Decode one payload received from the peer (as bytes, or as the deframer's pieces).

    A type outside 1–16 is an :class:`UnknownMessage`, never an error.

    :raises RemoteProtocolError: the payload does not match its type's layout.
    :raises LimitExceeded: a count in the payload is over ``limits``.
    """
    layout = _LAYOUTS.get(msg_type)
    if layout is None:
        return UnknownMessage(msg_type, bytes(payload))
    try:
        return layout.decode(payload, fmt, limits)
    except (ConstructError, ValueError, OverflowError) as err:
        raise RemoteProtocolError(
            f"malformed {MessageType(msg_type).name} payload ({len(payload)} bytes): "
            f"{type(err).__name__}: {err}".strip(),
            message_type=msg_type,
        ) from err


def data_offset(msg_type: int, fmt: WireFormat) -> int | None:
    """Where the bulk data of a message of this type starts in its payload (after its small
    head), or None for types that carry none. Such data may be received straight into its
    own buffer and handed over as it is (:meth:`.Deframer.receive_buffer`)."""
    if msg_type == MessageType.CLIPBOARD:
        return (SELECTION_PREFIX_SIZE if fmt.selection else 0) + 4
    return None


def encode(msg: Message, fmt: WireFormat) -> tuple[int, bytes]:
    """Encode one message for the peer: its type and payload.

    :raises LocalProtocolError: a field is out of range, or the message cannot be expressed
        in ``fmt`` (a selection other than CLIPBOARD without CLIPBOARD_SELECTION).
    """
    msg_type, head, tail = encode_parts(msg, fmt)
    return msg_type, head + tail if tail else head


def encode_parts(
    msg: Message, fmt: WireFormat
) -> tuple[int, bytes, bytes | bytearray]:
    """Like :func:`encode`, with the payload as (head, data): the data bytes of CLIPBOARD
    and FILE_XFER_DATA are returned as given, not copied behind their head.

    :raises LocalProtocolError: as :func:`encode`, and for an object that is no message.
    """
    try:
        if isinstance(msg, UnknownMessage):
            return msg.type, msg.payload, b""
        layout = _LAYOUTS.get(getattr(msg, "TYPE", 0))  # 0: no message type
        if layout is None or not isinstance(msg, layout.message):
            raise TypeError(f"not a vdagent message: {type(msg).__name__}")
        head, data = layout.encode(msg, fmt)
        return msg.TYPE, head, data
    except (ConstructError, ValueError, OverflowError, TypeError, struct.error) as err:
        raise LocalProtocolError(f"cannot encode {msg!r:.200}: {err}") from err


# ----- one decoder and one encoder per message type -----------------------------------------
#
# Decoders get the whole payload as bytes (joined once), except CLIPBOARD's, which gets the
# deframer's pieces as they are. Encoders return (head, data); only CLIPBOARD and
# FILE_XFER_DATA have data, the bytes the caller gave, which are never copied behind the head.

_Parts = tuple[bytes, bytes | bytearray]
_Decoder = Callable[[bytes | Payload, WireFormat, Limits], Message]
_M = TypeVar("_M")


def _whole(
    decode: Callable[[bytes, WireFormat, Limits], _M],
) -> Callable[[bytes | Payload, WireFormat, Limits], _M]:
    """A decoder of the payload as one bytes object (every type but CLIPBOARD)."""

    def whole(payload: bytes | Payload, fmt: WireFormat, limits: Limits) -> _M:
        return decode(bytes(payload), fmt, limits)

    return whole


def _wire_params(fmt: WireFormat) -> dict[str, bool]:
    """The construct parameters of the clipboard declarations."""
    return {"selection": fmt.selection, "grab_serial": fmt.grab_serial}


def _prefix(selection: int, fmt: WireFormat) -> dict[str, int] | None:
    if fmt.selection:
        return {"selection": int(selection)}
    if selection != Selection.CLIPBOARD:
        raise ValueError("only CLIPBOARD can be sent without CLIPBOARD_SELECTION")
    return None


def _decode_mouse_state(payload: bytes, fmt: WireFormat, limits: Limits) -> MouseState:
    c = wire.MouseState.parse(payload)
    return MouseState(c.x, c.y, MouseButton(c.buttons), c.display_id)


def _encode_mouse_state(msg: MouseState, fmt: WireFormat) -> _Parts:
    return wire.MOUSE_STATE.pack(msg.x, msg.y, int(msg.buttons), msg.display_id), b""


def _decode_monitors_config(payload: bytes, fmt: WireFormat, limits: Limits) -> MonitorsConfig:
    if len(payload) >= 4:
        count = int.from_bytes(payload[:4], "little")
        _check_count("monitors in MONITORS_CONFIG", count, limits.max_monitors,
                     MessageType.MONITORS_CONFIG)
    c = wire.MonitorsConfig.parse(payload)
    return MonitorsConfig(
        tuple(MonitorConfig(m.width, m.height, m.depth, m.x, m.y) for m in c.monitors),
        MonitorsConfigFlag(c.flags),
        None
        if c.physical_sizes is None
        else tuple((p.width, p.height) for p in c.physical_sizes),
    )


def _encode_monitors_config(msg: MonitorsConfig, fmt: WireFormat) -> _Parts:
    if (msg.physical_sizes is not None) != bool(msg.flags & MonitorsConfigFlag.PHYSICAL_SIZE):
        raise ValueError("physical sizes go with the PHYSICAL_SIZE flag, and only with it")
    value: dict[str, object] = {
        "flags": int(msg.flags),
        "monitors": [
            {"height": m.height, "width": m.width, "depth": m.depth, "x": m.x, "y": m.y}
            for m in msg.monitors
        ],
        "physical_sizes": None
        if msg.physical_sizes is None
        else [{"width": w, "height": h} for w, h in msg.physical_sizes],
    }
    return wire.MonitorsConfig.build(value), b""


def _decode_reply(payload: bytes, fmt: WireFormat, limits: Limits) -> Reply:
    c = wire.Reply.parse(payload)
    return Reply(_enum(MessageType, c.type), _enum(ReplyError, c.error))


def _encode_reply(msg: Reply, fmt: WireFormat) -> _Parts:
    return wire.Reply.build({"type": int(msg.type), "error": int(msg.error)}), b""


def _decode_clipboard(
    payload: bytes | Payload, fmt: WireFormat, limits: Limits
) -> ClipboardData:
    """CLIPBOARD: the declared head parsed with construct, the data joined once (or, when
    it was received into its own buffer, handed over as that bytearray)."""
    head = data_offset(MessageType.CLIPBOARD, fmt)
    assert head is not None
    if len(payload) < head:
        raise ValueError(f"needs at least {head} bytes")
    if isinstance(payload, Payload):
        head_bytes, data = payload.head(head), payload.tail(head)
    else:
        head_bytes, data = payload[:head], payload[head:]
    c = wire.Clipboard.parse(head_bytes, selection=fmt.selection)
    return ClipboardData(_selection_of(c.prefix), _enum(ClipboardType, c.type), data)


def _encode_clipboard(msg: ClipboardData, fmt: WireFormat) -> _Parts:
    head = wire.Clipboard.build(
        {"prefix": _prefix(msg.selection, fmt), "type": int(msg.type), "data": b""},
        selection=fmt.selection,
    )
    return head, msg.data


def _decode_display_config(payload: bytes, fmt: WireFormat, limits: Limits) -> DisplayConfig:
    c = wire.DisplayConfig.parse(payload)
    return DisplayConfig(DisplayConfigFlag(c.flags), c.depth)


def _encode_display_config(msg: DisplayConfig, fmt: WireFormat) -> _Parts:
    return wire.DisplayConfig.build({"flags": int(msg.flags), "depth": msg.depth}), b""


def _decode_announce_capabilities(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> AnnounceCapabilities:
    _check_count("caps words", max(len(payload) - 4, 0) // 4, limits.max_caps_words,
                 MessageType.ANNOUNCE_CAPABILITIES)
    c = wire.AnnounceCapabilities.parse(payload)
    return AnnounceCapabilities(bool(c.request), tuple(c.caps))


def _encode_announce_capabilities(msg: AnnounceCapabilities, fmt: WireFormat) -> _Parts:
    return wire.AnnounceCapabilities.build(
        {"request": int(msg.request), "caps": list(msg.caps)}
    ), b""


def _decode_clipboard_grab(payload: bytes, fmt: WireFormat, limits: Limits) -> ClipboardGrab:
    fixed = (SELECTION_PREFIX_SIZE if fmt.selection else 0) + (4 if fmt.grab_serial else 0)
    _check_count("types in CLIPBOARD_GRAB", max(len(payload) - fixed, 0) // 4,
                 limits.max_grab_types, MessageType.CLIPBOARD_GRAB)
    c = wire.ClipboardGrab.parse(payload, **_wire_params(fmt))
    return ClipboardGrab(
        _selection_of(c.prefix),
        tuple(_enum(ClipboardType, t) for t in c.types),
        c.serial,
    )


def _encode_clipboard_grab(msg: ClipboardGrab, fmt: WireFormat) -> _Parts:
    if fmt.grab_serial and msg.serial is None:
        raise ValueError("CLIPBOARD_GRAB_SERIAL is negotiated: the grab needs a serial")
    return wire.ClipboardGrab.build(
        {
            "prefix": _prefix(msg.selection, fmt),
            "serial": msg.serial if fmt.grab_serial else None,
            "types": [int(t) for t in msg.types],
        },
        **_wire_params(fmt),
    ), b""


def _decode_clipboard_request(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> ClipboardRequest:
    c = wire.ClipboardRequest.parse(payload, **_wire_params(fmt))
    return ClipboardRequest(_selection_of(c.prefix), _enum(ClipboardType, c.type))


def _encode_clipboard_request(msg: ClipboardRequest, fmt: WireFormat) -> _Parts:
    return wire.ClipboardRequest.build(
        {"prefix": _prefix(msg.selection, fmt), "type": int(msg.type)}, **_wire_params(fmt)
    ), b""


def _decode_clipboard_release(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> ClipboardRelease:
    # vdagentd's release_clipboards() sends a 1-byte RELEASE whatever the caps.
    c = wire.ClipboardRelease.parse(payload, selection=fmt.selection or len(payload) == 1)
    return ClipboardRelease(_selection_of(c.prefix))


def _encode_clipboard_release(msg: ClipboardRelease, fmt: WireFormat) -> _Parts:
    return wire.ClipboardRelease.build(
        {"prefix": _prefix(msg.selection, fmt)}, **_wire_params(fmt)
    ), b""


def _decode_file_xfer_start(payload: bytes, fmt: WireFormat, limits: Limits) -> FileXferStart:
    c = wire.FileXferStart.parse(payload)
    return FileXferStart(c.id, c.data)


def _encode_file_xfer_start(msg: FileXferStart, fmt: WireFormat) -> _Parts:
    return wire.FileXferStart.build({"id": msg.id, "data": msg.metadata}), b""


def _decode_file_xfer_status(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> FileXferStatusMessage:
    c = wire.FileXferStatus.parse(payload)
    return FileXferStatusMessage(c.id, _enum(FileXferStatus, c.result), c.data)


def _encode_file_xfer_status(msg: FileXferStatusMessage, fmt: WireFormat) -> _Parts:
    return wire.FileXferStatus.build(
        {"id": msg.id, "result": int(msg.result), "data": msg.data}
    ), b""


def _decode_file_xfer_data(payload: bytes, fmt: WireFormat, limits: Limits) -> FileXferData:
    c = wire.FileXferData.parse(payload)
    return FileXferData(c.id, c.data)


def _encode_file_xfer_data(msg: FileXferData, fmt: WireFormat) -> _Parts:
    return wire.FILE_XFER_DATA_HEADER.pack(msg.id, len(msg.data)), msg.data


def _decode_client_disconnected(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> ClientDisconnected:
    wire.ClientDisconnected.parse(payload)
    return ClientDisconnected()


def _encode_client_disconnected(msg: ClientDisconnected, fmt: WireFormat) -> _Parts:
    return wire.ClientDisconnected.build({}), b""


def _decode_max_clipboard(payload: bytes, fmt: WireFormat, limits: Limits) -> MaxClipboard:
    c = wire.MaxClipboard.parse(payload)
    return MaxClipboard(c.max)


def _encode_max_clipboard(msg: MaxClipboard, fmt: WireFormat) -> _Parts:
    return wire.MaxClipboard.build({"max": msg.max}), b""


def _decode_audio_volume_sync(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> AudioVolumeSync:
    c = wire.AudioVolumeSync.parse(payload)
    return AudioVolumeSync(bool(c.is_playback), bool(c.mute), tuple(c.volume))


def _encode_audio_volume_sync(msg: AudioVolumeSync, fmt: WireFormat) -> _Parts:
    return wire.AudioVolumeSync.build(
        {"is_playback": int(msg.is_playback), "mute": int(msg.mute), "volume": list(msg.volume)}
    ), b""


def _decode_graphics_device_info(
    payload: bytes, fmt: WireFormat, limits: Limits
) -> GraphicsDeviceInfo:
    size = len(payload)
    if size >= 4:
        count = int.from_bytes(payload[:4], "little")
        _check_count("devices in GRAPHICS_DEVICE_INFO", count, limits.max_devices,
                     MessageType.GRAPHICS_DEVICE_INFO)
        if count * wire.DEVICE_DISPLAY_INFO_MIN_SIZE > size - 4:
            raise ValueError(f"{count} devices cannot fit in {size} bytes")
    c = wire.GraphicsDeviceInfo.parse(payload)
    return GraphicsDeviceInfo(
        tuple(
            DeviceDisplayInfo(d.channel_id, d.monitor_id, d.device_display_id,
                              d.device_address)
            for d in c.display_info
        )
    )


def _encode_graphics_device_info(msg: GraphicsDeviceInfo, fmt: WireFormat) -> _Parts:
    return wire.GraphicsDeviceInfo.build(
        {
            "display_info": [
                {
                    "channel_id": d.channel_id,
                    "monitor_id": d.monitor_id,
                    "device_display_id": d.device_display_id,
                    "device_address": d.device_address,
                }
                for d in msg.display_info
            ]
        }
    ), b""


@dataclass(frozen=True, slots=True)
class _Layout:
    """How the messages of one type go to and from their payload."""

    #: The :mod:`.messages` class of the type (its ``TYPE`` is the key of the layout).
    message: type
    decode: _Decoder
    encode: Callable[[Any, WireFormat], _Parts]


#: Every message type 1–16, keyed on the wire type: decode looks up the header's type,
#: encode the message's ``TYPE``.
_LAYOUTS: dict[int, _Layout] = {
    MessageType.MOUSE_STATE: _Layout(
        MouseState, _whole(_decode_mouse_state), _encode_mouse_state),
    MessageType.MONITORS_CONFIG: _Layout(
        MonitorsConfig, _whole(_decode_monitors_config), _encode_monitors_config),
    MessageType.REPLY: _Layout(Reply, _whole(_decode_reply), _encode_reply),
    MessageType.CLIPBOARD: _Layout(ClipboardData, _decode_clipboard, _encode_clipboard),
    MessageType.DISPLAY_CONFIG: _Layout(
        DisplayConfig, _whole(_decode_display_config), _encode_display_config),
    MessageType.ANNOUNCE_CAPABILITIES: _Layout(
        AnnounceCapabilities, _whole(_decode_announce_capabilities),
        _encode_announce_capabilities),
    MessageType.CLIPBOARD_GRAB: _Layout(
        ClipboardGrab, _whole(_decode_clipboard_grab), _encode_clipboard_grab),
    MessageType.CLIPBOARD_REQUEST: _Layout(
        ClipboardRequest, _whole(_decode_clipboard_request), _encode_clipboard_request),
    MessageType.CLIPBOARD_RELEASE: _Layout(
        ClipboardRelease, _whole(_decode_clipboard_release), _encode_clipboard_release),
    MessageType.FILE_XFER_START: _Layout(
        FileXferStart, _whole(_decode_file_xfer_start), _encode_file_xfer_start),
    MessageType.FILE_XFER_STATUS: _Layout(
        FileXferStatusMessage, _whole(_decode_file_xfer_status), _encode_file_xfer_status),
    MessageType.FILE_XFER_DATA: _Layout(
        FileXferData, _whole(_decode_file_xfer_data), _encode_file_xfer_data),
    MessageType.CLIENT_DISCONNECTED: _Layout(
        ClientDisconnected, _whole(_decode_client_disconnected), _encode_client_disconnected),
    MessageType.MAX_CLIPBOARD: _Layout(
        MaxClipboard, _whole(_decode_max_clipboard), _encode_max_clipboard),
    MessageType.AUDIO_VOLUME_SYNC: _Layout(
        AudioVolumeSync, _whole(_decode_audio_volume_sync), _encode_audio_volume_sync),
    MessageType.GRAPHICS_DEVICE_INFO: _Layout(
        GraphicsDeviceInfo, _whole(_decode_graphics_device_info), _encode_graphics_device_info),
}
