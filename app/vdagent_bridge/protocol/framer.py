"""Outgoing chunk framing: one message split into the chunks that carry it to the guest.

Theory of operation
-------------------
On the wire every message (20-byte header + payload) travels as one or more chunks, each an
8-byte ``{port, size}`` header followed by ``size`` raw bytes of the message stream. A chunk
never carries bytes of two messages (docs/protocol.md §2.4).

Outgoing chunks carry at most ``MAX_CHUNK_DATA`` (2048) bytes, the limit vdagentd enforces by
closing the port, and always port 1, like QEMU. A message is framed in one of two ways:

- :func:`frame` (and :func:`frame_message`, which appends to a buffer): the whole framed
  message as one bytes object, built with a single ``join``: small messages, and whatever
  must be bytes;
- :class:`FramedMessage`: the same bytes *lazily*, as chunk headers and slices of the
  caller's body, produced only for the byte range a writer asks for, so a large body goes to
  ``sendmsg`` without ever being copied.

Incoming chunks are the deframer's (:mod:`.deframer`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .constants import (
    CHUNK_HEADER_SIZE,
    MAX_CHUNK_DATA,
    MESSAGE_HEADER_SIZE,
    PROTOCOL_VERSION,
    Port,
)
from .errors import LocalProtocolError
from .wire import CHUNK_HEADER, MESSAGE_HEADER

_U32_MAX = 0xFFFFFFFF


def frame(
    msg_type: int,
    payload: bytes | bytearray | memoryview,
    tail: bytes | bytearray | memoryview = b"",
    *,
    port: int = Port.CLIENT,
    max_chunk: int = MAX_CHUNK_DATA,
) -> bytes:
    """One message (payload + tail) split into chunks of at most ``max_chunk`` bytes.

    The payload is given in two parts so a large body (clipboard data, file data) is never
    concatenated with its small head: the framed message is built with a single ``join``, the
    only copy of the data the engine makes on the way out.

    :raises LocalProtocolError: if the payload does not fit the u32 size field.
    """
    size = len(payload) + len(tail)
    if max_chunk < 1:
        raise LocalProtocolError(f"chunk size must be positive, not {max_chunk}")
    if size > _U32_MAX - MESSAGE_HEADER_SIZE:
        raise LocalProtocolError(f"message payload of {size} bytes does not fit a u32 size")
    header = MESSAGE_HEADER.pack(PROTOCOL_VERSION, msg_type, 0, size)
    total = MESSAGE_HEADER_SIZE + size
    if total <= max_chunk:
        return b"".join((CHUNK_HEADER.pack(port, total), header, payload, tail))
    # The first chunk is the message header, the small payload and the start of the tail;
    # every later chunk is a chunk header and a slice of the tail (no copy until the join).
    head = b"".join((header, payload))
    if len(head) > max_chunk:  # a long non-data payload (a long file name, say)
        tail = b"".join((head[max_chunk:], tail))
        head = head[:max_chunk]
    body = memoryview(tail)
    first = max_chunk - len(head)
    full = CHUNK_HEADER.pack(port, max_chunk)
    # Full chunks share one header object; the list of (header, slice) pairs is filled with
    # slice assignments so the per-chunk work stays in C (32768 chunks for 64 MiB).
    starts = range(first, len(body), max_chunk)
    pieces: list[bytes | memoryview] = [body[start : start + max_chunk] for start in starts]
    parts: list[bytes | memoryview] = [full, head, body[:first]]
    parts += [full] * (2 * len(pieces))
    parts[4::2] = pieces
    if pieces and len(pieces[-1]) != max_chunk:
        parts[-2] = CHUNK_HEADER.pack(port, len(pieces[-1]))
    return b"".join(parts)


class FramedMessage:
    """One message framed into chunks *lazily*: the wire bytes as buffers, never joined.

    :func:`frame` copies a large body once, behind its chunk headers. A writer that can send
    a list of buffers (``sendmsg``) needs no copy at all: this object hands out, for any byte
    range of the framed message, the chunk headers and memoryview slices of the caller's
    body that make it up. The first chunk (message header, the small head and the start of
    the body) is built at once; every later chunk is an 8-byte header and a slice of
    ``tail``, produced only when asked for. The body is kept alive (not copied) until the
    message is sent.
    """

    __slots__ = ("_body", "_first", "_full", "_max_chunk", "_port", "size")

    def __init__(
        self,
        msg_type: int,
        payload: bytes | bytearray | memoryview,
        tail: bytes | bytearray | memoryview,
        *,
        port: int = Port.CLIENT,
        max_chunk: int = MAX_CHUNK_DATA,
    ) -> None:
        size = len(payload) + len(tail)
        if max_chunk < 1:
            raise LocalProtocolError(f"chunk size must be positive, not {max_chunk}")
        if size > _U32_MAX - MESSAGE_HEADER_SIZE:
            raise LocalProtocolError(f"message payload of {size} bytes does not fit a u32 size")
        head = b"".join((MESSAGE_HEADER.pack(PROTOCOL_VERSION, msg_type, 0, size), payload))
        body = memoryview(tail).cast("B")
        if len(head) > max_chunk:  # a long head: rare, and small enough to copy
            body = memoryview(b"".join((head[max_chunk:], body)))
            head = head[:max_chunk]
        first = min(max_chunk - len(head), len(body))
        self._first = b"".join(
            (CHUNK_HEADER.pack(port, len(head) + first), head, body[:first])
        )
        self._body = body[first:]
        self._port = port
        self._max_chunk = max_chunk
        self._full = CHUNK_HEADER.pack(port, max_chunk)
        chunks = -(-len(self._body) // max_chunk)
        #: Bytes on the wire.
        self.size = len(self._first) + len(self._body) + CHUNK_HEADER_SIZE * chunks

    def __len__(self) -> int:
        return self.size

    def buffers(
        self, offset: int, limit: int, max_buffers: int
    ) -> list[bytes | memoryview]:
        """Buffers holding the wire bytes from ``offset`` on: at least ``limit`` bytes (or
        up to the end) unless ``max_buffers`` (>= 2) comes first."""
        return self.buffers_counted(offset, limit, max_buffers)[0]

    def buffers_counted(
        self, offset: int, limit: int, max_buffers: int
    ) -> tuple[list[bytes | memoryview], int]:
        """:meth:`buffers` and how many bytes they hold (counted without a pass over them)."""
        out: list[bytes | memoryview] = []
        if offset < len(self._first):
            out.append(memoryview(self._first)[offset:] if offset else self._first)
            got = len(self._first) - offset
            offset = 0
        else:
            got = 0
            offset -= len(self._first)
        body, step, hdr = self._body, self._max_chunk, CHUNK_HEADER_SIZE
        stride = step + hdr
        index, within = divmod(offset, stride)
        start = index * step
        if within and start < len(body):  # resume inside a chunk
            end = min(start + step, len(body))
            if within < hdr:
                out.append(self._header(end - start)[within:])
                out.append(body[start:end])
            else:
                out.append(body[start + within - hdr : end])
            got += len(out[-1]) + (hdr - within if within < hdr else 0)
            start = end
        # Whole chunks: as many as the limits allow, built in C (list slices) not per chunk.
        room = min((limit - got + stride - 1) // stride, (max_buffers - len(out)) // 2)
        stop = min(len(body), start + max(room, 0) * step)
        if stop > start:
            count = -(-(stop - start) // step)
            window = body[start:stop]
            parts: list[bytes | memoryview] = [self._full] * (2 * count)
            parts[1::2] = map(window.__getitem__, _chunk_slices(step, count))
            last = (stop - start) - (count - 1) * step
            if last != step:
                parts[-2] = self._header(last)
            out += parts
            got += stop - start + hdr * count
        return out, got

    def _header(self, size: int) -> bytes:
        return self._full if size == self._max_chunk else CHUNK_HEADER.pack(self._port, size)


_SLICES: dict[int, tuple[slice, ...]] = {}
#: Slices kept per chunk size: the most buffers one ``sendmsg`` takes, over two.
_SLICES_KEPT = 512


def _chunk_slices(step: int, count: int) -> Sequence[slice]:
    """``count`` consecutive slices of ``step`` bytes from 0: the same for every window of a
    body, so kept rather than built per chunk (a 64 MiB clipboard is 32,768 chunks; making
    their slices in Python was a quarter of the cost of sending it)."""
    if count > _SLICES_KEPT:
        return [slice(pos, pos + step) for pos in range(0, count * step, step)]
    kept = _SLICES.get(step)
    if kept is None:
        kept = _SLICES[step] = tuple(
            slice(pos, pos + step) for pos in range(0, _SLICES_KEPT * step, step)
        )
    return kept[:count] if count < _SLICES_KEPT else kept


def frame_message(
    out: bytearray,
    msg_type: int,
    payload: bytes | bytearray | memoryview,
    *,
    port: int = Port.CLIENT,
    max_chunk: int = MAX_CHUNK_DATA,
) -> None:
    """Append one framed message to ``out`` (see :func:`frame`)."""
    out += frame(msg_type, payload, port=port, max_chunk=max_chunk)
