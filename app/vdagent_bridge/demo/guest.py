"""A simulated guest agent: spice-vdagentd 0.22.1 with a GTK session agent, sans-IO.

It behaves as docs/guest-agent.md §3–§12 describe the real one, including its quirks, so the demo
mode and the fast unit tests meet the same behaviour the real agent shows:

- it frames clipboard messages (selection prefix, grab serial) by the caps the *host*
  announced, and sends every message as ONE chunk of any size on port 1;
- it closes and reopens its port on a host chunk over 2048 bytes, a chunk port >= 3 or a chunk
  running past its message; it logs and ignores a wrong protocol, an unknown type or a wrong
  size (the sizes of vdagentd's ``vdagent_message_check_size``);
- one grab counter per selection: its own GRAB carries the counter, then increments it; a host
  GRAB is accepted when its serial equals the counter (counter + 1) or the counter - 1 (host
  wins a tie), dropped silently otherwise; only host caps with request=1 zero the counters;
- host caps with request=1: the session agent drops what it held for the host and releases
  (and forgets) what the guest owned; request=0 only stores the caps;
- REQUEST for something it does not own: CLIPBOARD with type NONE and no bytes; data larger
  than the host's MAX_CLIPBOARD: CLIPBOARD with the type and no bytes;
- the session agent restarting sends the 1-byte RELEASE, then caps with request=1;
- MOUSE_STATE is recorded as uinput-style events (only for a known display id); a
  MONITORS_CONFIG resizes the screen and is answered with REPLY on the port it came on, unless
  it carries PHYSICAL_SIZE (then it is dropped without a reply);
- files are stored in memory, completed when DATA reaches the announced size.

It never replaces the real agent in end-to-end tests; it is the demo guest and a fast peer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ..protocol import codec
from ..protocol.caps import LINUX_AGENT_CAPS, Caps
from ..protocol.codec import Limits, WireFormat
from ..protocol.constants import (
    GUEST_MAX_ACTIVE_TRANSFERS,
    MAX_CHUNK_DATA,
    SELECTION_PREFIX_SIZE,
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
from ..protocol.deframer import Deframer, RawMessage
from ..protocol.errors import ChunkError, RemoteProtocolError
from ..protocol.framer import frame_message
from ..protocol.messages import (
    AnnounceCapabilities,
    ClientDisconnected,
    ClipboardData,
    ClipboardGrab,
    ClipboardRelease,
    ClipboardRequest,
    FileXferData,
    FileXferStart,
    FileXferStatusMessage,
    MaxClipboard,
    Message,
    MonitorConfig,
    MonitorsConfig,
    MouseState,
    Reply,
)
from ..protocol.wire import FileXferStatusError

#: Exact payload sizes vdagentd requires (vdagent_message_check_size), before the clipboard
#: prefix/serial additions.
_EXACT = {
    MessageType.MOUSE_STATE: 13,
    MessageType.REPLY: 8,
    MessageType.DISPLAY_CONFIG: 8,
    MessageType.CLIPBOARD_REQUEST: 4,
    MessageType.CLIPBOARD_RELEASE: 0,
    MessageType.FILE_XFER_STATUS: 8,
    MessageType.MAX_CLIPBOARD: 4,
    MessageType.CLIENT_DISCONNECTED: 0,
}
_MINIMUM = {
    MessageType.MONITORS_CONFIG: 8,
    MessageType.CLIPBOARD: 4,
    MessageType.ANNOUNCE_CAPABILITIES: 4,
    MessageType.CLIPBOARD_GRAB: 0,
    MessageType.FILE_XFER_START: 4,
    MessageType.FILE_XFER_DATA: 12,
    MessageType.AUDIO_VOLUME_SYNC: 3,
    MessageType.GRAPHICS_DEVICE_INFO: 4,
}
_CLIPBOARD_MESSAGES = {
    MessageType.CLIPBOARD,
    MessageType.CLIPBOARD_GRAB,
    MessageType.CLIPBOARD_REQUEST,
    MessageType.CLIPBOARD_RELEASE,
}

# Linux input event codes (linux/input-event-codes.h), as the fake uinput writes them.
EV_SYN, EV_KEY, EV_REL, EV_ABS = 0, 1, 2, 3
ABS_X, ABS_Y, REL_WHEEL = 0, 1, 8
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA = 0x110, 0x111, 0x112, 0x113, 0x114
_BUTTON_CODES = (
    (MouseButton.LEFT, BTN_LEFT),
    (MouseButton.MIDDLE, BTN_MIDDLE),
    (MouseButton.RIGHT, BTN_RIGHT),
    (MouseButton.SIDE, BTN_SIDE),
    (MouseButton.EXTRA, BTN_EXTRA),
)


class Holder(enum.Enum):
    """Who the guest's session agent thinks owns a selection."""

    NOBODY = "nobody"
    GUEST = "guest"
    HOST = "host"


