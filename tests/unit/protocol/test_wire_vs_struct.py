"""The ``struct.Struct`` fast paths in ``wire`` equal their construct declarations.

The chunk and message headers, MOUSE_STATE and the FILE_XFER_DATA head are built and parsed
with ``struct`` on the hot path (construct is ~100× slower per header); construct holds the readable
declaration. These tests prove the two agree: same size, and any field values built with one
parse back to the same values with the other, both ways.
"""

from __future__ import annotations

import pytest
from construct import ConstError, Struct
from hypothesis import given, settings
from hypothesis import strategies as st

from vdagent_bridge.protocol import wire

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)

FAST = settings(max_examples=200, deadline=None)

#: The fixed head of FileXferData (id, size), without the variable data.
FILE_XFER_DATA_HEAD = Struct(*wire.FileXferData.subcons[:2])


def test_chunk_header_sizes_agree() -> None:
    assert wire.ChunkHeader.sizeof() == wire.CHUNK_HEADER.size == 8


def test_message_header_sizes_agree() -> None:
    assert wire.MessageHeader.sizeof() == wire.MESSAGE_HEADER.size == 20


def test_mouse_state_sizes_agree() -> None:
    # MouseState ends with Terminated, which has no size: measure its fields.
    assert Struct(*wire.MouseState.subcons[:-1]).sizeof() == wire.MOUSE_STATE.size == 13


def test_file_xfer_data_header_sizes_agree() -> None:
    assert FILE_XFER_DATA_HEAD.sizeof() == wire.FILE_XFER_DATA_HEADER.size == 12


@FAST
@given(port=u32, size=u32)
def test_chunk_header_struct_and_construct_agree(port: int, size: int) -> None:
    built = wire.CHUNK_HEADER.pack(port, size)
    assert wire.ChunkHeader.build({"port": port, "size": size}) == built
    parsed = wire.ChunkHeader.parse(built)
    assert (parsed.port, parsed.size) == wire.CHUNK_HEADER.unpack(built) == (port, size)


@FAST
@given(msg_type=u32, opaque=u64, size=u32)
def test_message_header_struct_and_construct_agree(msg_type: int, opaque: int, size: int) -> None:
    built = wire.MESSAGE_HEADER.pack(1, msg_type, opaque, size)
    assert wire.MessageHeader.build({"type": msg_type, "opaque": opaque, "size": size}) == built
    parsed = wire.MessageHeader.parse(built)
    assert (parsed.protocol, parsed.type, parsed.opaque, parsed.size) == (
        1,
        msg_type,
        opaque,
        size,
    )
    assert wire.MESSAGE_HEADER.unpack(built) == (1, msg_type, opaque, size)


@FAST
@given(protocol=u32.filter(lambda p: p != 1), msg_type=u32, size=u32)
def test_message_header_declaration_requires_protocol_1(
    protocol: int, msg_type: int, size: int
) -> None:
    # struct reads any protocol number (the deframer checks it); the declaration states it.
    built = wire.MESSAGE_HEADER.pack(protocol, msg_type, 0, size)
    assert wire.MESSAGE_HEADER.unpack(built)[0] == protocol
    with pytest.raises(ConstError):
        wire.MessageHeader.parse(built)


@FAST
@given(x=u32, y=u32, buttons=u32, display_id=u8)
def test_mouse_state_struct_and_construct_agree(
    x: int, y: int, buttons: int, display_id: int
) -> None:
    fields = {"x": x, "y": y, "buttons": buttons, "display_id": display_id}
    built = wire.MOUSE_STATE.pack(x, y, buttons, display_id)
    assert wire.MouseState.build(fields) == built
    parsed = wire.MouseState.parse(built)
    assert (parsed.x, parsed.y, parsed.buttons, parsed.display_id) == (x, y, buttons, display_id)
    assert wire.MOUSE_STATE.unpack(wire.MouseState.build(fields)) == (x, y, buttons, display_id)


@FAST
@given(transfer_id=u32, data=st.binary(max_size=64))
def test_file_xfer_data_header_struct_and_construct_agree(transfer_id: int, data: bytes) -> None:
    built = wire.FILE_XFER_DATA_HEADER.pack(transfer_id, len(data)) + data
    assert wire.FileXferData.build({"id": transfer_id, "data": data}) == built
    parsed = wire.FileXferData.parse(built)
    assert (parsed.id, parsed.size, parsed.data) == (transfer_id, len(data), data)
    head = wire.FileXferData.build({"id": transfer_id, "data": data})[:12]
    assert wire.FILE_XFER_DATA_HEADER.unpack(head) == (transfer_id, len(data))


@FAST
@given(transfer_id=u32, size=u64)
def test_file_xfer_data_head_parses_any_size(transfer_id: int, size: int) -> None:
    # The u64 size field over its whole range, without building that much data (the
    # declaration rebuilds ``size`` from the data, so only parsing can take any value).
    built = wire.FILE_XFER_DATA_HEADER.pack(transfer_id, size)
    parsed = FILE_XFER_DATA_HEAD.parse(built)
    assert (parsed.id, parsed.size) == (transfer_id, size)
