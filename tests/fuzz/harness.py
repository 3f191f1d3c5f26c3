"""Fuzz targets for the engine's guest-facing side, shared by the offline atheris run and the
short run in the test suite.

One input is a byte string. Its first byte picks a target; the rest is read by a
:class:`Reader` (a deterministic, dependency-free stand-in for atheris' FuzzedDataProvider), so
an input found by atheris replays byte for byte under plain pytest, and a regression file is
just the input.

Targets and the invariants they check (any other exception is a finding):

``deframer``
    Bytes fed in arbitrary pieces to a :class:`Deframer` with random limits and ports: only
    :class:`RawMessage` (on an accepted port, within the size limit) or
    :class:`RemoteProtocolError` items; ``buffered()`` never over the per-port bound; a
    snapshot taken mid-stream and restored elsewhere continues exactly like the original
    (the half-received message of a migration).
``codec``
    Any type and payload through ``codec.decode`` under any wire format, as bytes and as
    pieces: a message or :class:`RemoteProtocolError`, the same either way; a decoded message
    that encodes again decodes back to itself.
``session``
    A :class:`HostSession` after ``start()``, optionally past a caps exchange, fed guest
    bytes (raw, or framed messages with fuzzed bodies) interleaved with clock steps and host
    actions: ``next_event`` yields only events or raises only RemoteProtocolError and
    terminates; host actions raise only LocalProtocolError and then queue nothing;
    ``buffered()`` stays within the limit; every outgoing byte is well framed for the guest
    (port 1, chunks of 1..2048 bytes never straddling messages, whole messages, host → guest
    types, sizes vdagentd accepts, decodable in the wire format in force); far in the future
    no request is pending; a snapshot survives JSON and restores to a session that answers
    the next bytes exactly like the original.
``receive``
    The ``session`` target twice over, on two sessions given the same guest bytes and host
    actions, one fed and one receiving into its messages' own buffers as the connection does
    for a large clipboard: the same events, the same output, the same state.
``snapshot``
    A valid session snapshot with fuzzed values at fuzzed places (a state file corrupted on
    disk): ``HostSession.restore`` succeeds or raises LocalProtocolError, and a restored
    session keeps the ``session`` invariants on further input.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any, get_args

from vdagent_bridge.protocol import (
    Event,
    HostSession,
    LocalProtocolError,
    RemoteProtocolError,
    codec,
)
from vdagent_bridge.protocol.caps import HOST_CAPS, LINUX_AGENT_CAPS
from vdagent_bridge.protocol.codec import FULL, LEGACY, Limits, WireFormat
from vdagent_bridge.protocol.constants import (
    MAX_CHUNK_DATA,
    MESSAGE_HEADER_SIZE,
    SELECTION_PREFIX_SIZE,
    ClipboardType,
    MessageType,
    Port,
    Selection,
)
from vdagent_bridge.protocol.deframer import Deframer, RawMessage
from vdagent_bridge.protocol.messages import AnnounceCapabilities, Message, MonitorConfig
from vdagent_bridge.protocol.payload import Payload

FORMATS = (FULL, LEGACY, WireFormat(selection=True), WireFormat(grab_serial=True))
MESSAGE_CLASSES = get_args(Message)
CHUNK = struct.Struct("<II")
MSG = struct.Struct("<IIQI")  # protocol, type, opaque (u64), size

#: What a host may send (session._HOST_TO_GUEST, restated: the harness checks the engine).
HOST_TO_GUEST = frozenset({
    MessageType.MOUSE_STATE, MessageType.MONITORS_CONFIG, MessageType.CLIPBOARD,
    MessageType.DISPLAY_CONFIG, MessageType.ANNOUNCE_CAPABILITIES, MessageType.CLIPBOARD_GRAB,
    MessageType.CLIPBOARD_REQUEST, MessageType.CLIPBOARD_RELEASE, MessageType.FILE_XFER_START,
    MessageType.FILE_XFER_STATUS, MessageType.FILE_XFER_DATA, MessageType.CLIENT_DISCONNECTED,
    MessageType.MAX_CLIPBOARD, MessageType.AUDIO_VOLUME_SYNC, MessageType.GRAPHICS_DEVICE_INFO,
})
#: vdagentd's vdagent_message_check_size (docs/guest-agent.md §4.2): exact and minimum payload sizes
#: before the clipboard prefix / serial.
EXACT = {
    MessageType.MOUSE_STATE: 13, MessageType.REPLY: 8, MessageType.DISPLAY_CONFIG: 8,
    MessageType.CLIPBOARD_REQUEST: 4, MessageType.CLIPBOARD_RELEASE: 0,
    MessageType.FILE_XFER_STATUS: 8, MessageType.MAX_CLIPBOARD: 4,
    MessageType.CLIENT_DISCONNECTED: 0,
}
MINIMUM = {
    MessageType.MONITORS_CONFIG: 8, MessageType.CLIPBOARD: 4,
    MessageType.ANNOUNCE_CAPABILITIES: 4, MessageType.CLIPBOARD_GRAB: 0,
    MessageType.FILE_XFER_START: 4, MessageType.FILE_XFER_DATA: 12,
    MessageType.AUDIO_VOLUME_SYNC: 3, MessageType.GRAPHICS_DEVICE_INFO: 4,
}
CLIPBOARD_MESSAGES = {
    MessageType.CLIPBOARD, MessageType.CLIPBOARD_GRAB, MessageType.CLIPBOARD_REQUEST,
    MessageType.CLIPBOARD_RELEASE,
}

SELECTIONS = (Selection.CLIPBOARD, Selection.PRIMARY, Selection.SECONDARY, 7)
TYPES = (ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG, ClipboardType.NONE,
         ClipboardType.IMAGE_BMP, 99)
FILE_NAMES = ("notes.txt", "a b.bin", "", "../x", "dir/file", "é.txt", "x" * 300, "nul\0")
MAX_EVENTS = 100_000


class Finding(AssertionError):
    """An invariant broken (the fuzzer reports it as a crash)."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Finding(what)