@dataclass(frozen=True)
class GuestSelection:
    """The session agent's view of one selection.

    A value, never changed in place: every grab, copy and release puts a new one in
    :attr:`SimulatedGuest.selections`, so an observer (the demo window) tells a new offer from
    one it has seen by identity, even when two offers in a row hold the same types."""

    holder: Holder = Holder.NOBODY
    #: Guest-owned: the data per type. Host-owned: the offered types with empty values.
    data: dict[ClipboardType | int, bytes] = field(default_factory=dict)


@dataclass
class IncomingFile:
    """A file the host is sending."""

    name: str
    size: int
    data: bytearray = field(default_factory=bytearray)


class SimulatedGuest:
    """The guest end of a conversation; see the module docstring.

    Feed host bytes to :meth:`receive_data`, send :meth:`data_to_send` back. Guest-side
    actions (:meth:`copy`, :meth:`paste`, :meth:`restart_session_agent`) queue messages too.
    ``log`` collects one line per notable thing, like the daemon's debug log.
    """

    def __init__(
        self,
        *,
        caps: Caps = LINUX_AGENT_CAPS,
        screen: tuple[int, int] = (1024, 768),
        max_message_size: int = 256 * 1024 * 1024,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.caps = caps
        self.limits = Limits(max_message_size=max_message_size, max_grab_types=64,
                             max_caps_words=64, max_monitors=64, max_devices=256)
        self._deframer = self._new_deframer()
        self._out = bytearray()
        self.host_caps: Caps | None = None
        self.client_connected = False
        self.max_clipboard = -1
        self.counters: dict[int, int] = {s: 0 for s in Selection}
        self.selections = {s: GuestSelection() for s in (Selection.CLIPBOARD, Selection.PRIMARY)}
        self.pasted: dict[Selection, tuple[ClipboardType | int, bytes | bytearray]] = {}
        self._paste_pending: dict[Selection, ClipboardType | int] = {}
        self.monitors: tuple[MonitorConfig, ...] = (MonitorConfig(*screen),)
        self.mouse: list[MouseState] = []
        self.input_events: list[tuple[int, int, int]] = []
        self._last_mouse = MouseState(0, 0)
        self.files: dict[str, bytes] = {}
        self._incoming: dict[int, IncomingFile] = {}
        self.log: list[str] = []
        self.port_reopens = 0
        self._on_change = on_change

    def _new_deframer(self) -> Deframer:
        # vdagentd: any port below 3, one reassembly state per port, chunks <= 2048 bytes.
        return Deframer(
            max_message_size=self.limits.max_message_size,
            ports=(Port.UNUSED, Port.CLIENT, Port.SERVER),
            max_chunk_size=MAX_CHUNK_DATA,
        )

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # ---------------------------------------------------------------- wire

    @property
    def wire_format(self) -> WireFormat:
        """vdagentd frames (both ways) by the caps the host announced."""
        caps = self.host_caps or Caps()
        return WireFormat(
            selection=Capability.CLIPBOARD_SELECTION in caps,
            grab_serial=Capability.CLIPBOARD_GRAB_SERIAL in caps,
        )

    def _send(self, msg: Message, port: int = Port.CLIENT) -> None:
        msg_type, payload = codec.encode(msg, self.wire_format)
        # One chunk per message, of any size, as vdagent_virtio_port_write_start does.
        frame_message(self._out, msg_type, payload, port=port, max_chunk=1 << 62)

    def data_to_send(self) -> bytearray:
        out, self._out = self._out, bytearray()
        return out

    def open_port(self) -> None:
        """The session agent reported its resolution: the daemon opens the port and announces
        its caps with request=1."""
        self.log.append("opening vdagent virtio channel")
        self._send(AnnounceCapabilities(True, self.caps.to_words()))

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the host; every complete message is handled at once."""
        self._deframer.feed(data)
        while (item := self._deframer.pop()) is not None:
            if isinstance(item, ChunkError):
                self._lost_connection(str(item))
                continue
            if isinstance(item, RemoteProtocolError):
                self.log.append(f"dropped: {item}")
                continue
            self._handle(item)
        self._changed()

    def _lost_connection(self, why: str) -> None:
        """vdagentd's virtio_port_error_cb: close and reopen the port, reset the parser and
        tell the session agent the client disconnected. Caps are not resent."""
        self.log.append(f"AIIEEE lost spice client connection, reconnecting ({why})")
        self.port_reopens += 1
        self._deframer = self._new_deframer()
        self._session_client_disconnected()

    def _session_client_disconnected(self) -> None:
        """GTK session agent on CLIENT_DISCONNECTED: host-owned selections are cleared and
        guest-owned ones are released (RELEASE sent) and forgotten."""
        for sel, state in list(self.selections.items()):
            if state.holder is Holder.GUEST and self.client_connected:
                self._send(ClipboardRelease(sel))
            self.selections[sel] = GuestSelection()
        self._paste_pending.clear()

    def _check_size(self, raw: RawMessage) -> bool:
        try:
            kind = MessageType(raw.type)
        except ValueError:
            self.log.append(f"unknown message type {raw.type}, ignoring")
            return False
        extra = 0
        fmt = self.wire_format
        if kind in _CLIPBOARD_MESSAGES and fmt.selection:
            extra += SELECTION_PREFIX_SIZE
        if kind is MessageType.CLIPBOARD_GRAB and fmt.grab_serial:
            extra += 4
        size = len(raw.payload)
        if kind in _EXACT and size != _EXACT[kind] + extra:
            self.log.append(f"{kind.name} invalid size {size}")
            return False
        if kind in _MINIMUM and size < _MINIMUM[kind] + extra:
            self.log.append(f"{kind.name} too small: {size}")
            return False
        return True

    def _handle(self, raw: RawMessage) -> None:
        if not self._check_size(raw):
            return
        try:
            msg = codec.decode(raw.type, raw.payload, self.wire_format, self.limits)
        except RemoteProtocolError as err:
            self.log.append(f"dropped: {err}")
            return
        if isinstance(msg, AnnounceCapabilities):
            self._on_caps(msg)
        elif isinstance(msg, MouseState):
            self._on_mouse(msg)
        elif isinstance(msg, MonitorsConfig):
            self._on_monitors(msg, raw.port)
        elif isinstance(msg, ClipboardGrab):
            self._on_grab(msg)
        elif isinstance(msg, ClipboardRequest):
            self._on_request(msg)
        elif isinstance(msg, ClipboardData):
            self._on_data(msg)
        elif isinstance(msg, ClipboardRelease):
            self._on_release(msg)
        elif isinstance(msg, MaxClipboard):
            self.max_clipboard = msg.max
        elif isinstance(msg, FileXferStart):
            self._on_xfer_start(msg)
        elif isinstance(msg, FileXferData):
            self._on_xfer_data(msg)
        elif isinstance(msg, FileXferStatusMessage):
            self._incoming.pop(msg.id, None)
        elif isinstance(msg, ClientDisconnected):
            self._deframer = self._new_deframer()
            self._session_client_disconnected()
        else:
            self.log.append(f"ignoring {type(msg).__name__}")

    # ---------------------------------------------------------------- caps

    def _on_caps(self, msg: AnnounceCapabilities) -> None:
        self.host_caps = Caps(msg.caps)
        if msg.request:
            if self.client_connected:
                self._session_client_disconnected()
            self.log.append("New client connected")
            self.client_connected = True
            self.counters = {s: 0 for s in Selection}
            self._send(AnnounceCapabilities(False, self.caps.to_words()))

    # ---------------------------------------------------------------- pointer

    def _on_mouse(self, msg: MouseState) -> None:
        if msg.display_id >= len(self.monitors):
            self.log.append("mouse event for unknown monitor")
            return
        mon = self.monitors[msg.display_id]
        x, y = msg.x + mon.x, msg.y + mon.y
        prev = self._last_mouse
        events = self.input_events
        if x != prev.x:
            events.append((EV_ABS, ABS_X, x))
        if y != prev.y:
            events.append((EV_ABS, ABS_Y, y))
        for mask, code in _BUTTON_CODES:
            if (msg.buttons & mask) != (prev.buttons & mask):
                events.append((EV_KEY, code, 1 if msg.buttons & mask else 0))
        if msg.buttons & MouseButton.WHEEL_UP and not prev.buttons & MouseButton.WHEEL_UP:
            events.append((EV_REL, REL_WHEEL, 1))
        if msg.buttons & MouseButton.WHEEL_DOWN and not prev.buttons & MouseButton.WHEEL_DOWN:
            events.append((EV_REL, REL_WHEEL, -1))
        events.append((EV_SYN, 0, 0))
        self._last_mouse = MouseState(x, y, msg.buttons, msg.display_id)
        self.mouse.append(msg)

    def _on_monitors(self, msg: MonitorsConfig, port: int) -> None:
        if msg.flags & MonitorsConfigFlag.PHYSICAL_SIZE:
            self.log.append("invalid message size for VDAgentMonitorsConfig")
            return
        self.monitors = msg.monitors
        self._send(Reply(MessageType.MONITORS_CONFIG, ReplyError.SUCCESS), port=port)

    # ---------------------------------------------------------------- clipboard (host side)

    def _session_sel(self, selection: int) -> GuestSelection | None:
        try:
            return self.selections[Selection(selection)]
        except (ValueError, KeyError):
            return None

    def _on_grab(self, msg: ClipboardGrab) -> None:
        sel = int(msg.selection)
        if msg.serial is not None:
            counter = self.counters.get(sel, 0)
            if msg.serial == (counter - 1) & 0xFFFFFFFF:
                self.log.append("client grab wins")
            elif msg.serial == counter:
                self.counters[sel] = (counter + 1) & 0xFFFFFFFF
            else:
                self.log.append(f"grab discard, serial {msg.serial} != session serial {counter}")
                return
        if self._session_sel(sel) is None:
            return
        known = [t for t in msg.types if t in (ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG,
                                                ClipboardType.IMAGE_BMP, ClipboardType.IMAGE_TIFF,
                                                ClipboardType.IMAGE_JPG)]
        if not known:
            return
        self.selections[Selection(sel)] = GuestSelection(Holder.HOST, {t: b"" for t in known})
        self._paste_pending.pop(Selection(sel), None)

    def _on_request(self, msg: ClipboardRequest) -> None:
        state = self._session_sel(int(msg.selection))
        if state is None or state.holder is not Holder.GUEST or msg.type not in state.data:
            self._send(ClipboardData(msg.selection, ClipboardType.NONE, b""))
            return
        data = state.data[msg.type]
        if 0 <= self.max_clipboard < len(data):
            self.log.append("clipboard is too large")
            data = b""
        self._send(ClipboardData(msg.selection, msg.type, data))

    def _on_data(self, msg: ClipboardData) -> None:
        sel = Selection(msg.selection) if msg.selection in (0, 1) else None
        if sel is None or self._paste_pending.get(sel) != msg.type:
            return  # data without a matching pending request is ignored
        del self._paste_pending[sel]
        self.pasted[sel] = (msg.type, msg.data)

    def _on_release(self, msg: ClipboardRelease) -> None:
        state = self._session_sel(int(msg.selection))
        if state is not None and state.holder is Holder.HOST:
            self.selections[Selection(msg.selection)] = GuestSelection()

    # ---------------------------------------------------------------- files

    def _xfer_status(self, xfer_id: int, status: FileXferStatus, detail: bytes = b"") -> None:
        caps = self.host_caps or Caps()
        if status > FileXferStatus.SUCCESS and Capability.FILE_XFER_DETAILED_ERRORS not in caps:
            status, detail = FileXferStatus.ERROR, b""
        self._send(FileXferStatusMessage(xfer_id, status, detail))

    def _on_xfer_start(self, msg: FileXferStart) -> None:
        if len(self._incoming) >= GUEST_MAX_ACTIVE_TRANSFERS:
            detail = FileXferStatusError.build({"error_type": 0, "error_code": 31})
            caps = self.host_caps or Caps()
            if Capability.FILE_XFER_DETAILED_ERRORS not in caps:
                detail = b""
            self._send(FileXferStatusMessage(msg.id, FileXferStatus.ERROR, detail))
            return
        if msg.id in self._incoming:
            self._xfer_status(msg.id, FileXferStatus.ERROR)
            return
        fields = _parse_keyfile(msg.metadata)
        try:
            name, size = fields["name"], int(fields["size"])
        except (KeyError, ValueError):
            self._xfer_status(msg.id, FileXferStatus.ERROR)
            return
        if "/" in name or not name:
            self._xfer_status(msg.id, FileXferStatus.ERROR)
            return
        self._incoming[msg.id] = IncomingFile(name, size)
        self._xfer_status(msg.id, FileXferStatus.CAN_SEND_DATA)

    def _on_xfer_data(self, msg: FileXferData) -> None:
        task = self._incoming.get(msg.id)
        if task is None:
            return
        task.data += msg.data
        if len(task.data) >= task.size:
            del self._incoming[msg.id]
            if len(task.data) == task.size:
                self.files[task.name] = bytes(task.data)
                self._xfer_status(msg.id, FileXferStatus.SUCCESS)
            else:
                self._xfer_status(msg.id, FileXferStatus.ERROR)

    # ---------------------------------------------------------------- guest-side actions

    def copy(self, selection: Selection, data: dict[ClipboardType, bytes]) -> None:
        """A guest application copies ``data`` (one entry per type) to ``selection``."""
        sel = Selection(selection)
        serial = self.counters[sel]
        self.counters[sel] = (serial + 1) & 0xFFFFFFFF  # consumed even if nobody hears it
        offered: dict[ClipboardType | int, bytes] = dict(data.items())
        self.selections[sel] = GuestSelection(Holder.GUEST, offered)
        host = self.host_caps or Caps()
        if not self.client_connected or Capability.CLIPBOARD_BY_DEMAND not in host:
            return
        if sel != Selection.CLIPBOARD and not self.wire_format.selection:
            return
        with_serial = serial if self.wire_format.grab_serial else None
        self._send(ClipboardGrab(sel, tuple(data), with_serial))
        self._changed()

    def clear(self, selection: Selection) -> None:
        """The guest application that owned ``selection`` goes away: RELEASE."""
        state = self.selections[Selection(selection)]
        if state.holder is Holder.GUEST:
            self.selections[Selection(selection)] = GuestSelection()
            if self.client_connected:
                self._send(ClipboardRelease(selection))

    def paste(self, selection: Selection, data_type: ClipboardType) -> bool:
        """A guest application pastes from ``selection``: REQUEST if the host owns it. The
        answer lands in :attr:`pasted`. Returns False if there is nothing to ask for."""
        sel = Selection(selection)
        state = self.selections[sel]
        if state.holder is not Holder.HOST or data_type not in state.data:
            return False
        self._paste_pending[sel] = data_type
        self._send(ClipboardRequest(sel, data_type))
        return True

    def restart_session_agent(self) -> None:
        """The session agent exits and a new one starts: the daemon sends the 1-byte RELEASE
        for guest-owned selections, closes the port, and announces request=1 on reopening."""
        for sel, state in list(self.selections.items()):
            if state.holder is Holder.GUEST:
                # vdagentd release_clipboards(): the selection byte only, whatever the caps.
                frame_message(self._out, MessageType.CLIPBOARD_RELEASE, bytes([sel]),
                              max_chunk=1 << 62)
            self.selections[sel] = GuestSelection()
        self._paste_pending.clear()
        self.open_port()

    def uinput_records(self) -> list[tuple[int, int, int]]:
        """The (type, code, value) records the fake uinput device would carry."""
        return list(self.input_events)


def _parse_keyfile(data: bytes) -> dict[str, str]:
    """The keys of the ``[vdagent-file-xfer]`` group (read up to the first NUL, like
    ``g_key_file_load_from_data`` with length -1)."""
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    fields: dict[str, str] = {}
    group = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif "=" in line and group == "vdagent-file-xfer":
            key, value = line.split("=", 1)
            fields[key.strip()] = (
                value.replace("\\s", " ").replace("\\n", "\n").replace("\\t", "\t")
                .replace("\\r", "\r").replace("\\\\", "\\")
            )
    return fields
