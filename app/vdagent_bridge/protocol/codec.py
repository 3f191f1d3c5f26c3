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
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeVar

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
    """Which optional clipboard fields are on the wire (protocol.md §10.6).

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

    :raises RemoteProtocolError: the payload does not match its type's layout.
    :raises LimitExceeded: a count in the payload is over ``limits``.
    """
    try:
        kind = MessageType(msg_type)
    except ValueError:
        return UnknownMessage(msg_type, bytes(payload))
    try:
        if kind is MessageType.CLIPBOARD:
            return _decode_clipboard(payload, fmt)
        return _decode(kind, bytes(payload), fmt, limits)
    except (ConstructError, ValueError, OverflowError) as err:
        raise RemoteProtocolError(
            f"malformed {kind.name} payload ({len(payload)} bytes): "
            f"{type(err).__name__}: {err}".strip(),
            message_type=msg_type,
        ) from err


def data_offset(msg_type: int, fmt: WireFormat) -> int | None:
    """Where the bulk data of a message of this type starts in its payload (after its small
    head), or None for types that carry none. Such data may be received straight into its
    own buffer and handed over as it is (:meth:`Deframer.receive_buffer`)."""
    if msg_type == MessageType.CLIPBOARD:
        return (SELECTION_PREFIX_SIZE if fmt.selection else 0) + 4
    return None


def _decode_clipboard(payload: bytes | Payload, fmt: WireFormat) -> ClipboardData:
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


