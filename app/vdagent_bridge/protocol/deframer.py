"""Incoming chunk framing: the guest's byte stream reassembled into messages.

Theory of operation
-------------------
On the wire every message (20-byte header + payload) travels as one or more chunks, each an
8-byte ``{port, size}`` header followed by ``size`` raw bytes of the message stream. A chunk
never carries bytes of two messages (docs/protocol.md §2.4).

The :class:`Deframer` accepts chunks of any size, because the Linux daemon sends a whole
message as one chunk, 10 MiB and more. A message header may be split across chunks, and
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

Payloads are kept as the pieces they arrived in (:class:`~.payload.Payload`), not joined; a
large message may be received straight into its own buffer (:meth:`Deframer.receive_buffer`).
Outgoing chunks are the framer's (:mod:`.framer`).
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .constants import CHUNK_HEADER_SIZE, MESSAGE_HEADER_SIZE, PROTOCOL_VERSION, Port
from .errors import (
    ChunkError,
    ChunkLimitExceeded,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from .payload import Payload
from .wire import CHUNK_HEADER, MESSAGE_HEADER

_U32_MAX = 0xFFFFFFFF


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