class Reader:
    """Reads typed values off the input; past its end every read is zero / empty."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        out = self.data[self.pos : self.pos + max(count, 0)]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining())

    def u8(self) -> int:
        if self.pos < len(self.data):
            self.pos += 1
            return self.data[self.pos - 1]
        return 0

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def boolean(self) -> bool:
        return bool(self.u8() & 1)

    def choice(self, options: tuple[Any, ...] | list[Any]) -> Any:
        return options[self.u8() % len(options)]

    def cuts(self, length: int) -> list[int]:
        """Piece boundaries for feeding ``length`` bytes (a few fuzzed points)."""
        points = sorted({self.u16() % (length + 1) for _ in range(self.u8() % 6)})
        return [p for p in points if 0 < p < length]


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# ----- deframer ------------------------------------------------------------------------------


def _drain_deframer(deframer: Deframer, ports: frozenset[int], limit: int) -> list[object]:
    items: list[object] = []
    while (item := deframer.pop()) is not None:
        if isinstance(item, RawMessage):
            check(item.port in ports, f"message on port {item.port}, not in {set(ports)}")
            check(len(item.body) <= limit, f"message of {len(item.body)} > limit {limit}")
            items.append((item.port, item.type, item.payload))
        else:
            check(isinstance(item, RemoteProtocolError), f"deframer item {item!r}")
            items.append((type(item), str(item)))
    return items


def fuzz_deframer(r: Reader) -> None:
    limit = r.choice((0, 20, 300, 4096))
    ports = frozenset(r.choice(((1,), (0, 1, 2), (1, 3))))
    max_chunk = r.choice((None, MAX_CHUNK_DATA, 64))
    snap_at = r.u8()
    raw_cuts = [r.u16() for _ in range(r.u8() % 8)]
    data = r.rest()
    cuts = sorted({c % (len(data) + 1) for c in raw_cuts} - {0, len(data)})

    def new() -> Deframer:
        return Deframer(max_message_size=limit, ports=ports, max_chunk_size=max_chunk)

    deframer = new()
    bound = (CHUNK.size - 1) + len(ports) * max(MESSAGE_HEADER_SIZE - 1, limit)
    twin: Deframer | None = None
    for index, piece in enumerate(pieces(data, cuts)):
        deframer.feed(piece)
        check(deframer.buffered() <= bound, f"buffered {deframer.buffered()} > {bound}")
        got = _drain_deframer(deframer, ports, limit)
        if twin is not None:
            twin.feed(piece)
            check(_drain_deframer(twin, ports, limit) == got, "restored deframer diverged")
        if index == snap_at % 4 and twin is None:
            state = json.loads(json.dumps(deframer.snapshot()))
            twin = new()
            twin.restore(state)
            check(twin.buffered() == deframer.buffered(), "restore changed buffered()")


# ----- codec ---------------------------------------------------------------------------------


def _decode(msg_type: int, payload: bytes | Payload, fmt: WireFormat) -> object:
    try:
        return codec.decode(msg_type, payload, fmt, Limits())
    except RemoteProtocolError as err:
        return err


def fuzz_codec(r: Reader) -> None:
    msg_type = r.choice([*MessageType, None])
    if msg_type is None:
        msg_type = r.u32()
    fmt = r.choice(FORMATS)
    cut = r.u16()
    payload = r.rest()
    whole = _decode(int(msg_type), payload, fmt)
    split = Payload()
    for piece in pieces(payload, [cut % (len(payload) + 1)] if payload else []):
        split.append(memoryview(piece), owned=bool(cut & 1))
    parts = _decode(int(msg_type), split, fmt)
    if isinstance(whole, RemoteProtocolError):
        check(isinstance(parts, RemoteProtocolError), "pieces decoded, bytes did not")
        return
    check(isinstance(whole, MESSAGE_CLASSES), f"decode returned {whole!r:.200}")
    check(parts == whole, "decoding bytes and pieces differ")
    try:
        again_type, again = codec.encode(whole, fmt)  # type: ignore[arg-type]
    except LocalProtocolError:
        return  # a value the guest may send but we cannot (an unknown selection, say)
    check(_decode(again_type, again, fmt) == whole, f"re-encoded {whole!r:.200} differs")


# ----- session -------------------------------------------------------------------------------


class GuestView:
    """Everything the host sends, checked against the rules the guest applies."""

    def __init__(self) -> None:
        self.deframer = Deframer(max_message_size=0xFFFFFFFF, ports=(Port.CLIENT,),
                                 max_chunk_size=MAX_CHUNK_DATA)
        self.messages = 0

    def feed(self, data: bytes, formats: tuple[WireFormat, ...]) -> None:
        pos = 0
        while pos < len(data):
            check(pos + CHUNK.size <= len(data), "output ends inside a chunk header")
            port, size = CHUNK.unpack_from(data, pos)
            check(port == Port.CLIENT, f"chunk on port {port}")
            check(0 < size <= MAX_CHUNK_DATA, f"chunk of {size} bytes")
            pos += CHUNK.size + size
        check(pos == len(data), "output ends inside a chunk")
        self.deframer.feed(data)
        while (item := self.deframer.pop()) is not None:
            check(isinstance(item, RawMessage), f"guest deframer: {item}")
            assert isinstance(item, RawMessage)
            self.messages += 1
            check(item.type in HOST_TO_GUEST, f"host sent message type {item.type}")
            payload = item.payload
            check(any(_guest_accepts(item.type, payload, f) for f in formats),
                  f"guest rejects {MessageType(item.type).name} of {len(payload)} bytes "
                  f"in {formats}")
        check(self.deframer.buffered() == 0, "output ends inside a message")


def _guest_accepts(msg_type: int, payload: bytes, fmt: WireFormat) -> bool:
    kind = MessageType(msg_type)
    extra = 0
    if kind in CLIPBOARD_MESSAGES and fmt.selection:
        extra += SELECTION_PREFIX_SIZE
    if kind is MessageType.CLIPBOARD_GRAB and fmt.grab_serial:
        extra += 4
    if kind in EXACT and len(payload) != EXACT[kind] + extra:
        return False
    if kind in MINIMUM and len(payload) < MINIMUM[kind] + extra:
        return False
    try:
        codec.decode(msg_type, payload, fmt, Limits())
    except RemoteProtocolError:
        return False
    return True


class SessionDriver:
    """A HostSession under fuzzed input, with every invariant checked after each step."""

    def __init__(self, session: HostSession, now: float) -> None:
        self.session = session
        self.now = now
        self.view = GuestView()
        self.events: list[object] = []
        self.bound = session.limits.max_message_size + MESSAGE_HEADER_SIZE + CHUNK.size

    def drain(self) -> list[object]:
        out: list[object] = []
        for _ in range(MAX_EVENTS):
            try:
                event = self.session.next_event()
            except RemoteProtocolError as err:
                out.append((type(err), str(err)))
                continue
            if event is None:
                self.events += out
                return out
            check(isinstance(event, Event), f"next_event returned {event!r:.200}")
            out.append(event)
        raise Finding("next_event() does not terminate")

    def step(self, action: Callable[[], object]) -> bytes:
        """Run one action; returns what it made the session send."""
        before = self.session.wire_format
        queued = self.session.bytes_to_send
        try:
            action()
        except LocalProtocolError:
            check(self.session.bytes_to_send == queued, "a refused action queued bytes")
        self.drain()
        check(self.session.buffered() <= self.bound,
              f"buffered {self.session.buffered()} > {self.bound}")
        formats = (before, self.session.wire_format)
        out = self.session.data_to_send()
        self.view.feed(out, formats)
        return out

    def receive(self, data: bytes) -> bytes:
        return self.step(lambda: self.session.receive_data(data, self.now))

    def advance(self, seconds: float) -> bytes:
        self.now += seconds
        return self.step(lambda: self.session.handle_timeout(self.now))


def _framed(msg_type: int, body: bytes, protocol: int = 1) -> bytes:
    message = MSG.pack(protocol, msg_type, 0, len(body)) + body
    return CHUNK.pack(Port.CLIENT, len(message)) + message


def _caps_words(r: Reader, *, allow_empty: bool = False) -> tuple[int, ...]:
    """The Linux agent's caps, the host's, one fuzzed word (read after the choice), or none."""
    choice = r.u8() % (4 if allow_empty else 3)
    if choice == 0:
        return LINUX_AGENT_CAPS.to_words()
    if choice == 1:
        return (r.u32(),)
    if choice == 2:
        return HOST_CAPS.to_words()
    return ()


def _guest_message(r: Reader, fmt: WireFormat) -> bytes:
    """A framed guest message with a fuzzed but plausible body (reaches the handlers)."""
    kind = r.choice((MessageType.ANNOUNCE_CAPABILITIES, MessageType.CLIPBOARD_GRAB,
                     MessageType.CLIPBOARD_REQUEST, MessageType.CLIPBOARD,
                     MessageType.CLIPBOARD_RELEASE, MessageType.REPLY,
                     MessageType.FILE_XFER_STATUS, MessageType.MOUSE_STATE, None))
    prefix = bytes([r.choice(SELECTIONS), 0, 0, 0]) if fmt.selection else b""
    if kind is MessageType.ANNOUNCE_CAPABILITIES:
        words = _caps_words(r, allow_empty=True)
        body = struct.pack(f"<I{len(words)}I", r.u8() & 1, *words)
    elif kind is MessageType.CLIPBOARD_GRAB:
        serial = struct.pack("<I", r.u8() % 4) if fmt.grab_serial else b""
        types = [int(r.choice(TYPES)) for _ in range(r.u8() % 4)]
        body = prefix + serial + struct.pack(f"<{len(types)}I", *types)
    elif kind is MessageType.CLIPBOARD_REQUEST:
        body = prefix + struct.pack("<I", r.choice(TYPES))
    elif kind is MessageType.CLIPBOARD:
        body = prefix + struct.pack("<I", r.choice(TYPES)) + r.take(r.u16() % 3000)
    elif kind is MessageType.CLIPBOARD_RELEASE:
        body = prefix if r.boolean() else bytes([r.choice(SELECTIONS)])
    elif kind is MessageType.REPLY:
        body = struct.pack("<II", r.choice(list(MessageType)), r.u8() % 3)
    elif kind is MessageType.FILE_XFER_STATUS:
        body = struct.pack("<II", r.u8() % 4, r.u8() % 8) + r.take(r.u8() % 16)
    elif kind is MessageType.MOUSE_STATE:
        body = r.take(13)
    else:
        kind = r.u8()
        body = r.take(r.u8())
    return _framed(int(kind), body, 1 if r.u8() % 16 else r.u8())


def _host_action(r: Reader, d: SessionDriver) -> Callable[[], object]:
    s = d.session
    op = r.u8() % 13
    sel, typ = r.choice(SELECTIONS), r.choice(TYPES)
    if op == 0:
        types = tuple(r.choice(TYPES) for _ in range(r.u8() % 4))
        return lambda: s.grab_clipboard(sel, types)
    if op == 1:
        return lambda: s.release_clipboard(sel)
    if op == 2:
        return lambda: s.request_clipboard(sel, typ, d.now)
    if op == 3:
        data = r.take(r.u16() % 5000) * (1 + r.u8() % 4)
        return lambda: s.send_clipboard_data(sel, typ, data)
    if op == 4:
        return lambda: s.refuse_clipboard_request(sel, typ)
    if op == 5:
        x, y = r.u32() - 2**31, r.u32() - 2**31
        buttons, display = r.u32(), r.choice((0, 1, 255, 256))
        return lambda: s.send_mouse(x, y, buttons, display)
    if op == 6:
        up, x, y = r.boolean(), r.u16(), r.u16()
        return lambda: s.send_wheel(up, x, y)
    if op in (7, 8):
        monitors = tuple(
            MonitorConfig(r.u16() if r.u8() else 0, r.u16() if r.u8() else 0, 32,
                          r.u16() - 2**15, r.u16() - 2**15)
            for _ in range(r.u8() % 4)
        )
        if op == 8:
            return lambda: s.set_monitors(monitors or None)
        return lambda: s.send_monitors_config(monitors)
    if op == 9:
        name, size = r.choice(FILE_NAMES), r.u16() % 3000
        return lambda: s.start_file_transfer(name, size)
    if op == 10:
        tid, data = r.u8() % 4, r.take(r.u16() % 3000)
        return lambda: s.send_file_data(tid, data)
    if op == 11:
        tid = r.u8() % 4
        return lambda: s.cancel_file_transfer(tid)
    return lambda: s.start(d.now)


def _normalized(value: Any) -> Any:
    """JSON data with floats rounded (relative deadlines go through now + t - now)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _settings(r: Reader) -> dict[str, Any]:
    return {
        "limits": Limits(max_message_size=r.choice((256, 4096, 65536))),
        "request_timeout": r.choice((0.5, 5.0)),
        "guest_request_timeout": r.choice((1.0, 10.0)),
        "release_delay": r.choice((0.0, 0.5)),
    }


