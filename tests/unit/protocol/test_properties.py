"""Properties of the wire engine over random input (hypothesis).

(a) Any sequence of messages, encoded under any wire format, framed with any chunk size and
    delivered in any pieces, comes back out of the Deframer and the codec exactly.
(b) No byte stream, random or a mutated valid one, makes the Deframer or a HostSession do
    anything but produce items, events or RemoteProtocolError, and neither ever holds more than
    ``max_message_size`` + 28 bytes of partial input (20-byte message header + 8-byte chunk
    header), however the stream is cut.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import get_args

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vdagent_bridge.protocol import HostSession, codec
from vdagent_bridge.protocol.caps import LINUX_AGENT_CAPS
from vdagent_bridge.protocol.codec import FULL, LEGACY, Limits, WireFormat
from vdagent_bridge.protocol.constants import (
    ClipboardType,
    DisplayConfigFlag,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
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
    UnknownMessage,
)

SELECTION_ONLY = WireFormat(selection=True, grab_serial=False)
SERIAL_ONLY = WireFormat(selection=False, grab_serial=True)
FORMATS = (FULL, SELECTION_ONLY, SERIAL_ONLY, LEGACY)

#: A small limit, so oversized chunks and messages are exercised.
SMALL = Limits(max_message_size=4096)
BOUND = SMALL.max_message_size + 28

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
small_bytes = st.binary(max_size=64)

# ----- one strategy per message dataclass ----------------------------------------------------


def selections(fmt: WireFormat) -> st.SearchStrategy[int]:
    """Any u8 with the selection prefix; only CLIPBOARD exists without it."""
    return u8 if fmt.selection else st.just(int(Selection.CLIPBOARD))


def serials(fmt: WireFormat) -> st.SearchStrategy[int | None]:
    return u32 if fmt.grab_serial else st.none()


mouse_states = st.builds(MouseState, u32, u32, u32.map(MouseButton), u8)

monitor_configs = st.builds(MonitorConfig, u32, u32, u32, i32, i32)


@st.composite
def monitors_configs(draw: st.DrawFn) -> MonitorsConfig:
    monitors = tuple(draw(st.lists(monitor_configs, max_size=4)))
    flags = MonitorsConfigFlag(draw(u32))
    physical = None
    if flags & MonitorsConfigFlag.PHYSICAL_SIZE:  # the MM tail exists exactly with the flag
        physical = tuple(draw(st.lists(st.tuples(u16, u16), min_size=len(monitors),
                                       max_size=len(monitors))))
    return MonitorsConfig(monitors, flags, physical)


replies = st.builds(Reply, u32, u32)
display_configs = st.builds(DisplayConfig, u32.map(DisplayConfigFlag), u32)
announces = st.builds(AnnounceCapabilities, st.booleans(), st.lists(u32, max_size=4).map(tuple))
file_xfer_starts = st.builds(FileXferStart, u32, small_bytes)
file_xfer_statuses = st.builds(FileXferStatusMessage, u32, u32, small_bytes)
file_xfer_datas = st.builds(FileXferData, u32, small_bytes)
client_disconnecteds = st.just(ClientDisconnected())
max_clipboards = st.builds(MaxClipboard, i32)
audio_volume_syncs = st.builds(
    AudioVolumeSync, st.booleans(), st.booleans(), st.lists(u16, max_size=8).map(tuple)
)
graphics_device_infos = st.builds(
    GraphicsDeviceInfo,
    st.lists(
        st.builds(DeviceDisplayInfo, u32, u32, u32, st.binary(max_size=16)), max_size=3
    ).map(tuple),
)
unknown_messages = st.builds(
    UnknownMessage,
    st.integers(0, 0xFFFFFFFF).filter(lambda t: t not in set(MessageType)),
    small_bytes,
)


def strategies_by_class(
    fmt: WireFormat, *, large: bool = False
) -> dict[type, st.SearchStrategy[Message]]:
    """One strategy per message class, for messages ``fmt`` can carry. ``large`` adds
    clipboard data past 4 KiB."""
    data = st.one_of(small_bytes, st.binary(min_size=4000, max_size=6000)) if large else (
        small_bytes
    )
    return {
        MouseState: mouse_states,
        MonitorsConfig: monitors_configs(),
        Reply: replies,
        ClipboardData: st.builds(ClipboardData, selections(fmt), u32, data),
        DisplayConfig: display_configs,
        AnnounceCapabilities: announces,
        ClipboardGrab: st.builds(
            ClipboardGrab, selections(fmt), st.lists(u32, max_size=8).map(tuple), serials(fmt)
        ),
        ClipboardRequest: st.builds(ClipboardRequest, selections(fmt), u32),
        ClipboardRelease: st.builds(ClipboardRelease, selections(fmt)),
        FileXferStart: file_xfer_starts,
        FileXferStatusMessage: file_xfer_statuses,
        FileXferData: file_xfer_datas,
        ClientDisconnected: client_disconnecteds,
        MaxClipboard: max_clipboards,
        AudioVolumeSync: audio_volume_syncs,
        GraphicsDeviceInfo: graphics_device_infos,
        UnknownMessage: unknown_messages,
    }


def messages(fmt: WireFormat, *, large: bool = False) -> st.SearchStrategy[Message]:
    return st.one_of(*strategies_by_class(fmt, large=large).values())


def test_there_is_a_strategy_for_every_message_class() -> None:
    assert set(strategies_by_class(FULL)) == set(get_args(Message))


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """``stream`` split at ``points`` (any ints, folded into range)."""
    bounds = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# ----- (a) round trip ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_messages_round_trip_through_framing_and_codec(data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(FORMATS), label="fmt")
    sent = data.draw(st.lists(messages(fmt), max_size=8), label="messages")
    max_chunk = data.draw(
        st.one_of(st.sampled_from([20, 1024, 2048]), st.integers(1, 2100)), label="max_chunk"
    )
    port = data.draw(st.sampled_from([0, 1, 2]), label="port")
    stream = bytearray()
    for msg in sent:
        msg_type, payload = codec.encode(msg, fmt)
        frame_message(stream, msg_type, payload, port=port, max_chunk=max_chunk)
    pieces = cut(bytes(stream), data.draw(st.lists(st.integers(0, 2**16), max_size=10)))

    deframer = Deframer(max_message_size=Limits().max_message_size, ports=(port,))
    for piece in pieces:
        deframer.feed(piece)

    received = []
    for item in deframer.items:
        assert isinstance(item, RawMessage), item
        assert item.port == port
        received.append(codec.decode(item.type, item.payload, fmt, Limits()))
    assert received == sent
    assert deframer.buffered() == 0


# ----- (b) robustness ------------------------------------------------------------------------


#: Selections, types and serials a real guest uses, so the session's clipboard paths run.
bridged = st.sampled_from([Selection.CLIPBOARD, Selection.PRIMARY])
known_types = st.lists(st.sampled_from(list(ClipboardType)), max_size=4).map(tuple)
guest_clipboard = st.one_of(
    st.builds(ClipboardGrab, bridged, known_types, st.integers(0, 3)),
    st.builds(ClipboardRequest, bridged, st.sampled_from(list(ClipboardType))),
    st.builds(ClipboardRelease, bridged),
    st.builds(ClipboardData, bridged, st.sampled_from(list(ClipboardType)), small_bytes),
    st.builds(FileXferStatusMessage, st.integers(0, 2), st.integers(0, 8), small_bytes),
    st.builds(AnnounceCapabilities, st.booleans(), st.just(LINUX_AGENT_CAPS.to_words())),
)


@st.composite
def valid_streams(draw: st.DrawFn) -> bytes:
    """What a guest might send: caps first, then any messages, FULL format, any chunking."""
    sent: list[Message] = [AnnounceCapabilities(True, LINUX_AGENT_CAPS.to_words())]
    sent += draw(st.lists(st.one_of(guest_clipboard, messages(FULL, large=True)), max_size=8))
    max_chunk = draw(st.one_of(st.just(10**9), st.integers(1, 3000)))
    stream = bytearray()
    for msg in sent:
        msg_type, payload = codec.encode(msg, FULL)
        frame_message(stream, msg_type, payload, max_chunk=max_chunk)
    return bytes(stream)


def flip(stream: bytearray, at: int, bit: int) -> None:
    if stream:
        stream[at % len(stream)] ^= 1 << bit


def truncate(stream: bytearray, at: int, length: int) -> None:
    if stream:
        start = at % len(stream)
        del stream[start : start + length]


def insert(stream: bytearray, at: int, data: bytes) -> None:
    stream[at % (len(stream) + 1) : at % (len(stream) + 1)] = data


mutations: st.SearchStrategy[Callable[[bytearray], None]] = st.one_of(
    st.builds(partial, st.just(flip), at=st.integers(0, 2**20), bit=st.integers(0, 7)),
    st.builds(partial, st.just(truncate), at=st.integers(0, 2**20), length=st.integers(1, 64)),
    st.builds(
        partial, st.just(insert), at=st.integers(0, 2**20), data=st.binary(min_size=1, max_size=32)
    ),
)


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    stream = bytearray(draw(valid_streams()))
    for mutate in draw(st.lists(mutations, min_size=1, max_size=4)):
        mutate(stream)
    return bytes(stream)


@st.composite
def random_chunks(draw: st.DrawFn) -> bytes:
    """Well-formed chunk headers (mostly port 1) around random or half-valid contents."""
    stream = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        port = draw(st.sampled_from([1, 1, 1, 0, 2, 3]))
        body = draw(
            st.one_of(
                st.binary(max_size=80),
                st.builds(
                    lambda proto, kind, size, rest: proto.to_bytes(4, "little")
                    + kind.to_bytes(4, "little")
                    + bytes(8)
                    + size.to_bytes(4, "little")
                    + rest,
                    st.sampled_from([1, 1, 1, 0, 2]),
                    st.integers(0, 20),
                    st.one_of(st.integers(0, 64), u32),
                    st.binary(max_size=64),
                ),
            )
        )
        size = draw(st.one_of(st.just(len(body)), u32, st.integers(0, len(body) + 8)))
        stream += port.to_bytes(4, "little") + size.to_bytes(4, "little") + body
    return bytes(stream)


hostile_streams = st.one_of(
    st.binary(max_size=600), random_chunks(), valid_streams(), mutated_streams()
)
feed_points = st.lists(st.integers(0, 2**16), max_size=12)


def drain(next_event: Callable[[], object]) -> int:
    """Call ``next_event`` until it returns None; only RemoteProtocolError may be raised."""
    count = 0
    while True:
        try:
            result = next_event()
        except RemoteProtocolError as err:
            event(type(err).__name__)
        else:
            if result is None:
                return count
            event(type(result).__name__)
        count += 1
        assert count < 10_000, "next_event() does not terminate"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=hostile_streams, points=feed_points, fmt=st.sampled_from(FORMATS))
def test_deframer_survives_any_stream(stream: bytes, points: list[int], fmt: WireFormat) -> None:
    deframer = Deframer(max_message_size=SMALL.max_message_size)
    for piece in cut(stream, points):
        deframer.feed(piece)
        assert deframer.buffered() <= BOUND
        while (item := deframer.pop()) is not None:
            event(type(item).__name__)
            if isinstance(item, RawMessage):
                try:
                    codec.decode(item.type, item.payload, fmt, SMALL)
                except RemoteProtocolError:
                    pass
            else:
                assert isinstance(item, RemoteProtocolError), item


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=hostile_streams, points=feed_points)
def test_host_session_survives_any_stream(stream: bytes, points: list[int]) -> None:
    session = HostSession(limits=SMALL)
    session.start(0.0)
    now = 0.0
    for piece in cut(stream, points):
        now += 0.25
        session.receive_data(piece, now)
        assert session.buffered() <= BOUND
        drain(session.next_event)
    session.handle_timeout(now + 3600.0)
    drain(session.next_event)
    # Whatever the guest sent, what the session answers is well framed.
    answer = Deframer(max_message_size=Limits().max_message_size)
    answer.feed(session.data_to_send())
    assert all(isinstance(item, RawMessage) for item in answer.items)
    assert answer.buffered() == 0
