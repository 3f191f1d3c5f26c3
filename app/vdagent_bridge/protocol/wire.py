"""The vdagent wire format, declared once with construct, plus the two fast fixed headers.

This module holds declarations only: no behaviour, no IO. It is the readable specification of
every structure on the wire (spice-protocol ``spice/vd_agent.h``, all fields little-endian and
packed). Field order and sizes are cross-checked against hand-written byte vectors in
``tests/unit/protocol/test_wire_vectors.py``.

Optional clipboard fields follow the *negotiated* capabilities (docs/protocol.md §4.3). They are
passed to ``parse``/``build`` as context parameters:

- ``selection``: the 4-byte ``{u8 selection, u8 pad[3]}`` prefix is present on the four
  clipboard messages (CLIPBOARD_SELECTION negotiated);
- ``grab_serial``: a u32 serial follows the prefix in CLIPBOARD_GRAB (CLIPBOARD_GRAB_SERIAL
  negotiated).

Why the two headers are also ``struct.Struct``: they are parsed once per chunk and built once
per outgoing chunk, and an interpreted construct call costs ~7 µs against ~0.06 µs for
``struct`` (measured on Python 3.11: construct is ~100× struct on a header). ``test_wire_vs_struct``
proves both declarations equal.
Bodies are parsed with *interpreted* construct once per complete message, after the deframer
has checked the size; parsers that read guest bytes are never ``compile()``d, because
compiled construct silently accepts truncated input.
"""

from __future__ import annotations

import struct

from construct import (
    Array,
    Bytes,
    Const,
    GreedyBytes,
    GreedyRange,
    If,
    Int8ul,
    Int16ul,
    Int32sl,
    Int32ul,
    Int64ul,
    Optional,
    Padding,
    Rebuild,
    Struct,
    Terminated,
    len_,
    this,
)

from .constants import PROTOCOL_VERSION, MonitorsConfigFlag

# ----- Fixed headers -------------------------------------------------------------------------

#: ``VDIChunkHeader``: u32 port, u32 size (payload bytes after this header).
ChunkHeader = Struct(
    "port" / Int32ul,
    "size" / Int32ul,
)

#: ``VDAgentMessage`` header: u32 protocol (always 1), u32 type, u64 opaque (0), u32 size.
MessageHeader = Struct(
    "protocol" / Const(PROTOCOL_VERSION, Int32ul),
    "type" / Int32ul,
    "opaque" / Int64ul,
    "size" / Int32ul,
)

#: Hot-path twins of the two headers above (same layout; see the module docstring).
CHUNK_HEADER = struct.Struct("<II")
MESSAGE_HEADER = struct.Struct("<IIQI")

# ----- Shared pieces -------------------------------------------------------------------------

#: The selection prefix of the clipboard messages: u8 selection + 3 reserved zero bytes.
SelectionPrefix = Struct(
    "selection" / Int8ul,
    Padding(3),
)

#: vdagentd's ``release_clipboards()`` sends RELEASE with a 1-byte payload (the selection
#: only) whatever the caps (docs/guest-agent.md §9), so RELEASE alone accepts a short prefix.
ReleasePrefix = Struct(
    "selection" / Int8ul,
    Optional(Padding(3)),
)

# ----- 1 MOUSE_STATE ---------------------------------------------------------------------------

#: ``VDAgentMouseState``, exactly 13 bytes (vdagentd requires the exact size).
MouseState = Struct(
    "x" / Int32ul,
    "y" / Int32ul,
    "buttons" / Int32ul,
    "display_id" / Int8ul,
    Terminated,
)

#: Hot-path twin of MouseState for the pointer (≥ 200 k messages/s is a target).
MOUSE_STATE = struct.Struct("<IIIB")

# ----- 2 MONITORS_CONFIG -----------------------------------------------------------------------

#: ``VDAgentMonConfig``: note height comes before width.
MonConfig = Struct(
    "height" / Int32ul,
    "width" / Int32ul,
    "depth" / Int32ul,
    "x" / Int32sl,
    "y" / Int32sl,
)

#: ``VDAgentMonitorMM``: physical size in millimetres (height first again).
MonitorMM = Struct(
    "height" / Int16ul,
    "width" / Int16ul,
)

#: ``VDAgentMonitorsConfig``: the MonitorMM tail is present only with the PHYSICAL_SIZE flag.
MonitorsConfig = Struct(
    "num_of_monitors" / Rebuild(Int32ul, len_(this.monitors)),
    "flags" / Int32ul,
    "monitors" / Array(this.num_of_monitors, MonConfig),
    "physical_sizes"
    / If(
        this.flags & MonitorsConfigFlag.PHYSICAL_SIZE,
        Array(this.num_of_monitors, MonitorMM),
    ),
    Terminated,
)

# ----- 3 REPLY ---------------------------------------------------------------------------------

#: ``VDAgentReply``: the acknowledged message type and SUCCESS (1) or ERROR (2).
Reply = Struct(
    "type" / Int32ul,
    "error" / Int32ul,
    Terminated,
)

# ----- 4 CLIPBOARD -----------------------------------------------------------------------------

#: ``VDAgentClipboard``: [prefix] u32 type, then the data up to the end of the message.
Clipboard = Struct(
    "prefix" / If(this._params.selection, SelectionPrefix),
    "type" / Int32ul,
    "data" / GreedyBytes,
)

