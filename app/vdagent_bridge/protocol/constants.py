"""Protocol values of the SPICE vdagent protocol, as typed enums, and the engine's limits.

Every number here comes from spice-protocol's ``spice/vd_agent.h`` (0.14.3) unless a comment
names another source. Wire values are converted to these enums at the codec boundary, so no
other module ever handles a bare integer for a message type, a capability or a selection.
"""

from __future__ import annotations

import enum

#: vd_agent.h VD_AGENT_PROTOCOL: the only protocol number any peer accepts.
PROTOCOL_VERSION = 1

#: vd_agent.h VD_AGENT_MAX_DATA_SIZE. vdagentd 0.22.1 closes the port on any host chunk bigger
#: than this (virtio-port.c ``conn_handle_header``), so outgoing chunks never exceed it.
MAX_CHUNK_DATA = 2048

#: Size of ``VDIChunkHeader`` (u32 port, u32 size).
CHUNK_HEADER_SIZE = 8

#: Size of ``VDAgentMessage`` (u32 protocol, u32 type, u64 opaque, u32 size).
MESSAGE_HEADER_SIZE = 20

#: The selection prefix {u8 selection, u8 pad[3]} carried by all four clipboard messages when
#: CLIPBOARD_SELECTION is negotiated.
SELECTION_PREFIX_SIZE = 4

#: vdagentd.c MAX_ACTIVE_TRANSFERS: the daemon refuses a 129th concurrent file transfer.
GUEST_MAX_ACTIVE_TRANSFERS = 128

#: spice-gtk spice-file-transfer-task.c reads files in pieces of VD_AGENT_MAX_DATA_SIZE * 32;
#: we send FILE_XFER_DATA messages of the same size.
FILE_XFER_PIECE_SIZE = 64 * 1024

#: MAX_CLIPBOARD value meaning "no limit" (spice-gtk property range -1..G_MAXINT).
MAX_CLIPBOARD_UNLIMITED = -1


class Port(enum.IntEnum):
    """Chunk ports (``VDP_*``). vdagentd accepts any port below END and keeps one reassembly
    state per port; 0 is tolerated by it, so we tolerate it too."""

    UNUSED = 0
    CLIENT = 1
    SERVER = 2
    END = 3


class MessageType(enum.IntEnum):
    """``VD_AGENT_*`` message types 1–16 (17 is the END sentinel)."""

    MOUSE_STATE = 1
    MONITORS_CONFIG = 2
    REPLY = 3
    CLIPBOARD = 4
    DISPLAY_CONFIG = 5
    ANNOUNCE_CAPABILITIES = 6
    CLIPBOARD_GRAB = 7
    CLIPBOARD_REQUEST = 8
    CLIPBOARD_RELEASE = 9
    FILE_XFER_START = 10
    FILE_XFER_STATUS = 11
    FILE_XFER_DATA = 12
    CLIENT_DISCONNECTED = 13
    MAX_CLIPBOARD = 14
    AUDIO_VOLUME_SYNC = 15
    GRAPHICS_DEVICE_INFO = 16


class Capability(enum.IntEnum):
    """``VD_AGENT_CAP_*`` bit numbers in the capability bitmap (word = bit // 32)."""

    MOUSE_STATE = 0
    MONITORS_CONFIG = 1
    REPLY = 2
    CLIPBOARD = 3
    DISPLAY_CONFIG = 4
    CLIPBOARD_BY_DEMAND = 5
    CLIPBOARD_SELECTION = 6
    SPARSE_MONITORS_CONFIG = 7
    GUEST_LINEEND_LF = 8
    GUEST_LINEEND_CRLF = 9
    MAX_CLIPBOARD = 10
    AUDIO_VOLUME_SYNC = 11
    MONITORS_CONFIG_POSITION = 12
    FILE_XFER_DISABLED = 13
    FILE_XFER_DETAILED_ERRORS = 14
    GRAPHICS_DEVICE_INFO = 15
    CLIPBOARD_NO_RELEASE_ON_REGRAB = 16
    CLIPBOARD_GRAB_SERIAL = 17


#: VD_AGENT_END_CAP: one past the last capability bit.
CAPABILITY_END = 18


class ClipboardType(enum.IntEnum):
    """``VD_AGENT_CLIPBOARD_*`` data types. NONE with no bytes is the agent's "no data"."""

    NONE = 0
    UTF8_TEXT = 1
    IMAGE_PNG = 2
    IMAGE_BMP = 3
    IMAGE_TIFF = 4
    IMAGE_JPG = 5
    FILE_LIST = 6