def _run_session(
    r: Reader, d: SessionDriver, settings: dict[str, Any], *, expire: bool = True
) -> None:
    """The op loop, then the end-of-input checks. ``expire``: every deadline the session set
    itself is within its timeouts (a restored one may be any finite time away)."""
    for _ in range(400):
        if not r.remaining():
            break
        op = r.u8() % 10
        if op < 3:
            data = r.take(r.u16() % 700)
            for piece in pieces(data, r.cuts(len(data))):
                d.receive(piece)
        elif op < 6:
            d.receive(_guest_message(r, d.session.wire_format))
        elif op < 8:
            d.advance(r.u8() / 16)
        else:
            d.step(_host_action(r, d))
    # Nothing waits forever: far in the future every request has expired.
    d.advance(3600.0)
    deadline = d.session.next_deadline()
    check(deadline is None or math.isfinite(deadline), f"deadline {deadline}")
    if expire:
        check(d.session.pending_requests == ([], []), "requests still pending after an hour")
        check(deadline is None, "a deadline survives an hour")
    # The conversation moves (migration, state file): JSON, restore, same answers after.
    snap = d.session.snapshot(d.now)
    text = json.dumps(snap)
    restored = HostSession.restore(json.loads(text), d.now, **settings)
    check(_normalized(restored.snapshot(d.now)) == _normalized(snap), "restore is not exact")
    tail = _guest_message(r, d.session.wire_format) + r.take(64)
    twin = SessionDriver(restored, d.now)
    mark = len(d.events)
    out = d.receive(tail)
    check(twin.step(lambda: restored.receive_data(tail, d.now)) == out,
          "the restored session sends something else")
    check(repr(twin.events) == repr(d.events[mark:]), "the restored session reports otherwise")