# ----- 5 DISPLAY_CONFIG ------------------------------------------------------------------------

#: ``VDAgentDisplayConfig``.
DisplayConfig = Struct(
    "flags" / Int32ul,
    "depth" / Int32ul,
    Terminated,
)

# ----- 6 ANNOUNCE_CAPABILITIES -----------------------------------------------------------------

#: ``VDAgentAnnounceCapabilities``: u32 request, then caps words up to the end of the message.
AnnounceCapabilities = Struct(
    "request" / Int32ul,
    "caps" / GreedyRange(Int32ul),
    Terminated,
)

# ----- 7 CLIPBOARD_GRAB ------------------------------------------------------------------------

#: ``VDAgentClipboardGrab``: [prefix] [u32 serial] u32 types[] (zero or more).
ClipboardGrab = Struct(
    "prefix" / If(this._params.selection, SelectionPrefix),
    "serial" / If(this._params.grab_serial, Int32ul),
    "types" / GreedyRange(Int32ul),
    Terminated,
)

# ----- 8 CLIPBOARD_REQUEST ---------------------------------------------------------------------

#: ``VDAgentClipboardRequest``: [prefix] u32 type.
ClipboardRequest = Struct(
    "prefix" / If(this._params.selection, SelectionPrefix),
    "type" / Int32ul,
    Terminated,
)

# ----- 9 CLIPBOARD_RELEASE ---------------------------------------------------------------------

#: ``VDAgentClipboardRelease``: [prefix] only; empty without CLIPBOARD_SELECTION.
ClipboardRelease = Struct(
    "prefix" / If(this._params.selection, ReleasePrefix),
    Terminated,
)

# ----- 10–12 file transfer ---------------------------------------------------------------------

#: ``VDAgentFileXferStartMessage``: u32 id, then a GKeyFile text (group ``vdagent-file-xfer``).
FileXferStart = Struct(
    "id" / Int32ul,
    "data" / GreedyBytes,
)

#: ``VDAgentFileXferStatusMessage``: u32 id, u32 result, optional detail bytes.
FileXferStatus = Struct(
    "id" / Int32ul,
    "result" / Int32ul,
    "data" / GreedyBytes,
)

#: Detail of a FILE_XFER_STATUS ERROR with FILE_XFER_DETAILED_ERRORS (5 bytes, packed).
#: No ``Terminated``: it would make ``sizeof()`` raise, and readers compare the detail's length
#: with ``sizeof()`` before parsing it.
FileXferStatusError = Struct(
    "error_type" / Int8ul,
    "error_code" / Int32ul,
)

#: Detail of a FILE_XFER_STATUS NOT_ENOUGH_SPACE with FILE_XFER_DETAILED_ERRORS.
FileXferStatusNotEnoughSpace = Struct(
    "disk_free_space" / Int64ul,
    Terminated,
)

#: ``VDAgentFileXferDataMessage``: u32 id, u64 size, data[size].
FileXferData = Struct(
    "id" / Int32ul,
    "size" / Rebuild(Int64ul, len_(this.data)),
    "data" / Bytes(this.size),
    Terminated,
)

#: Hot-path header of FILE_XFER_DATA for building our own outgoing pieces.
FILE_XFER_DATA_HEADER = struct.Struct("<IQ")

# ----- 13 CLIENT_DISCONNECTED ------------------------------------------------------------------

#: Empty payload.
ClientDisconnected = Struct(Terminated)

# ----- 14 MAX_CLIPBOARD ------------------------------------------------------------------------

#: ``VDAgentMaxClipboard``: i32 max bytes, -1 for no limit.
MaxClipboard = Struct(
    "max" / Int32sl,
    Terminated,
)

# ----- 15 AUDIO_VOLUME_SYNC --------------------------------------------------------------------

#: ``VDAgentAudioVolumeSync``: the u16 array starts at offset 3, unaligned.
AudioVolumeSync = Struct(
    "is_playback" / Int8ul,
    "mute" / Int8ul,
    "nchannels" / Rebuild(Int8ul, len_(this.volume)),
    "volume" / Array(this.nchannels, Int16ul),
    Terminated,
)

# ----- 16 GRAPHICS_DEVICE_INFO -----------------------------------------------------------------

#: ``VDAgentDeviceDisplayInfo``: the address is a NUL-terminated string of the given length.
DeviceDisplayInfo = Struct(
    "channel_id" / Int32ul,
    "monitor_id" / Int32ul,
    "device_display_id" / Int32ul,
    "device_address_len" / Rebuild(Int32ul, len_(this.device_address)),
    "device_address" / Bytes(this.device_address_len),
)

#: ``VDAgentGraphicsDeviceInfo``: u32 count, then count device entries.
GraphicsDeviceInfo = Struct(
    "count" / Rebuild(Int32ul, len_(this.display_info)),
    "display_info" / Array(this.count, DeviceDisplayInfo),
    Terminated,
)

#: Fixed part of one DeviceDisplayInfo, for the count check before parsing.
DEVICE_DISPLAY_INFO_MIN_SIZE = 16
#: Size of one MonConfig, for the count check before parsing.
MON_CONFIG_SIZE = 20