def _decode(kind: MessageType, payload: bytes, fmt: WireFormat, limits: Limits) -> Message:
    params = {"selection": fmt.selection, "grab_serial": fmt.grab_serial}
    size = len(payload)
    if kind is MessageType.MOUSE_STATE:
        c = wire.MouseState.parse(payload)
        return MouseState(c.x, c.y, MouseButton(c.buttons), c.display_id)
    if kind is MessageType.MONITORS_CONFIG:
        if size >= 4:
            count = int.from_bytes(payload[:4], "little")
            _check_count("monitors in MONITORS_CONFIG", count, limits.max_monitors, kind)
        c = wire.MonitorsConfig.parse(payload)
        return MonitorsConfig(
            tuple(MonitorConfig(m.width, m.height, m.depth, m.x, m.y) for m in c.monitors),
            MonitorsConfigFlag(c.flags),
            None
            if c.physical_sizes is None
            else tuple((p.width, p.height) for p in c.physical_sizes),
        )
    if kind is MessageType.REPLY:
        c = wire.Reply.parse(payload)
        return Reply(_enum(MessageType, c.type), _enum(ReplyError, c.error))
    if kind is MessageType.DISPLAY_CONFIG:
        c = wire.DisplayConfig.parse(payload)
        return DisplayConfig(DisplayConfigFlag(c.flags), c.depth)
    if kind is MessageType.ANNOUNCE_CAPABILITIES:
        _check_count("caps words", max(size - 4, 0) // 4, limits.max_caps_words, kind)
        c = wire.AnnounceCapabilities.parse(payload)
        return AnnounceCapabilities(bool(c.request), tuple(c.caps))
    if kind is MessageType.CLIPBOARD_GRAB:
        fixed = (SELECTION_PREFIX_SIZE if fmt.selection else 0) + (4 if fmt.grab_serial else 0)
        _check_count("types in CLIPBOARD_GRAB", max(size - fixed, 0) // 4,
                     limits.max_grab_types, kind)
        c = wire.ClipboardGrab.parse(payload, **params)
        return ClipboardGrab(
            _selection_of(c.prefix),
            tuple(_enum(ClipboardType, t) for t in c.types),
            c.serial,
        )
    if kind is MessageType.CLIPBOARD_REQUEST:
        c = wire.ClipboardRequest.parse(payload, **params)
        return ClipboardRequest(_selection_of(c.prefix), _enum(ClipboardType, c.type))
    if kind is MessageType.CLIPBOARD_RELEASE:
        # vdagentd's release_clipboards() sends a 1-byte RELEASE whatever the caps.
        c = wire.ClipboardRelease.parse(payload, selection=fmt.selection or size == 1)
        return ClipboardRelease(_selection_of(c.prefix))
    if kind is MessageType.FILE_XFER_START:
        c = wire.FileXferStart.parse(payload)
        return FileXferStart(c.id, c.data)
    if kind is MessageType.FILE_XFER_STATUS:
        c = wire.FileXferStatus.parse(payload)
        return FileXferStatusMessage(c.id, _enum(FileXferStatus, c.result), c.data)
    if kind is MessageType.FILE_XFER_DATA:
        c = wire.FileXferData.parse(payload)
        return FileXferData(c.id, c.data)
    if kind is MessageType.CLIENT_DISCONNECTED:
        wire.ClientDisconnected.parse(payload)
        return ClientDisconnected()
    if kind is MessageType.MAX_CLIPBOARD:
        c = wire.MaxClipboard.parse(payload)
        return MaxClipboard(c.max)
    if kind is MessageType.AUDIO_VOLUME_SYNC:
        c = wire.AudioVolumeSync.parse(payload)
        return AudioVolumeSync(bool(c.is_playback), bool(c.mute), tuple(c.volume))
    # GRAPHICS_DEVICE_INFO
    if size >= 4:
        count = int.from_bytes(payload[:4], "little")
        _check_count("devices in GRAPHICS_DEVICE_INFO", count, limits.max_devices, kind)
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
    and FILE_XFER_DATA are returned as given, not copied behind their head."""
    try:
        if isinstance(msg, ClipboardData):
            head = wire.Clipboard.build(
                {"prefix": _prefix(msg.selection, fmt), "type": int(msg.type), "data": b""},
                selection=fmt.selection,
            )
            return MessageType.CLIPBOARD, head, msg.data
        if isinstance(msg, FileXferData):
            return (
                MessageType.FILE_XFER_DATA,
                wire.FILE_XFER_DATA_HEADER.pack(msg.id, len(msg.data)),
                msg.data,
            )
        msg_type, payload = _encode(msg, fmt)
        return msg_type, payload, b""
    except (ConstructError, ValueError, OverflowError, TypeError, struct.error) as err:
        raise LocalProtocolError(f"cannot encode {msg!r:.200}: {err}") from err


def _prefix(selection: int, fmt: WireFormat) -> dict[str, int] | None:
    if fmt.selection:
        return {"selection": int(selection)}
    if selection != Selection.CLIPBOARD:
        raise ValueError("only CLIPBOARD can be sent without CLIPBOARD_SELECTION")
    return None


def _encode(msg: Message, fmt: WireFormat) -> tuple[int, bytes]:
    params = {"selection": fmt.selection, "grab_serial": fmt.grab_serial}
    if isinstance(msg, MouseState):
        return MessageType.MOUSE_STATE, wire.MOUSE_STATE.pack(
            msg.x, msg.y, int(msg.buttons), msg.display_id
        )
    if isinstance(msg, UnknownMessage):
        return msg.type, msg.payload
    if isinstance(msg, MonitorsConfig):
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
        return MessageType.MONITORS_CONFIG, wire.MonitorsConfig.build(value)
    if isinstance(msg, Reply):
        return MessageType.REPLY, wire.Reply.build({"type": int(msg.type), "error": int(msg.error)})
    if isinstance(msg, DisplayConfig):
        return MessageType.DISPLAY_CONFIG, wire.DisplayConfig.build(
            {"flags": int(msg.flags), "depth": msg.depth}
        )
    if isinstance(msg, AnnounceCapabilities):
        return MessageType.ANNOUNCE_CAPABILITIES, wire.AnnounceCapabilities.build(
            {"request": int(msg.request), "caps": list(msg.caps)}
        )
    if isinstance(msg, ClipboardGrab):
        if fmt.grab_serial and msg.serial is None:
            raise ValueError("CLIPBOARD_GRAB_SERIAL is negotiated: the grab needs a serial")
        return MessageType.CLIPBOARD_GRAB, wire.ClipboardGrab.build(
            {
                "prefix": _prefix(msg.selection, fmt),
                "serial": msg.serial if fmt.grab_serial else None,
                "types": [int(t) for t in msg.types],
            },
            **params,
        )
    if isinstance(msg, ClipboardRequest):
        return MessageType.CLIPBOARD_REQUEST, wire.ClipboardRequest.build(
            {"prefix": _prefix(msg.selection, fmt), "type": int(msg.type)}, **params
        )
    if isinstance(msg, ClipboardRelease):
        return MessageType.CLIPBOARD_RELEASE, wire.ClipboardRelease.build(
            {"prefix": _prefix(msg.selection, fmt)}, **params
        )
    if isinstance(msg, FileXferStart):
        return MessageType.FILE_XFER_START, wire.FileXferStart.build(
            {"id": msg.id, "data": msg.metadata}
        )
    if isinstance(msg, FileXferStatusMessage):
        return MessageType.FILE_XFER_STATUS, wire.FileXferStatus.build(
            {"id": msg.id, "result": int(msg.result), "data": msg.data}
        )
    if isinstance(msg, ClientDisconnected):
        return MessageType.CLIENT_DISCONNECTED, wire.ClientDisconnected.build({})
    if isinstance(msg, MaxClipboard):
        return MessageType.MAX_CLIPBOARD, wire.MaxClipboard.build({"max": msg.max})
    if isinstance(msg, AudioVolumeSync):
        return MessageType.AUDIO_VOLUME_SYNC, wire.AudioVolumeSync.build(
            {"is_playback": int(msg.is_playback), "mute": int(msg.mute),
             "volume": list(msg.volume)}
        )
    if isinstance(msg, GraphicsDeviceInfo):
        return MessageType.GRAPHICS_DEVICE_INFO, wire.GraphicsDeviceInfo.build(
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
        )
    raise TypeError(f"not a vdagent message: {type(msg).__name__}")
