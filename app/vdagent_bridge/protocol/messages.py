"""Typed values of the 16 vdagent messages, one frozen dataclass each.

These are what the codec turns payloads into and back. Every field holds an enum where the
protocol defines one; a value the guest sends outside the enum is kept as a plain ``int`` so a
newer peer does not break us, but the sessions decide what to do with it (usually ignore it).
Which optional fields go on the wire is not a property of a message but of the negotiated
capabilities, so it lives in :class:`~vdagent_bridge.protocol.codec.WireFormat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import (
    ClipboardType,
    DisplayConfigFlag,
    FileXferStatus,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    ReplyError,
    Selection,
)


@dataclass(frozen=True, slots=True)
class MouseState:
    """Absolute pointer position in pixels of monitor ``display_id``, and the button mask."""

    x: int
    y: int
    buttons: MouseButton = MouseButton.NONE
    display_id: int = 0

    TYPE = MessageType.MOUSE_STATE


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """One monitor of MONITORS_CONFIG. ``width == height == 0`` means disabled (SPARSE)."""

    width: int
    height: int
    depth: int = 32
    x: int = 0
    y: int = 0


@dataclass(frozen=True, slots=True)
class MonitorsConfig:
    """The guest's display layout. ``physical_sizes`` (mm, as (width, height)) only exists to
    decode what others send: 0.22.1 rejects the PHYSICAL_SIZE form, so we never send it."""

    monitors: tuple[MonitorConfig, ...]
    flags: MonitorsConfigFlag = MonitorsConfigFlag.NONE
    physical_sizes: tuple[tuple[int, int], ...] | None = None

    TYPE = MessageType.MONITORS_CONFIG


@dataclass(frozen=True, slots=True)
class Reply:
    """The agent's acknowledgement of a MONITORS_CONFIG (or DISPLAY_CONFIG)."""

    type: MessageType | int
    error: ReplyError | int

    TYPE = MessageType.REPLY


@dataclass(frozen=True, slots=True)
class ClipboardData:
    """Clipboard contents answering a REQUEST. Type NONE with no bytes means "no data".

    Received data is a bytearray when it was large enough to be received straight into its
    own buffer (:meth:`HostSession.receive_buffer`): handed over, not copied to bytes."""

    selection: Selection | int
    type: ClipboardType | int
    data: bytes | bytearray = b""

    TYPE = MessageType.CLIPBOARD


@dataclass(frozen=True, slots=True)
class DisplayConfig:
    """Desktop effects hints for the guest; the Linux agent ignores them."""

    flags: DisplayConfigFlag
    depth: int = 0

    TYPE = MessageType.DISPLAY_CONFIG


@dataclass(frozen=True, slots=True)
class AnnounceCapabilities:
    """A peer's capability words. ``request`` asks the receiver to answer with its own."""

    request: bool
    caps: tuple[int, ...]

    TYPE = MessageType.ANNOUNCE_CAPABILITIES


@dataclass(frozen=True, slots=True)
class ClipboardGrab:
    """The sender now owns ``selection`` and can serve ``types``. ``serial`` is None when
    CLIPBOARD_GRAB_SERIAL is not negotiated."""

    selection: Selection | int
    types: tuple[ClipboardType | int, ...]
    serial: int | None = None

    TYPE = MessageType.CLIPBOARD_GRAB


@dataclass(frozen=True, slots=True)
class ClipboardRequest:
    """The sender wants the owner's data for ``selection`` in ``type``."""

    selection: Selection | int
    type: ClipboardType | int

    TYPE = MessageType.CLIPBOARD_REQUEST


@dataclass(frozen=True, slots=True)
class ClipboardRelease:
    """The sender no longer owns ``selection``."""

    selection: Selection | int

    TYPE = MessageType.CLIPBOARD_RELEASE


@dataclass(frozen=True, slots=True)
class FileXferStart:
    """Start of a host → guest transfer. ``metadata`` is the GKeyFile text as sent."""

    id: int
    metadata: bytes

    TYPE = MessageType.FILE_XFER_START


@dataclass(frozen=True, slots=True)
class FileXferStatusMessage:
    """Progress or end of a transfer; ``data`` is the detail (see wire.FileXferStatus*)."""

    id: int
    result: FileXferStatus | int
    data: bytes = b""

    TYPE = MessageType.FILE_XFER_STATUS


@dataclass(frozen=True, slots=True)
class FileXferData:
    """One piece of a transfer's file content."""

    id: int
    data: bytes

    TYPE = MessageType.FILE_XFER_DATA


@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    """The host side went away: the agent drops a half-received host message."""

    TYPE = MessageType.CLIENT_DISCONNECTED


@dataclass(frozen=True, slots=True)
class MaxClipboard:
    """The largest clipboard the host accepts (-1: no limit)."""

    max: int

    TYPE = MessageType.MAX_CLIPBOARD


@dataclass(frozen=True, slots=True)
class AudioVolumeSync:
    """Volume of the host's playback or record stream, one u16 per channel."""

    is_playback: bool
    mute: bool
    volume: tuple[int, ...]

    TYPE = MessageType.AUDIO_VOLUME_SYNC


@dataclass(frozen=True, slots=True)
class DeviceDisplayInfo:
    """Maps a SPICE (channel, monitor) to a guest graphics device output."""

    channel_id: int
    monitor_id: int
    device_display_id: int
    device_address: bytes


@dataclass(frozen=True, slots=True)
class GraphicsDeviceInfo:
    """Display-id mapping sent by a SPICE server; listed for completeness."""

    display_info: tuple[DeviceDisplayInfo, ...] = field(default_factory=tuple)

    TYPE = MessageType.GRAPHICS_DEVICE_INFO


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A message whose type is outside 1–16: kept whole, never a crash."""

    type: int
    payload: bytes


Message = (
    MouseState
    | MonitorsConfig
    | Reply
    | ClipboardData
    | DisplayConfig
    | AnnounceCapabilities
    | ClipboardGrab
    | ClipboardRequest
    | ClipboardRelease
    | FileXferStart
    | FileXferStatusMessage
    | FileXferData
    | ClientDisconnected
    | MaxClipboard
    | AudioVolumeSync
    | GraphicsDeviceInfo
    | UnknownMessage
)