def fuzz_session(r: Reader) -> None:
    settings = _settings(r)
    session = HostSession(**settings)
    d = SessionDriver(session, now=float(r.u8()))
    d.step(lambda: session.start(d.now))
    if r.u8() % 4:
        words = _caps_words(r)
        d.receive(_framed(MessageType.ANNOUNCE_CAPABILITIES,
                          struct.pack(f"<I{len(words)}I", 1, *words)))
    _run_session(r, d, settings)


# ----- snapshot (a corrupted state file) -----------------------------------------------------

_VALUES: tuple[Any, ...] = (
    None, True, 0, -1, 1, 2**32, 2**64, 10**30, -(2**63), 0.5, -0.5, 1e308, math.inf,
    -math.inf, math.nan, "", "x", "AAAA", "!!", "host", "guest", [], [0], [1, 2, 3],
    [[0, 1, 0.1]], {}, {"1": {}}, "ZZZZZZZZ",
)


def _base_snapshot() -> dict[str, Any]:
    session = HostSession(limits=Limits(max_message_size=4096))
    session.start(0.0)
    session.receive_data(
        _framed(MessageType.ANNOUNCE_CAPABILITIES,
                struct.pack("<II", 1, *LINUX_AGENT_CAPS.to_words())), 0.0)
    session.grab_clipboard(Selection.PRIMARY, (ClipboardType.UTF8_TEXT,))
    grab = struct.pack("<BxxxII", Selection.CLIPBOARD, 0, ClipboardType.UTF8_TEXT)
    session.receive_data(_framed(MessageType.CLIPBOARD_GRAB, grab), 0.0)
    request = struct.pack("<BxxxI", Selection.PRIMARY, ClipboardType.UTF8_TEXT)
    session.receive_data(_framed(MessageType.CLIPBOARD_REQUEST, request), 0.0)
    while session.next_event() is not None:
        pass
    session.request_clipboard(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, 0.0)
    session.start_file_transfer("f.txt", 10)
    # Half a message and half a chunk header are waiting.
    session.receive_data(_framed(MessageType.CLIPBOARD, bytes(40))[:30], 0.0)
    return json.loads(json.dumps(session.snapshot(0.0)))


