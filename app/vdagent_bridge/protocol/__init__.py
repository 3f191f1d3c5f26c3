"""The sans-IO vdagent protocol engine: bytes in, events out; no sockets, Qt or clock.

Import from here; the submodules are an implementation detail of this package.
"""

from __future__ import annotations

from .caps import HOST_CAPS, LINUX_AGENT_CAPS, Caps
from .clipboard import Owner
from .codec import FULL, LEGACY, Limits, WireFormat, decode, encode
from .constants import (
    Capability,
    ClipboardType,
    FileXferStatus,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    Port,
    ReplyError,
    Selection,
)
from .deframer import Deframer, RawMessage
from .errors import (
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
    VDAgentError,
)
from .events import (
    CapabilitiesReceived,
    CapabilitiesTimedOut,
    ClipboardGrabbed,
    ClipboardGrabIgnored,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardRequestFailed,
    Event,
    FailureReason,
    FileTransferFinished,
    FileTransferReady,
    GuestRequestExpired,
    MessageIgnored,
    ReplyReceived,
)
from .framer import frame_message
from .messages import MonitorConfig
from .session import HostSession

__all__ = [
    "FULL",
    "HOST_CAPS",
    "LEGACY",
    "LINUX_AGENT_CAPS",
    "CapabilitiesReceived",
    "CapabilitiesTimedOut",
    "Capability",
    "Caps",
    "ClipboardGrabIgnored",
    "ClipboardGrabbed",
    "ClipboardReceived",
    "ClipboardReleased",
    "ClipboardRequestFailed",
    "ClipboardRequested",
    "ClipboardType",
    "Deframer",
    "Event",
    "FailureReason",
    "FileTransferFinished",
    "FileTransferReady",
    "FileXferStatus",
    "GuestRequestExpired",
    "HostSession",
    "LimitExceeded",
    "Limits",
    "LocalProtocolError",
    "MessageIgnored",
    "MessageType",
    "MonitorConfig",
    "MonitorsConfigFlag",
    "MouseButton",
    "Owner",
    "Port",
    "RawMessage",
    "RemoteProtocolError",
    "ReplyError",
    "ReplyReceived",
    "Selection",
    "StateError",
    "VDAgentError",
    "WireFormat",
    "decode",
    "encode",
    "frame_message",
]
