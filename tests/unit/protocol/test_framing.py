"""Chunk framing: what goes out, and how the guest's byte stream comes back as messages.

Specification (the framer, deframer and payload module docstrings, docs/protocol.md
§2.2–§2.4, docs/guest-agent.md §3–§4):

Outgoing, every chunk carries at most 2048 bytes (vdagentd closes the port on a bigger one)
and the bytes of one message only. Incoming, chunks of any size are accepted (vdagentd sends a
whole message, 10 MiB and more, as one chunk), a message header may be split across chunks,
reassembly is kept per port, and whatever breaks the rules becomes a RemoteProtocolError in
stream order: the bad unit is skipped without being buffered and the stream goes on.

Every input here is fed whole, byte by byte and split at every point (or in large pieces for
the multi-megabyte ones), and most are followed by a valid message that must still come out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdagent_bridge.protocol.constants import MessageType, Port
from vdagent_bridge.protocol.deframer import Deframer, RawMessage
from vdagent_bridge.protocol.errors import (
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from vdagent_bridge.protocol.framer import FramedMessage, frame, frame_message

MAX_CHUNK = 2048
KIB = 1024
MIB = 1024 * 1024


def le32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def chunk(payload: bytes, port: int = 1, size: int | None = None) -> bytes:
    """A chunk header (u32 port, u32 size) and its payload, built by hand."""
    return le32(port) + le32(len(payload) if size is None else size) + payload


def message(msg_type: int, payload: bytes, protocol: int = 1, size: int | None = None) -> bytes:
    """A message header (u32 protocol, u32 type, u64 opaque, u32 size) and its payload."""
    size = len(payload) if size is None else size
    return le32(protocol) + le32(msg_type) + bytes(8) + le32(size) + payload


def framed(msg_type: int, payload: bytes, port: int = 1) -> bytes:
    """One whole message in one chunk."""
    return chunk(message(msg_type, payload), port)


#: A valid message appended after bad input: it must still come out.
NEXT = framed(MessageType.MOUSE_STATE, bytes(13))
NEXT_ITEM = ("message", 1, MessageType.MOUSE_STATE, bytes(13))


def parse_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream into (port, chunk payload), independently of the Deframer."""
    chunks = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, "truncated chunk header"
        port = int.from_bytes(data[pos : pos + 4], "little")
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        assert len(data) - pos - 8 >= size, "truncated chunk"
        chunks.append((port, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size
    return chunks


def summary(items: Iterable[object]) -> list[tuple[object, ...]]:
    """Items as comparable tuples: messages by content, errors by class and fields."""
    out: list[tuple[object, ...]] = []
    for item in items:
        if isinstance(item, RawMessage):
            out.append(("message", item.port, item.type, item.payload))
        elif isinstance(item, LimitExceeded):
            out.append(("limit", item.message_type, item.limit, item.actual))
        else:
            assert isinstance(item, RemoteProtocolError), item
            out.append(("error", item.message_type))
    return out


def new_deframer(**kwargs: object) -> Deframer:
    kwargs.setdefault("max_message_size", 1 * MIB)
    return Deframer(**kwargs)  # type: ignore[arg-type]


def run(pieces: Iterable[bytes], **kwargs: object) -> tuple[list[tuple[object, ...]], Deframer]:
    deframer = new_deframer(**kwargs)
    for piece in pieces:
        deframer.feed(piece)
    return summary(deframer.items), deframer


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The ways every small input is fed: whole, byte by byte, in two at every point."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def deframe_every_way(data: bytes, **kwargs: object) -> list[tuple[object, ...]]:
    """The items of ``data``, checked to be the same however the input is split."""
    expected, deframer = run([data], **kwargs)
    assert deframer.buffered() == 0
    for pieces in splits(data):
        got, _ = run(pieces, **kwargs)
        assert got == expected, f"pieces of sizes {[len(p) for p in pieces][:4]}..."
    return expected


# ----- outgoing ------------------------------------------------------------------------------


OUTGOING_SIZES = [0, 1, 2027, 2028, 2029, 2048, 10 * KIB, 1 * MIB]


@pytest.mark.parametrize("size", OUTGOING_SIZES)
def test_outgoing_chunks_carry_at_most_2048_bytes(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    out = bytearray()
    frame_message(out, MessageType.CLIPBOARD, payload)
    chunks = parse_chunks(bytes(out))
    assert all(port == Port.CLIENT for port, _ in chunks)
    assert all(len(data) <= MAX_CHUNK for _, data in chunks)
    # Full chunks but the last, so exactly ceil((20 + size) / 2048) of them.
    assert len(chunks) == -(-(20 + size) // MAX_CHUNK)
    assert all(len(data) == MAX_CHUNK for _, data in chunks[:-1])
    assert b"".join(data for _, data in chunks) == message(MessageType.CLIPBOARD, payload)


@pytest.mark.parametrize(("first", "second"), [(0, 0), (2028, 0), (2029, 5), (5000, 5000)])
def test_outgoing_chunks_never_straddle_two_messages(first: int, second: int) -> None:
    out = bytearray()
    frame_message(out, MessageType.CLIPBOARD, bytes(first))
    frame_message(out, MessageType.FILE_XFER_DATA, bytes(second))
    boundaries = []
    total = 0
    for _, data in parse_chunks(bytes(out)):
        total += len(data)
        boundaries.append(total)
    assert 20 + first in boundaries
    assert boundaries[-1] == 20 + first + 20 + second


@pytest.mark.parametrize("max_chunk", [1024, 100, 21, 20])
def test_outgoing_chunks_respect_a_smaller_max_chunk(max_chunk: int) -> None:
    payload = bytes(range(256)) * 20
    out = bytearray()
    frame_message(out, MessageType.CLIPBOARD, payload, max_chunk=max_chunk)
    chunks = parse_chunks(bytes(out))
    assert all(len(data) <= max_chunk for _, data in chunks)
    assert b"".join(data for _, data in chunks) == message(MessageType.CLIPBOARD, payload)
    items, _ = run([bytes(out)])
    assert items == [("message", 1, MessageType.CLIPBOARD, payload)]


def test_outgoing_chunks_use_the_given_port() -> None:
    out = bytearray()
    frame_message(out, MessageType.MOUSE_STATE, bytes(5000), port=Port.SERVER)
    assert {port for port, _ in parse_chunks(bytes(out))} == {Port.SERVER}


def test_outgoing_message_header_is_protocol_1_with_opaque_0() -> None:
    out = bytearray()
    frame_message(out, MessageType.REPLY, b"12345678")
    assert bytes(out) == framed(MessageType.REPLY, b"12345678")


def test_payload_too_large_for_a_u32_size_is_refused() -> None:
    class Huge:
        def __len__(self) -> int:
            return 0xFFFFFFFF - 20 + 1

    with pytest.raises(LocalProtocolError):
        frame_message(bytearray(), MessageType.CLIPBOARD, Huge())  # type: ignore[arg-type]


@pytest.mark.parametrize("size", OUTGOING_SIZES)
def test_outgoing_messages_deframe_to_themselves(size: int) -> None:
    payload = bytes(i % 253 for i in range(size))
    out = bytearray()
    frame_message(out, MessageType.CLIPBOARD, payload)
    frame_message(out, MessageType.CLIENT_DISCONNECTED, b"")
    for piece_size in (len(out), 1000, 2048 + 8, 7):
        if piece_size == 7 and size > 10 * KIB:
            continue
        pieces = [bytes(out[i : i + piece_size]) for i in range(0, len(out), piece_size)]
        items, deframer = run(pieces)
        assert items == [
            ("message", 1, MessageType.CLIPBOARD, payload),
            ("message", 1, MessageType.CLIENT_DISCONNECTED, b""),
        ]
        assert deframer.buffered() == 0


# ----- incoming: messages --------------------------------------------------------------------


@pytest.mark.parametrize("piece_size", [10 * MIB + 28, 64 * KIB, 4093])
def test_accepts_a_10_mib_message_in_one_chunk(piece_size: int) -> None:
    payload = bytes(range(256)) * (10 * MIB // 256)
    stream = framed(MessageType.CLIPBOARD, payload) + NEXT
    pieces = [stream[i : i + piece_size] for i in range(0, len(stream), piece_size)]
    items, deframer = run(pieces, max_message_size=16 * MIB)
    assert items == [("message", 1, MessageType.CLIPBOARD, payload), NEXT_ITEM]
    assert deframer.buffered() == 0


def test_reassembles_a_message_header_split_across_chunks() -> None:
    msg = message(MessageType.CLIPBOARD, b"hello")
    for cut in range(1, 20):
        stream = chunk(msg[:cut]) + chunk(msg[cut:]) + NEXT
        assert deframe_every_way(stream) == [
            ("message", 1, MessageType.CLIPBOARD, b"hello"),
            NEXT_ITEM,
        ], f"header cut at {cut}"


def test_reassembles_a_message_sent_one_byte_per_chunk() -> None:
    msg = message(MessageType.CLIPBOARD, b"one byte at a time")
    stream = b"".join(chunk(msg[i : i + 1]) for i in range(len(msg))) + NEXT
    assert deframe_every_way(stream) == [
        ("message", 1, MessageType.CLIPBOARD, b"one byte at a time"),
        NEXT_ITEM,
    ]


def test_empty_messages() -> None:
    stream = (
        framed(MessageType.CLIENT_DISCONNECTED, b"")
        + framed(MessageType.CLIPBOARD_RELEASE, b"")
        + framed(99, b"")
        + NEXT
    )
    assert deframe_every_way(stream) == [
        ("message", 1, MessageType.CLIENT_DISCONNECTED, b""),
        ("message", 1, MessageType.CLIPBOARD_RELEASE, b""),
        ("message", 1, 99, b""),
        NEXT_ITEM,
    ]


def test_an_empty_chunk_is_ignored_even_inside_a_message() -> None:
    msg = message(MessageType.CLIPBOARD, b"abc")
    stream = chunk(b"") + chunk(msg[:10]) + chunk(b"") + chunk(msg[10:]) + chunk(b"") + NEXT
    assert deframe_every_way(stream) == [
        ("message", 1, MessageType.CLIPBOARD, b"abc"),
        NEXT_ITEM,
    ]


def test_keeps_one_reassembly_per_port() -> None:
    one = message(MessageType.CLIPBOARD, b"on port one")
    two = message(MessageType.REPLY, b"port two")
    stream = (
        chunk(one[:15], port=1)
        + chunk(two[:5], port=2)
        + chunk(two[5:], port=2)
        + chunk(one[15:], port=1)
    )
    assert deframe_every_way(stream, ports=(1, 2)) == [
        ("message", 2, MessageType.REPLY, b"port two"),
        ("message", 1, MessageType.CLIPBOARD, b"on port one"),
    ]


def test_port_0_is_accepted_when_configured() -> None:
    # vdagentd tolerates port 0 (docs/protocol.md §2.2); the deframer does when asked to.
    stream = framed(MessageType.REPLY, bytes(8), port=0)
    assert deframe_every_way(stream, ports=(0, 1)) == [
        ("message", 0, MessageType.REPLY, bytes(8))
    ]


# ----- incoming: errors, each skipped so the stream goes on ----------------------------------


@pytest.mark.parametrize("port", [0, 2, 3, 0xFFFFFFFF])
def test_chunk_on_an_unaccepted_port_is_skipped(port: int) -> None:
    stream = framed(MessageType.REPLY, bytes(8), port=port) + NEXT
    items = deframe_every_way(stream)
    assert items == [("error", None), NEXT_ITEM]


def test_chunk_on_an_unaccepted_port_leaves_a_partial_message_alone() -> None:
    msg = message(MessageType.CLIPBOARD, b"survives")
    stream = chunk(msg[:12]) + framed(MessageType.REPLY, bytes(8), port=2) + chunk(msg[12:])
    assert deframe_every_way(stream) == [
        ("error", None),
        ("message", 1, MessageType.CLIPBOARD, b"survives"),
    ]


def test_chunk_over_the_limit_is_skipped() -> None:
    # The largest chunk is the largest message: max_message_size + the 20-byte header.
    too_big = chunk(bytes(1000 + 21))
    assert deframe_every_way(too_big + NEXT, max_message_size=1000) == [
        ("limit", None, 1020, 1021),
        NEXT_ITEM,
    ]
    largest = framed(MessageType.CLIPBOARD, bytes(1000))
    assert deframe_every_way(largest, max_message_size=1000) == [
        ("message", 1, MessageType.CLIPBOARD, bytes(1000))
    ]


def test_chunk_over_the_limit_drops_the_message_it_interrupts() -> None:
    partial = chunk(message(MessageType.CLIPBOARD, bytes(100))[:50])
    stream = partial + chunk(bytes(1021)) + NEXT
    assert deframe_every_way(stream, max_message_size=1000) == [
        ("limit", MessageType.CLIPBOARD, 1020, 1021),
        NEXT_ITEM,
    ]


def test_chunk_claiming_4_gib_is_skipped_without_buffering() -> None:
    deframer = new_deframer(max_message_size=1 * MIB)
    deframer.feed(le32(1) + le32(0xFFFFFFFF))
    piece = bytes(1 * MIB)
    for _ in range(10):
        deframer.feed(piece)
        assert deframer.buffered() == 0
    assert summary(deframer.items) == [("limit", None, MIB + 20, 0xFFFFFFFF)]


def test_message_over_the_limit_is_skipped_chunk_by_chunk() -> None:
    out = bytearray()
    frame_message(out, MessageType.CLIPBOARD, bytes(5000), max_chunk=512)
    stream = bytes(out) + NEXT
    items = deframe_every_way(stream, max_message_size=1000)
    assert items == [("limit", MessageType.CLIPBOARD, 1000, 5000), NEXT_ITEM]
    deframer = new_deframer(max_message_size=1000)
    for start in range(0, len(stream), 100):
        deframer.feed(stream[start : start + 100])
        assert deframer.buffered() < 28


def test_message_claiming_4_gib_is_skipped_without_buffering() -> None:
    deframer = new_deframer(max_message_size=1 * MIB)
    deframer.feed(chunk(message(MessageType.CLIPBOARD, b"", size=0xFFFFFFFF)))
    for _ in range(10):
        deframer.feed(chunk(bytes(1 * MIB)))
        assert deframer.buffered() < 28
    assert summary(deframer.items) == [("limit", MessageType.CLIPBOARD, MIB, 0xFFFFFFFF)]


@pytest.mark.parametrize("protocol", [0, 2, 0xFFFFFFFF])
def test_message_with_another_protocol_is_skipped(protocol: int) -> None:
    bad = message(MessageType.CLIPBOARD, b"skipped", protocol=protocol)
    for stream in (chunk(bad), chunk(bad[:20]) + chunk(bad[20:])):
        items = deframe_every_way(stream + NEXT)
        assert items == [("error", MessageType.CLIPBOARD), NEXT_ITEM]


def test_chunk_larger_than_its_message_is_a_lost_sync() -> None:
    # vdagentd: "chunk larger than message, lost sync?" (docs/protocol.md §2.4).
    stream = chunk(message(MessageType.REPLY, bytes(8)) + b"extra bytes") + NEXT
    assert deframe_every_way(stream) == [
        ("message", 1, MessageType.REPLY, bytes(8)),
        ("error", MessageType.REPLY),
        NEXT_ITEM,
    ]


def test_chunk_holding_two_messages_is_a_lost_sync() -> None:
    two = message(MessageType.REPLY, bytes(8)) + message(MessageType.MOUSE_STATE, bytes(13))
    assert deframe_every_way(chunk(two) + NEXT) == [
        ("message", 1, MessageType.REPLY, bytes(8)),
        ("error", MessageType.REPLY),
        NEXT_ITEM,
    ]


def test_chunk_running_past_the_end_of_a_multi_chunk_message() -> None:
    msg = message(MessageType.CLIPBOARD, b"0123456789")
    stream = chunk(msg[:25]) + chunk(msg[25:] + b"!") + NEXT
    assert deframe_every_way(stream) == [
        ("message", 1, MessageType.CLIPBOARD, b"0123456789"),
        ("error", MessageType.CLIPBOARD),
        NEXT_ITEM,
    ]


def test_errors_are_remote_protocol_errors_in_stream_order() -> None:
    stream = (
        NEXT
        + framed(MessageType.REPLY, bytes(8), port=3)
        + NEXT
        + chunk(message(MessageType.REPLY, b"", protocol=2))
        + NEXT
    )
    deframer = new_deframer()
    deframer.feed(stream)
    kinds = [type(item) for item in deframer.items]
    assert kinds[0::2] == [RawMessage] * 3
    assert all(issubclass(kind, RemoteProtocolError) for kind in kinds[1::2])
    first = deframer.items[0]
    assert deframer.pop() is first  # pop() takes from the front
    assert len(deframer.items) == 4
    while deframer.pop() is not None:
        pass
    assert deframer.pop() is None


def test_truncated_input_waits_for_the_rest() -> None:
    stream = framed(MessageType.CLIPBOARD, b"abcdef")
    for cut in range(1, len(stream)):
        items, deframer = run([stream[:cut]])
        assert items == []
        assert deframer.buffered() <= cut
        deframer.feed(stream[cut:])
        assert summary(deframer.items) == [("message", 1, MessageType.CLIPBOARD, b"abcdef")]


def test_reset_forgets_partial_input() -> None:
    deframer = new_deframer()
    deframer.feed(framed(MessageType.CLIPBOARD, b"abcdef")[:30])
    assert deframer.buffered() > 0
    deframer.reset()
    assert deframer.buffered() == 0
    deframer.feed(NEXT)
    assert summary(deframer.items) == [NEXT_ITEM]


# ----- snapshot and restore ------------------------------------------------------------------


def varied_stream() -> bytes:
    """Small and multi-chunk messages, a header split across chunks, an empty message, a
    skipped port, an over-limit message, an over-limit chunk, a chunk running past its message
    and a foreign protocol, with max_message_size=64."""
    split = message(MessageType.CLIPBOARD, b"split header")
    long = message(MessageType.FILE_XFER_DATA, bytes(range(60)))
    too_big = message(MessageType.CLIPBOARD, bytes(100))
    return (
        NEXT
        + chunk(split[:7])
        + chunk(split[7:])
        + chunk(long[:30])
        + chunk(long[30:55])
        + chunk(long[55:])
        + framed(MessageType.CLIENT_DISCONNECTED, b"")
        + framed(MessageType.REPLY, bytes(8), port=2)
        + chunk(too_big[:50])
        + chunk(too_big[50:])
        + chunk(message(MessageType.REPLY, bytes(8), protocol=3))
        + chunk(bytes(85))
        + chunk(message(MessageType.REPLY, bytes(8)) + b"lost sync")
        + NEXT
    )


def test_snapshot_and_restore_anywhere_continue_the_stream() -> None:
    stream = varied_stream()
    expected, _ = run([stream], max_message_size=64)
    assert [i[0] for i in expected] == [
        "message", "message", "message", "message", "error", "limit", "error", "limit",
        "message", "error", "message",
    ]
    for cut in range(len(stream) + 1):
        before = new_deframer(max_message_size=64)
        before.feed(stream[:cut])
        state = json.loads(json.dumps(before.snapshot()))
        after = new_deframer(max_message_size=64)
        after.restore(state)
        assert after.buffered() == before.buffered()
        after.feed(stream[cut:])
        got = summary(before.items) + summary(after.items)
        assert got == expected, f"snapshot at byte {cut}"


def test_snapshot_twice_in_one_stream() -> None:
    stream = varied_stream()
    expected, _ = run([stream], max_message_size=64)
    for first in range(0, len(stream), 7):
        for second in range(first, len(stream) + 1, 13):
            items: list[tuple[object, ...]] = []
            deframer = new_deframer(max_message_size=64)
            for start, end in ((0, first), (first, second), (second, len(stream))):
                deframer.feed(stream[start:end])
                items += summary(deframer.items)
                state = json.loads(json.dumps(deframer.snapshot()))
                deframer = new_deframer(max_message_size=64)
                deframer.restore(state)
            assert items == expected


def test_snapshot_of_an_idle_deframer_holds_nothing_partial() -> None:
    deframer = new_deframer()
    deframer.feed(NEXT)
    state = deframer.snapshot()
    assert state["chunk_left"] == 0
    assert state["assemblies"] == {}


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s.pop("chunk_left"),
        lambda s: s.update(chunk_header="not base64!"),
        lambda s: s.update(chunk_left=-1),
        lambda s: s.update(chunk_left=2**32),
        lambda s: s["assemblies"]["1"].update(size=10**12),
        lambda s: s["assemblies"]["1"].update(discard=-5),
        lambda s: s.update(assemblies={"1": None}),
    ],
    ids=[
        "missing_key",
        "bad_base64",
        "negative_chunk_left",
        "chunk_left_over_u32",
        "size_over_limit",
        "negative_discard",
        "bad_assembly",
    ],
)
def test_restore_refuses_a_corrupt_snapshot(corrupt) -> None:  # type: ignore[no-untyped-def]
    deframer = new_deframer(max_message_size=64)
    deframer.feed(chunk(message(MessageType.CLIPBOARD, b"abcdef"))[:31])
    state = json.loads(json.dumps(deframer.snapshot()))
    corrupt(state)
    with pytest.raises(LocalProtocolError):
        new_deframer(max_message_size=64).restore(state)


def test_small_views_do_not_keep_large_reads_alive() -> None:
    """A guest that interleaves 16 KiB pieces of a big message with skipped chunks in every
    1 MiB read must not make us retain the whole reads: the pieces are copied."""
    from vdagent_bridge.protocol.deframer import Deframer
    from vdagent_bridge.protocol.payload import Payload
    from vdagent_bridge.protocol.wire import CHUNK_HEADER, MESSAGE_HEADER

    deframer = Deframer(max_message_size=1 << 26)
    piece = Payload.COALESCE
    header = MESSAGE_HEADER.pack(1, 4, 0, 1 << 24)
    deframer.feed(CHUNK_HEADER.pack(1, len(header)) + header)
    for _ in range(4):
        skipped = CHUNK_HEADER.pack(2, (1 << 20) - piece - 16) + bytes((1 << 20) - piece - 16)
        read = skipped + CHUNK_HEADER.pack(1, piece) + bytes(piece)
        deframer.feed(read)
    assembly = deframer._assemblies[1]
    assert assembly.body is not None
    assert all(not isinstance(p, memoryview) for p in assembly.body._pieces)


# ----- lazy framing: the same bytes, as buffers ------------------------------------------------


@pytest.mark.parametrize("size", [*OUTGOING_SIZES, 3 * MAX_CHUNK - 28, 3 * MAX_CHUNK - 27])
@pytest.mark.parametrize("head", [b"", b"\x01" * 8, b"\x02" * 3000])
def test_a_lazily_framed_message_is_the_framed_message(size: int, head: bytes) -> None:
    tail = bytes(i % 251 for i in range(size))
    framed = FramedMessage(MessageType.CLIPBOARD, head, tail)
    whole = frame(MessageType.CLIPBOARD, head, tail)
    assert framed.size == len(framed) == len(whole)
    assert b"".join(framed.buffers(0, len(whole), 10**9)) == whole


@given(
    size=st.integers(0, 5 * MAX_CHUNK),
    takes=st.lists(st.integers(1, 3 * MAX_CHUNK), min_size=1, max_size=8),
    max_buffers=st.integers(2, 9),
)
def test_lazy_framing_resumes_at_any_offset(size: int, takes: list[int], max_buffers: int) -> None:
    """A writer takes buffers from wherever the socket stopped (inside a chunk header, inside
    a body, at a chunk boundary), as many as it likes: the bytes are the message's, in order."""
    tail = bytes(i % 251 for i in range(size))
    framed = FramedMessage(MessageType.FILE_XFER_DATA, b"\x07" * 12, tail)
    whole = frame(MessageType.FILE_XFER_DATA, b"\x07" * 12, tail)
    offset = step = 0
    while offset < len(whole):
        take = takes[step % len(takes)] * 7 % 3001 + 1  # what the socket accepts this time
        step += 1
        buffers = framed.buffers(offset, take, max_buffers)
        assert buffers and len(buffers) <= max_buffers
        got = b"".join(buffers)
        assert got == whole[offset : offset + len(got)]
        offset += min(len(got), take)


def test_lazy_framing_does_not_copy_the_body() -> None:
    tail = bytearray(1 * MIB)
    framed = FramedMessage(MessageType.CLIPBOARD, b"", tail)
    tail[-1] = 0x5A  # the caller's buffer is what goes out
    assert b"".join(framed.buffers(0, 2 * MIB, 10**9))[-1] == 0x5A


# ----- receiving a large message into its own buffer ---------------------------------------
#
# Specification (Deframer.receive_buffer): inside a large message whose type has a data
# offset, the deframer offers a writable view of the message's own buffer; what is received
# there comes out exactly as if it had been fed, and the data after the offset is handed over
# as that buffer, not joined. Whatever the guest does, this changes no item and no limit.

CLIPBOARD_OFFSET = 8  # selection prefix + type, with the selection capability


def clipboard_offset(msg_type: int) -> int | None:
    return CLIPBOARD_OFFSET if msg_type == MessageType.CLIPBOARD else None


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from position to position (a misplaced byte shows)."""
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def receive(
    deframer: Deframer, stream: bytes, reads: Iterable[int], limit: int = 4 * MIB
) -> list[int]:
    """Deliver ``stream`` as a socket would: reads of the given sizes (the last repeated),
    each into the deframer's receive buffer when it offers one, else fed as bytes. Returns
    how many reads went into a receive buffer."""
    sizes = list(reads)
    direct: list[int] = []
    pos = 0
    step = 0
    while pos < len(stream):
        want = sizes[min(step, len(sizes) - 1)]
        step += 1
        view = deframer.receive_buffer(limit)
        if view is None:
            deframer.feed(stream[pos : pos + want])
            pos += want
            continue
        count = min(len(view), want, len(stream) - pos)
        view[:count] = stream[pos : pos + count]
        view.release()
        deframer.received_into(count)
        direct.append(count)
        pos += count
    return direct


def test_a_large_clipboard_is_received_into_its_own_buffer() -> None:
    data = pattern(3 * MIB)
    body = bytes(CLIPBOARD_OFFSET) + data
    deframer = new_deframer(max_message_size=4 * MIB, data_offset=clipboard_offset)
    direct = receive(deframer, framed(MessageType.CLIPBOARD, body) + NEXT, [64 * KIB, 256 * KIB])
    assert sum(direct) == len(data) - (64 * KIB - 8 - 20 - CLIPBOARD_OFFSET)
    first, second = deframer.items
    assert isinstance(first, RawMessage) and first.payload == body
    tail = first.body.tail(CLIPBOARD_OFFSET)
    assert isinstance(tail, bytearray) and tail == data
    assert first.body.tail(CLIPBOARD_OFFSET) is tail  # handed over, not joined
    assert summary([second]) == [NEXT_ITEM]
    assert deframer.buffered() == 0


def test_bytes_already_fed_past_the_head_move_into_the_buffer() -> None:
    data = pattern(1 * MIB, seed=3)
    stream = framed(MessageType.CLIPBOARD, bytes(CLIPBOARD_OFFSET) + data)
    deframer = new_deframer(data_offset=clipboard_offset, max_message_size=2 * MIB)
    deframer.feed(stream[: 300 * KIB])  # a first read: headers, head and 300 KiB of data
    assert receive(deframer, stream[300 * KIB :], [128 * KIB])
    (item,) = deframer.items
    assert isinstance(item, RawMessage)
    assert item.body.tail(CLIPBOARD_OFFSET) == data


@pytest.mark.parametrize(
    ("stream", "kwargs"),
    [
        (framed(MessageType.CLIPBOARD, bytes(60 * KIB)), {}),  # too small to be worth it
        (framed(MessageType.MONITORS_CONFIG, bytes(1 * MIB)), {}),  # no data offset
        (framed(MessageType.CLIPBOARD, bytes(2 * MIB)), {}),  # over the limit: discarded
        (framed(MessageType.CLIPBOARD, bytes(1 * MIB), port=2), {}),  # port not accepted
        (framed(MessageType.CLIPBOARD, bytes(1 * MIB)), {"data_offset": None}),
        (chunk(message(MessageType.CLIPBOARD, bytes(1 * MIB)), size=2 * MIB), {}),  # too big
    ],
    ids=["small", "other_type", "over_limit", "other_port", "no_offsets", "chunk_over_limit"],
)
def test_no_receive_buffer_is_offered_where_bytes_must_be_fed(
    stream: bytes, kwargs: dict[str, object]
) -> None:
    options: dict[str, object] = {"data_offset": clipboard_offset, "max_chunk_size": MIB + 28}
    options.update(kwargs)
    deframer = new_deframer(**options)
    expected, _ = run([stream + NEXT], **options)
    for pos in range(0, len(stream), 32 * KIB):
        assert deframer.receive_buffer(4 * MIB) is None, f"offered at byte {pos}"
        deframer.feed(stream[pos : pos + 32 * KIB])
    deframer.feed(NEXT)
    assert summary(deframer.items) == expected


def test_the_buffer_never_reaches_past_the_chunk_or_the_message() -> None:
    body = bytes(CLIPBOARD_OFFSET) + pattern(200 * KIB)
    whole = message(MessageType.CLIPBOARD, body)
    stream = chunk(whole[: 150 * KIB]) + chunk(whole[150 * KIB :]) + NEXT
    deframer = new_deframer(data_offset=clipboard_offset)
    deframer.feed(stream[:100])
    view = deframer.receive_buffer(4 * MIB)
    assert view is not None and len(view) == 150 * KIB - 100 + 8
    view.release()
    receive(deframer, stream[100:], [1 * MIB])  # reads as large as it likes
    assert summary(deframer.items) == [("message", 1, MessageType.CLIPBOARD, body), NEXT_ITEM]


def test_a_chunk_running_past_its_message_is_still_a_lost_sync() -> None:
    body = bytes(CLIPBOARD_OFFSET) + pattern(100 * KIB)
    stream = chunk(message(MessageType.CLIPBOARD, body) + bytes(70 * KIB)) + NEXT
    expected = deframe_every_way_large(stream)
    assert [i[0] for i in expected] == ["message", "error", "message"]


def deframe_every_way_large(stream: bytes) -> list[tuple[object, ...]]:
    """The items of ``stream`` fed, and received with reads of several sizes: the same."""
    expected, _ = run([stream], data_offset=clipboard_offset)
    for reads in ([999], [7 * KIB], [64 * KIB], [100, 1 * MIB], [4 * MIB]):
        deframer = new_deframer(data_offset=clipboard_offset)
        receive(deframer, stream, reads)
        assert summary(deframer.items) == expected, f"reads of {reads}"
    return expected


def test_a_guest_announcing_a_large_clipboard_costs_what_it_sends() -> None:
    """The buffer grows with the data, at most a step ahead of it: a header claiming 500 MiB
    followed by 100 KiB holds about 100 KiB plus one read, not 500 MiB."""
    deframer = new_deframer(max_message_size=512 * MIB, data_offset=clipboard_offset)
    header = message(MessageType.CLIPBOARD, b"", size=500 * MIB)
    stream = chunk(header + bytes(CLIPBOARD_OFFSET) + pattern(100 * KIB), size=20 + 500 * MIB)
    receive(deframer, stream, [16 * KIB], limit=64 * KIB)
    asm = deframer._assemblies[1]
    assert asm.body is not None and asm.body.receiving_tail
    assert deframer.buffered() == 20 + CLIPBOARD_OFFSET + 100 * KIB - 20
    assert len(asm.body._tail or b"") <= 100 * KIB + max(64 * KIB, asm.body.GROW)


@pytest.mark.parametrize("cut", [100, 80 * KIB, 1 * MIB - 5])
def test_a_snapshot_inside_a_received_buffer_continues_on_another_deframer(cut: int) -> None:
    body = bytes(CLIPBOARD_OFFSET) + pattern(1 * MIB)
    stream = framed(MessageType.CLIPBOARD, body) + NEXT
    before = new_deframer(data_offset=clipboard_offset, max_message_size=2 * MIB)
    receive(before, stream[:cut], [32 * KIB])
    state = json.loads(json.dumps(before.snapshot()))
    after = new_deframer(data_offset=clipboard_offset, max_message_size=2 * MIB)
    after.restore(state)
    assert after.buffered() == before.buffered()
    receive(after, stream[cut:], [48 * KIB])
    assert summary(before.items) + summary(after.items) == [
        ("message", 1, MessageType.CLIPBOARD, body), NEXT_ITEM
    ]


def test_received_into_refuses_more_than_was_offered() -> None:
    deframer = new_deframer(data_offset=clipboard_offset)
    with pytest.raises(LocalProtocolError):
        deframer.received_into(1)  # nothing offered
    deframer.feed(chunk(message(MessageType.CLIPBOARD, bytes(100 * KIB)))[:1000])
    view = deframer.receive_buffer(10)
    assert view is not None and len(view) == 10
    view.release()
    with pytest.raises(LocalProtocolError):
        deframer.received_into(100 * KIB)


@settings(deadline=None, max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 300 * KIB), min_size=1, max_size=4),
    reads=st.lists(st.integers(512, 200 * KIB), min_size=1, max_size=6),
    limit=st.sampled_from([1, 4 * KIB, 100 * KIB, 4 * MIB]),
)
def test_receiving_into_buffers_gives_what_feeding_gives(
    sizes: list[int], reads: list[int], limit: int
) -> None:
    stream = b"".join(
        framed(MessageType.CLIPBOARD, bytes(CLIPBOARD_OFFSET) + pattern(size, seed=n))
        + (NEXT if n % 2 else chunk(b"junk", port=7))
        for n, size in enumerate(sizes)
    )
    expected, _ = run([stream], data_offset=clipboard_offset)
    deframer = new_deframer(data_offset=clipboard_offset)
    receive(deframer, stream, reads, limit)
    assert summary(deframer.items) == expected
    assert deframer.buffered() == 0