_BASE = _base_snapshot()


def _mutate(node: Any, r: Reader, depth: int = 0) -> Any:
    """Replace one value somewhere below ``node`` (or ``node`` itself) by a fuzzed one."""
    if depth > 6 or not r.remaining() or r.u8() % 4 == 0:
        return r.choice(_VALUES) if r.u8() % 8 else r.take(r.u8() % 12).decode("latin-1")
    if isinstance(node, dict) and node:
        key = r.choice(sorted(node))
        copy = dict(node)
        if r.u8() % 16 == 0:
            del copy[key]
        else:
            copy[key] = _mutate(node[key], r, depth + 1)
        return copy
    if isinstance(node, list) and node:
        index = r.u8() % len(node)
        copy = list(node)
        copy[index] = _mutate(node[index], r, depth + 1)
        return copy
    return r.choice(_VALUES)


def fuzz_snapshot(r: Reader) -> None:
    state = _BASE
    for _ in range(1 + r.u8() % 3):
        state = _mutate(state, r)
    # What the state store would read back: the same JSON (NaN and Infinity included).
    state = json.loads(json.dumps(state))
    settings = {"limits": Limits(max_message_size=4096)}
    try:
        session = HostSession.restore(state, 0.0, **settings)  # type: ignore[arg-type]
    except LocalProtocolError:
        return
    # Queued output is restored as opaque bytes: a corrupted file can make it garbage, which
    # the guest would treat as a broken stream (its port resets). Not checked here.
    session.data_to_send()
    d = SessionDriver(session, 0.0)
    _run_session(r, d, settings, expire=False)