class Selection(enum.IntEnum):
    """``VD_AGENT_CLIPBOARD_SELECTION_*``. The Linux session agent serves only CLIPBOARD and
    PRIMARY (vdagent clipboard.c refuses SECONDARY)."""

    CLIPBOARD = 0
    PRIMARY = 1
    SECONDARY = 2


class MouseButton(enum.IntFlag):
    """``VD_AGENT_*BUTTON_MASK``. Bit 0 is unused: the left button is bit 1."""

    NONE = 0
    LEFT = 1 << 1
    MIDDLE = 1 << 2
    RIGHT = 1 << 3
    WHEEL_UP = 1 << 4
    WHEEL_DOWN = 1 << 5
    SIDE = 1 << 6
    EXTRA = 1 << 7


class MonitorsConfigFlag(enum.IntFlag):
    """``VD_AGENT_CONFIG_MONITORS_FLAG_*``. We never send PHYSICAL_SIZE: vdagentd 0.22.1
    requires the exact size 8 + n*20 and drops the message with the MonitorMM tail."""

    NONE = 0
    USE_POS = 1 << 0
    PHYSICAL_SIZE = 1 << 1


class DisplayConfigFlag(enum.IntFlag):
    """``VD_AGENT_DISPLAY_CONFIG_FLAG_*``."""

    NONE = 0
    DISABLE_WALLPAPER = 1 << 0
    DISABLE_FONT_SMOOTH = 1 << 1
    DISABLE_ANIMATION = 1 << 2
    SET_COLOR_DEPTH = 1 << 3


class ReplyError(enum.IntEnum):
    """``VDAgentReply.error`` values."""

    SUCCESS = 1
    ERROR = 2


class FileXferStatus(enum.IntEnum):
    """``VD_AGENT_FILE_XFER_STATUS_*`` results."""

    CAN_SEND_DATA = 0
    CANCELLED = 1
    ERROR = 2
    SUCCESS = 3
    NOT_ENOUGH_SPACE = 4
    SESSION_LOCKED = 5
    VDAGENT_NOT_CONNECTED = 6
    DISABLED = 7


class FileXferErrorType(enum.IntEnum):
    """``VD_AGENT_FILE_XFER_STATUS_ERROR_*``: how to read ``error_code`` in a detailed ERROR."""

    GLIB_IO = 0


class GIOErrorCode(enum.IntEnum):
    """GLib's ``GIOErrorEnum``, the ``error_code`` of a GLIB_IO detailed transfer error
    (gio/gioenums.h). Listed so an error from the agent can be shown in words."""

    FAILED = 0
    NOT_FOUND = 1
    EXISTS = 2
    IS_DIRECTORY = 3
    NOT_DIRECTORY = 4
    NOT_EMPTY = 5
    NOT_REGULAR_FILE = 6
    NOT_SYMBOLIC_LINK = 7
    NOT_MOUNTABLE_FILE = 8
    FILENAME_TOO_LONG = 9
    INVALID_FILENAME = 10
    TOO_MANY_LINKS = 11
    NO_SPACE = 12
    INVALID_ARGUMENT = 13
    PERMISSION_DENIED = 14
    NOT_SUPPORTED = 15
    NOT_MOUNTED = 16
    ALREADY_MOUNTED = 17
    CLOSED = 18
    CANCELLED = 19
    PENDING = 20
    READ_ONLY = 21
    CANT_CREATE_BACKUP = 22
    WRONG_ETAG = 23
    TIMED_OUT = 24
    WOULD_RECURSE = 25
    BUSY = 26
    WOULD_BLOCK = 27
    HOST_NOT_FOUND = 28
    WOULD_MERGE = 29
    FAILED_HANDLED = 30
    TOO_MANY_OPEN_FILES = 31
    NOT_INITIALIZED = 32
    ADDRESS_IN_USE = 33
    PARTIAL_INPUT = 34
    INVALID_DATA = 35
    DBUS_ERROR = 36
    HOST_UNREACHABLE = 37
    NETWORK_UNREACHABLE = 38
    CONNECTION_REFUSED = 39
    PROXY_FAILED = 40
    PROXY_AUTH_FAILED = 41
    PROXY_NEED_AUTH = 42
    PROXY_NOT_ALLOWED = 43
    BROKEN_PIPE = 44
    NOT_CONNECTED = 45
    MESSAGE_TOO_LARGE = 46
    NO_SUCH_DEVICE = 47
    DESTINATION_UNSET = 48


#: Clipboard types whose data is text: line endings are converted for CRLF guests.
TEXT_TYPES = frozenset({ClipboardType.UTF8_TEXT})
