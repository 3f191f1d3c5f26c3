"""Chunk framing: split outgoing messages into chunks, reassemble incoming ones.

Theory of operation
-------------------
On the wire every message (20-byte header + payload) travels as one or more chunks, each an
8-byte ``{port, size}`` header followed by ``size`` raw bytes of the message stream. A chunk
never carries bytes of two messages (protocol.md §1.4).

Outgoing (:func:`frame_message`): chunks carry at most ``MAX_CHUNK_DATA`` (2048) bytes, the limit
vdagentd enforces by closing the port, and always port 1, like QEMU.

Incoming (:class:`Deframer`): chunks of any size are accepted, because the Linux daemon sends a
whole message as one chunk, 10 MiB and more. A message header may be split across chunks, and
message reassembly is kept per port, as vdagentd does. Everything the guest controls is checked
*before* it is buffered:

- a chunk on a port we do not accept, or larger than the largest message we accept, is dropped
  without buffering (its bytes are skipped as they arrive);
- a message whose header claims more than ``max_message_size`` payload bytes, or whose protocol
  field is not 1, is dropped the same way, chunk by chunk, until its announced size has passed;
- a chunk holding more bytes than its message still needs ("lost sync" in vdagentd) ends that
  message and the rest of the chunk is dropped.

Each of these becomes a :class:`RemoteProtocolError` in the output queue, in stream order with
the completed messages, and the deframer carries on with the next chunk. So memory is bounded by
``max_message_size`` per accepted port plus the bytes the caller has not yet drained, and no
input can crash it. The whole state is plain data (:meth:`Deframer.snapshot`) so a
half-received message can move to another connection.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .constants import (
    CHUNK_HEADER_SIZE,
    MAX_CHUNK_DATA,
    MESSAGE_HEADER_SIZE,
    PROTOCOL_VERSION,
    Port,
)
from .errors import (
    ChunkError,
    ChunkLimitExceeded,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
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


def _base_size(view: memoryview) -> int:
    """Bytes of the buffer a view keeps alive."""
    base = view.obj
    return memoryview(base).nbytes if base is not None else view.nbytes


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


class Payload:
    """A received message payload, kept as the pieces it arrived in.

    The agent sends a whole clipboard as one chunk, which the socket delivers in reads; the
    pieces are views of those reads (or copies, for small or mutable ones), and the data is
    joined once, by whoever needs it: :meth:`tail` gives the bytes after a message's small
    head without first building the whole payload.

    A large message can instead be received *into* its payload: after :meth:`reserve_tail`,
    the bytes from an offset on (the data after the message's head) live in one buffer that
    the socket writes into (:meth:`writable`, :meth:`commit`), so the data is brought into
    memory once, where it stays, and :meth:`tail` hands that buffer over without a join.
    """

    __slots__ = ("_pieces", "_size", "_tail", "_tail_at", "_tail_filled", "_tail_size")

    #: Pieces smaller than this are copied into a shared buffer rather than kept as views, so
    #: a guest dribbling a message byte by byte costs bytes, not Python objects.
    COALESCE = 16 * 1024
    #: The tail buffer grows at least this much at a time (it never grows past the message,
    #: and by at most this much past what was received: a guest that announces a large
    #: message costs what it sends, not what it claims).
    GROW = 1024 * 1024

    def __init__(self) -> None:
        self._pieces: list[bytes | bytearray | memoryview] = []
        self._size = 0
        self._tail: bytearray | None = None  # see reserve_tail
        self._tail_at = 0  # where the tail buffer starts in the payload
        self._tail_filled = 0  # bytes of it received
        self._tail_size = 0  # bytes it will hold

    @classmethod
    def of(cls, data: bytes) -> Payload:
        payload = cls()
        payload.append(memoryview(data), owned=True)
        return payload

    def append(self, view: memoryview, *, owned: bool) -> None:
        """Add bytes. ``owned`` says the view's buffer is immutable and may be kept.

        A kept view holds its whole buffer alive, so it is kept only when it covers at least
        half of it: a guest that interleaves small pieces of a big message with other bytes in
        every read cannot make us retain far more than the message itself.
        """
        if not view:
            return
        if self._tail is not None:
            self.writable(len(view))[:] = view
            self.commit(len(view))
            return
        self._size += len(view)
        if owned and len(view) >= self.COALESCE and 2 * len(view) >= _base_size(view):
            self._pieces.append(view)
            return
        last = self._pieces[-1] if self._pieces else None
        if isinstance(last, bytearray) and len(last) < self.COALESCE:
            last += view
        else:
            self._pieces.append(bytearray(view))

    # -- receiving into the payload ---------------------------------------------------------

    @property
    def receiving_tail(self) -> bool:
        """Whether :meth:`reserve_tail` was called."""
        return self._tail is not None

    def reserve_tail(self, offset: int, size: int) -> None:
        """Keep the bytes from ``offset`` up to ``size`` (the payload's full size) in one
        buffer from now on. Bytes already held past ``offset`` move into it (a copy of at
        most one read); ``offset`` must already be held.

        :raises LocalProtocolError: ``offset`` is not held yet, is past ``size``, or a tail
            is already reserved.
        """
        if self._tail is not None or not 0 <= offset <= self._size <= size:
            raise LocalProtocolError(
                f"cannot reserve bytes {offset}..{size} of a payload holding {self._size}"
            )
        moved = self._split(offset)
        self._size = offset
        self._tail = bytearray()
        self._tail_at = offset
        self._tail_filled = 0
        self._tail_size = size - offset
        for piece in moved:
            self.append(memoryview(piece).cast("B"), owned=False)

    def writable(self, count: int) -> memoryview:
        """A writable view of the next bytes of the tail: ``count`` of them, or fewer if
        the payload ends first. Write into it, then :meth:`commit` what was written; do
        not keep the view (the buffer cannot grow while a view of it exists)."""
        tail = self._tail
        if tail is None:
            raise LocalProtocolError("no tail reserved")
        start = self._tail_filled
        end = min(start + count, self._tail_size)
        if end > len(tail):
            grow = min(max(end, len(tail) + self.GROW), self._tail_size) - len(tail)
            zeros = memoryview(_ZEROS)
            while grow:  # from a shared block of zeros: no temporary the size of the step
                step = min(grow, len(zeros))
                tail += zeros[:step]
                grow -= step
        return memoryview(tail)[start:end]

    def commit(self, count: int) -> None:
        """``count`` bytes were written at the start of the last :meth:`writable` view."""
        if self._tail is None or not 0 <= count <= len(self._tail) - self._tail_filled:
            raise LocalProtocolError(f"cannot commit {count} bytes")
        self._tail_filled += count
        self._size += count

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def _all(self) -> list[bytes | bytearray | memoryview]:
        """Every piece, the received part of the tail buffer last."""
        if self._tail is None:
            return self._pieces
        return [*self._pieces, memoryview(self._tail)[: self._tail_filled]]

    def _split(self, offset: int) -> list[bytes | bytearray | memoryview]:
        """Cut the pieces at ``offset``: keep what is before it, return what is after."""
        kept: list[bytes | bytearray | memoryview] = []
        rest: list[bytes | bytearray | memoryview] = []
        pos = 0
        for piece in self._pieces:
            end = pos + len(piece)
            if end <= offset:
                kept.append(piece)
            elif pos >= offset:
                rest.append(piece)
            else:
                kept.append(piece[: offset - pos])
                rest.append(piece[offset - pos :])
            pos = end
        self._pieces = kept
        return rest

    def head(self, count: int) -> bytes:
        """The first ``count`` bytes (a small copy)."""
        out = bytearray()
        for piece in self._all():
            if len(out) >= count:
                break
            out += piece[: count - len(out)]
        return bytes(out)

    def tail(self, offset: int) -> bytes | bytearray:
        """Everything from ``offset`` on, joined once. A complete tail buffer that starts at
        ``offset`` is handed over as it is (a bytearray: no copy)."""
        tail = self._tail
        if (
            tail is not None
            and offset == self._tail_at
            and self._tail_filled == self._tail_size == len(tail)
        ):
            return tail
        parts: list[bytes | bytearray | memoryview] = []
        skip = offset
        for piece in self._all():
            if skip >= len(piece):
                skip -= len(piece)
                continue
            parts.append(piece[skip:] if skip else piece)
            skip = 0
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return bytes(self.tail(0))


#: What a tail buffer grows by (read only: calloc'd pages that stay the kernel's zero page).
_ZEROS = bytes(Payload.GROW)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A reassembled message: its type and payload, not yet decoded."""

    port: int
    type: int
    body: Payload

    @property
    def payload(self) -> bytes:
        """The whole payload as bytes (joins the pieces)."""
        return bytes(self.body)


Item = RawMessage | RemoteProtocolError


class _Assembly:
    """Reassembly of one port's message stream (header, then body, or discarding)."""

    __slots__ = ("header", "msg_type", "body", "size", "discard")

    def __init__(self) -> None:
        self.header = bytearray()  # partial message header, < 20 bytes
        self.msg_type = 0
        self.body: Payload | None = None  # started once the header is valid
        self.size = 0  # the body's announced size
        self.discard = 0  # body bytes still to drop for a rejected message

    @property
    def idle(self) -> bool:
        return not self.header and self.body is None and self.discard == 0

    def buffered(self) -> int:
        return len(self.header) + (len(self.body) if self.body is not None else 0)


class Deframer:
    """Turns the guest's byte stream into :class:`RawMessage` items and errors.

    Call :meth:`feed` with bytes as they arrive and drain :attr:`items` (or :meth:`pop`) in
    order. Nothing here raises for bad input: errors are queued as items.
    """

    def __init__(
        self,
        *,
        max_message_size: int,
        ports: Iterable[int] = (Port.CLIENT,),
        max_chunk_size: int | None = None,
        data_offset: Callable[[int], int | None] | None = None,
    ) -> None:
        if max_message_size < 0:
            raise LocalProtocolError("max_message_size must not be negative")
        self.max_message_size = max_message_size
        self.ports = frozenset(int(p) for p in ports)
        #: Largest chunk accepted: unlimited by default (the agent sends one chunk per
        #: message); the guest simulator sets 2048, as vdagentd does.
        self.max_chunk_size = (
            max_message_size + MESSAGE_HEADER_SIZE if max_chunk_size is None else max_chunk_size
        )
        self.items: deque[Item] = deque()
        self._chunk_header = bytearray()  # partial chunk header, < 8 bytes
        self._chunk_port = 0
        self._chunk_left = 0  # payload bytes of the current chunk still to come
        self._chunk_skip = False  # the current chunk is being dropped
        self._assemblies: dict[int, _Assembly] = {}
        self._owned = False
        #: For a message type, where its bulk data starts in the payload (after a small
        #: head), or None: those messages may be received into their own buffer
        #: (:meth:`receive_buffer`).
        self.data_offset = data_offset

    # -- input -------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Consume ``data``; complete messages and errors are appended to :attr:`items`."""
        view = memoryview(data).cast("B")
        # Views of immutable input may be kept as message pieces without a copy.
        self._owned = isinstance(data, bytes) or (
            isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes)
        )
        pos = 0
        end = len(view)
        while pos < end:
            if self._chunk_left == 0:
                take = min(CHUNK_HEADER_SIZE - len(self._chunk_header), end - pos)
                self._chunk_header += view[pos : pos + take]
                pos += take
                if len(self._chunk_header) == CHUNK_HEADER_SIZE:
                    self._start_chunk()
                continue
            take = min(self._chunk_left, end - pos)
            if not self._chunk_skip:
                self._chunk_payload(view[pos : pos + take])
            pos += take
            self._chunk_left -= take
            if self._chunk_left == 0:
                self._chunk_skip = False

    def receive_buffer(self, limit: int) -> memoryview | None:
        """Where the next bytes of the stream may be written directly, or None.

        Inside a large message whose type has a :attr:`data_offset`, this is a writable view
        of the message's own buffer, at most ``limit`` bytes and never past the current chunk
        or the message: receive into it (``socket.recv_into``) and call
        :meth:`received_into` with the count. The message's data is then brought into memory
        once, not read into buffers and joined. Otherwise (headers, small or rejected
        messages, other types) it is None: :meth:`feed` the bytes.
        """
        if not self._chunk_left or self._chunk_skip or self.data_offset is None:
            return None
        asm = self._assemblies.get(self._chunk_port)
        if asm is None or asm.body is None or asm.discard:
            return None
        body = asm.body
        left = min(self._chunk_left, asm.size - len(body))
        if not body.receiving_tail:
            if left < self.DIRECT_MIN:
                return None
            offset = self.data_offset(asm.msg_type)
            if offset is None or len(body) < offset:
                return None
            body.reserve_tail(offset, asm.size)
        return body.writable(min(left, limit))

    def received_into(self, count: int) -> None:
        """``count`` bytes were written into the last :meth:`receive_buffer` view.

        :raises LocalProtocolError: no view was handed out, or more than it held.
        """
        asm = self._assemblies.get(self._chunk_port)
        if asm is None or asm.body is None or not asm.body.receiving_tail:
            raise LocalProtocolError("received_into without a receive buffer")
        if not 0 <= count <= min(self._chunk_left, asm.size - len(asm.body)):
            raise LocalProtocolError(f"received_into {count} bytes: more than was offered")
        asm.body.commit(count)
        self._chunk_left -= count
        if len(asm.body) == asm.size:
            self._complete(asm)
            self._after_message(asm, 0)

    #: Start receiving straight into a message (:meth:`receive_buffer`) only when at least
    #: this much of it is still to come in the current chunk; once started, the rest of it
    #: (in this chunk and the next) is received there too.
    DIRECT_MIN = 64 * 1024

    def _start_chunk(self) -> None:
        port, size = CHUNK_HEADER.unpack(self._chunk_header)
        self._chunk_header.clear()
        self._chunk_port = port
        self._chunk_left = size
        self._chunk_skip = False
        if port not in self.ports:
            self._chunk_skip = True
            self.items.append(ChunkError(f"chunk on unexpected port {port}"))
        elif size > self.max_chunk_size:
            self._chunk_skip = True
            # Whatever message this chunk belonged to has lost these bytes: drop it too.
            partial = self._assemblies.pop(port, None)
            self.items.append(
                ChunkLimitExceeded(
                    "chunk larger than the largest accepted",
                    limit=self.max_chunk_size,
                    actual=size,
                    message_type=partial.msg_type if partial and not partial.idle else None,
                )
            )
        if size == 0:
            self._chunk_skip = False

    def _assembly(self, port: int) -> _Assembly:
        asm = self._assemblies.get(port)
        if asm is None:
            asm = self._assemblies[port] = _Assembly()
        return asm

    def _chunk_payload(self, view: memoryview) -> None:
        """Feed part of the current chunk's payload into its port's message reassembly.

        ``self._chunk_left`` still counts all of ``view``, so ``self._chunk_left - pos`` is
        what the chunk holds after ``pos``, whether or not it has arrived yet.
        """
        asm = self._assembly(self._chunk_port)
        pos = 0
        end = len(view)
        while pos < end:
            if asm.discard:
                take = min(asm.discard, end - pos)
                asm.discard -= take
                pos += take
            elif asm.body is None:
                take = min(MESSAGE_HEADER_SIZE - len(asm.header), end - pos)
                asm.header += view[pos : pos + take]
                pos += take
                if len(asm.header) < MESSAGE_HEADER_SIZE:
                    continue
                self._start_message(asm)
                if asm.body is not None and asm.size == 0:
                    self._complete(asm)  # an empty message
            else:
                take = min(asm.size - len(asm.body), end - pos)
                asm.body.append(view[pos : pos + take], owned=self._owned)
                pos += take
                if len(asm.body) == asm.size:
                    self._complete(asm)
            if self._after_message(asm, pos):
                return

    def _after_message(self, asm: _Assembly, pos: int) -> bool:
        """Whether a message ended inside its chunk, ``pos`` bytes into what is left of it:
        the rest of the chunk is a lost sync, dropped."""
        if asm.idle and self._chunk_left > pos:
            self.items.append(
                ChunkError(
                    f"chunk holds {self._chunk_left - pos} bytes past the end of its message",
                    message_type=asm.msg_type,
                )
            )
            self._chunk_skip = True
            return True
        return False

    def _start_message(self, asm: _Assembly) -> None:
        protocol, msg_type, _opaque, size = MESSAGE_HEADER.unpack(asm.header)
        asm.header.clear()
        asm.msg_type = msg_type
        if protocol != PROTOCOL_VERSION:
            self.items.append(
                RemoteProtocolError(
                    f"message with protocol {protocol}, expected {PROTOCOL_VERSION}",
                    message_type=msg_type,
                )
            )
            asm.discard = size
        elif size > self.max_message_size:
            self.items.append(
                LimitExceeded(
                    "message larger than the configured limit",
                    limit=self.max_message_size,
                    actual=size,
                    message_type=msg_type,
                )
            )
            asm.discard = size
        else:
            asm.body = Payload()
            asm.size = size

    def _complete(self, asm: _Assembly) -> None:
        assert asm.body is not None
        self.items.append(RawMessage(self._chunk_port, asm.msg_type, asm.body))
        asm.body = None
        asm.size = 0

    # -- output ------------------------------------------------------------------------------

    def pop(self) -> Item | None:
        """The oldest queued message or error, or None when the queue is empty."""
        return self.items.popleft() if self.items else None

    def buffered(self) -> int:
        """Bytes held for incomplete chunks and messages (not counting queued items)."""
        return len(self._chunk_header) + sum(a.buffered() for a in self._assemblies.values())

    def reset(self) -> None:
        """Forget every partial chunk and message (a new, unrelated byte stream starts)."""
        self._chunk_header.clear()
        self._chunk_left = 0
        self._chunk_skip = False
        self._assemblies.clear()

    # -- snapshot ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The partial-input state as JSON-ready data (queued items are not included)."""
        return {
            "chunk_header": _b64(self._chunk_header),
            "chunk_port": self._chunk_port,
            "chunk_left": self._chunk_left,
            "chunk_skip": self._chunk_skip,
            "assemblies": {
                str(port): {
                    "header": _b64(a.header),
                    "type": a.msg_type,
                    "body": None if a.body is None else _b64(bytes(a.body)),
                    "size": None if a.body is None else a.size,
                    "discard": a.discard,
                }
                for port, a in self._assemblies.items()
                if not a.idle
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`. The state comes from our own file, but it is checked
        against the limits all the same: a corrupted file must not allocate unbounded memory.

        :raises LocalProtocolError: if the state is malformed or breaks a limit.
        """
        try:
            chunk_header = _unb64(state["chunk_header"])
            chunk_port = int(state["chunk_port"])
            chunk_left = int(state["chunk_left"])
            chunk_skip = bool(state["chunk_skip"])
            assemblies: dict[int, _Assembly] = {}
            for port_text, a in state["assemblies"].items():
                asm = _Assembly()
                asm.header = bytearray(_unb64(a["header"]))
                asm.msg_type = int(a["type"])
                asm.discard = int(a["discard"])
                if a["size"] is not None:
                    size = int(a["size"])
                    filled = _unb64(a["body"])
                    if size > self.max_message_size or len(filled) > size:
                        raise ValueError("partial message breaks the size limit")
                    asm.body = Payload.of(filled)
                    asm.size = size
                if len(asm.header) >= MESSAGE_HEADER_SIZE or asm.discard < 0:
                    raise ValueError("bad partial message header")
                assemblies[int(port_text)] = asm
            if len(chunk_header) >= CHUNK_HEADER_SIZE or not 0 <= chunk_left <= _U32_MAX:
                raise ValueError("bad partial chunk header")
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise LocalProtocolError(f"invalid framing snapshot: {err}") from err
        self._chunk_header = bytearray(chunk_header)
        self._chunk_port = chunk_port
        self._chunk_left = chunk_left
        self._chunk_skip = chunk_skip
        self._assemblies = assemblies


def _b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)