# ----- entry point ---------------------------------------------------------------------------

# ----- receive (into the message's own buffer) -------------------------------------------


def _deliver(session: HostSession, data: bytes, read: int, now: float) -> None:
    """``data`` as the connection hands it over: each read into the receive buffer the
    session offers, else fed as bytes."""
    pos = 0
    while pos < len(data):
        view = session.receive_buffer(read)
        if view is None:
            session.receive_data(data[pos : pos + read], now)
            pos += read
            continue
        check(0 < len(view) <= read, f"receive buffer of {len(view)} bytes for reads of {read}")
        with view:
            count = min(len(view), len(data) - pos)
            view[:count] = data[pos : pos + count]
        session.received_into(count, now)
        pos += count


def fuzz_receive(r: Reader) -> None:
    """Two sessions get the same guest bytes and host actions: one fed (receive_data), one
    as the connection delivers a large clipboard (receive_buffer / received_into, here from
    a fuzzed 1..64 bytes on, so that small inputs reach it). Same events, same output, and
    both keep every ``session`` invariant."""
    settings = _settings(r)
    read = 1 + r.u16() % 600
    fed, received = HostSession(**settings), HostSession(**settings)
    received._deframer.DIRECT_MIN = 1 + r.u8() % 64
    now = float(r.u8())
    a, b = SessionDriver(fed, now), SessionDriver(received, now)

    def same(mark: int, out_a: bytes, out_b: bytes) -> None:
        check(out_a == out_b, "received into buffers, the session sends something else")
        check(a.events[mark:] == b.events[mark:], "received into buffers, events differ")

    def deliver(data: bytes) -> None:
        mark = len(a.events)
        same(mark, a.receive(data), b.step(lambda: _deliver(received, data, read, b.now)))

    mark = len(a.events)
    same(mark, a.step(lambda: fed.start(a.now)), b.step(lambda: received.start(b.now)))
    if r.u8() % 4:
        words = _caps_words(r)
        deliver(_framed(MessageType.ANNOUNCE_CAPABILITIES,
                        struct.pack(f"<I{len(words)}I", 1, *words)))
    for _ in range(200):
        if not r.remaining():
            break
        op = r.u8() % 8
        mark = len(a.events)
        if op < 2:
            deliver(r.take(r.u16() % 700))
        elif op < 5:
            deliver(b"".join(_guest_message(r, fed.wire_format) for _ in range(1 + r.u8() % 3)))
        elif op < 7:
            seconds = r.u8() / 16
            same(mark, a.advance(seconds), b.advance(seconds))
        else:
            at = r.pos
            action_a = _host_action(r, a)
            r.pos = at
            same(mark, a.step(action_a), b.step(_host_action(r, b)))
    check(_normalized(fed.snapshot(a.now)) == _normalized(received.snapshot(b.now)),
          "received into buffers, the session's state differs")


TARGETS: tuple[Callable[[Reader], None], ...] = (
    fuzz_deframer, fuzz_codec, fuzz_session, fuzz_session, fuzz_snapshot, fuzz_receive,
)


def one_input(data: bytes) -> None:
    """The fuzz entry point: raises only :class:`Finding` or an unexpected exception."""
    r = Reader(data)
    TARGETS[r.u8() % len(TARGETS)](r)


# ----- seeds ---------------------------------------------------------------------------------


class SeedWriter:
    """Builds an input in the layout :class:`Reader` reads (for the seed corpus)."""

    def __init__(self, target: int) -> None:
        self.out = bytearray([target])

    def u8(self, *values: int) -> SeedWriter:
        self.out += bytes(values)
        return self

    def u16(self, value: int) -> SeedWriter:
        self.out += value.to_bytes(2, "little")
        return self

    def raw(self, data: bytes) -> SeedWriter:
        self.out += data
        return self

    def feed(self, data: bytes) -> SeedWriter:
        """Session op: feed ``data`` (len < 700) in one piece."""
        return self.u8(0).u16(len(data)).raw(data).u8(0)

    def action(self, *fields: int) -> SeedWriter:
        return self.u8(8, *fields)

    def __bytes__(self) -> bytes:
        return bytes(self.out)


def _agent(msg: Message, fmt: WireFormat = FULL) -> bytes:
    msg_type, payload = codec.encode(msg, fmt)
    return _framed(msg_type, payload)


def seeds() -> list[bytes]:
    """A few inputs per target that reach deep (valid streams, a whole clipboard exchange)."""
    from vdagent_bridge.protocol.messages import (
        ClipboardData,
        ClipboardGrab,
        ClipboardRelease,
        ClipboardRequest,
        FileXferStatusMessage,
        Reply,
    )

    cb, text = Selection.CLIPBOARD, ClipboardType.UTF8_TEXT
    caps = AnnounceCapabilities(True, LINUX_AGENT_CAPS.to_words())
    stream = b"".join((
        _agent(caps), _agent(ClipboardGrab(cb, (text,), 0)), _agent(ClipboardRequest(cb, text)),
        _agent(ClipboardData(cb, text, b"hello" * 50)), _agent(ClipboardRelease(cb)),
        _agent(Reply(MessageType.MONITORS_CONFIG, 0)),
    ))
    out: list[bytes] = []
    # deframer: each limit / ports / chunk setting, cut in a few places.
    for limit, ports, chunk in ((3, 0, 0), (2, 1, 1), (1, 2, 2), (0, 0, 0)):
        out.append(bytes(SeedWriter(0).u8(limit, ports, chunk, 1, 2).u16(30).u16(200)
                         .raw(stream)))
    # codec: every message type with a plausible payload, in FULL and LEGACY.
    samples = {
        MessageType.ANNOUNCE_CAPABILITIES: _agent(caps)[28:],
        MessageType.CLIPBOARD_GRAB: _agent(ClipboardGrab(cb, (text, 2), 3))[28:],
        MessageType.CLIPBOARD: _agent(ClipboardData(cb, text, b"data"))[28:],
        MessageType.CLIPBOARD_REQUEST: _agent(ClipboardRequest(cb, text))[28:],
        MessageType.CLIPBOARD_RELEASE: b"\x01",
        MessageType.REPLY: _agent(Reply(MessageType.MONITORS_CONFIG, 0))[28:],
        MessageType.FILE_XFER_STATUS: _agent(FileXferStatusMessage(1, 0))[28:],
        MessageType.MONITORS_CONFIG: struct.pack("<II5I", 1, 1, 800, 600, 32, 0, 0),
        MessageType.GRAPHICS_DEVICE_INFO: struct.pack("<I3II", 1, 0, 0, 0, 4) + b"pci\0",
        MessageType.MOUSE_STATE: bytes(13),
    }
    kinds = list(MessageType)
    for kind, payload in samples.items():
        for fmt in (0, 1):
            out.append(bytes(SeedWriter(1).u8(kinds.index(kind), fmt).u16(3).raw(payload)))
    # session: a whole conversation, with the Linux agent's caps and with legacy caps.
    for caps_choice in (0, 1):
        w = SeedWriter(2).u8(1, 1, 1, 1, 0, 1, caps_choice)
        if caps_choice == 1:
            w.raw((1 << 5).to_bytes(4, "little"))  # CLIPBOARD_BY_DEMAND only: legacy format
        fmt = FULL if caps_choice == 0 else LEGACY
        w.feed(_agent(ClipboardGrab(cb, (text,), 0 if fmt.grab_serial else None), fmt))
        w.action(2, 0, 0)  # request_clipboard(CLIPBOARD, UTF8_TEXT)
        w.feed(_agent(ClipboardData(cb, text, b"guest text"), fmt))
        sel = 1 if fmt.selection else 0  # PRIMARY needs CLIPBOARD_SELECTION
        w.action(0, sel, 0, 2, 0, 1)  # grab_clipboard(sel, (UTF8_TEXT, PNG))
        w.feed(_agent(ClipboardRequest(SELECTIONS[sel], text), fmt))
        # send_clipboard_data(sel, UTF8_TEXT, 3072 bytes, three times over)
        w.action(3, sel, 0).u16(3072).raw(bytes(range(256)) * 12).u8(2)
        w.u8(6, 40)  # the clock moves 2.5 s
        w.action(9, 0, 0, 0).u16(100)  # start_file_transfer("notes.txt", 100)
        w.feed(_agent(FileXferStatusMessage(1, 0), fmt))
        w.action(10, 0, 0, 1).u16(100).raw(b"f" * 100)
        w.action(5, 0, 0).raw(bytes(8)).raw(bytes(4)).u8(0)  # send_mouse
        w.feed(_agent(caps))  # the agent restarted
        out.append(bytes(w))
    # snapshot: a few mutations of the base state.
    for first in range(4):
        out.append(bytes(SeedWriter(4).u8(first, 1, 2, 3, 1, 0, 5, 7)))
    # receive: the agent's stream, whole and in reads of a few sizes, into buffers from 1,
    # 8 and 64 bytes on.
    for read, direct_min in ((599, 0), (6, 7), (299, 63)):
        w = SeedWriter(5).u8(1, 1, 1, 1).u16(read).u8(direct_min, 0, 1, 0)
        out.append(bytes(w.u8(0).u16(len(stream)).raw(stream)))
    return out
