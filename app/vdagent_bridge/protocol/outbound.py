"""The output queue: framed messages waiting for the writer, handed out without a join.

Theory of operation
-------------------
Every message for the guest is encoded and framed when it is queued, and waits here, oldest
first, until the writer takes it. The writer either takes everything at once, joined
(:meth:`Outbound.data_to_send`), or, to write only as fast as the peer reads, the first bytes
as a list of buffers (:meth:`Outbound.pending_output`) and then reports how many the socket
took (:meth:`Outbound.consume_output`).

Nothing is joined on the second path. The queue holds two kinds of item:

- ``bytes``: a small message framed by :func:`~.framer.frame`, or a MOUSE_STATE frame packed
  by the pointer's fast path (:mod:`.mouse`);
- :class:`~.framer.FramedMessage`: a message whose data is at least :attr:`Outbound.LAZY_FRAMING`
  bytes, framed lazily, so its chunks are headers and slices of the caller's bytes and the
  data goes to ``sendmsg`` as it is, never copied behind its chunk headers.

The first ``_offset`` bytes of the first item are already sent; :attr:`Outbound.size` counts
what is left, for back-pressure.
"""

from __future__ import annotations

from collections import deque

from . import codec
from .codec import WireFormat
from .errors import LocalProtocolError
from .framer import FramedMessage, frame
from .messages import Message


class Outbound:
    """The bytes queued for the guest. See the module docstring."""

    #: Bodies at least this large are framed lazily (:class:`FramedMessage`): sent as slices
    #: of the caller's bytes, never copied behind their chunk headers.
    LAZY_FRAMING = 16 * 1024

    __slots__ = ("_items", "_offset", "_size")

    def __init__(self) -> None:
        self._items: deque[bytes | FramedMessage] = deque()
        self._offset = 0
        self._size = 0

    @property
    def size(self) -> int:
        """How many bytes are queued and not yet consumed."""
        return self._size

    def send(self, msg: Message, fmt: WireFormat) -> None:
        """Encode ``msg`` in ``fmt``, frame it and queue it.

        :raises LocalProtocolError: the message cannot be encoded; nothing is queued.
        """
        msg_type, head, tail = codec.encode_parts(msg, fmt)
        if len(tail) >= self.LAZY_FRAMING:
            self.push(FramedMessage(msg_type, head, tail))
        else:
            self.push(frame(msg_type, head, tail))

    def push(self, data: bytes | FramedMessage) -> None:
        """Queue bytes that are already framed (one or more whole messages)."""
        self._items.append(data)
        self._size += len(data)

    def clear(self) -> None:
        """Drop everything queued (the connection it was for is gone)."""
        self._items.clear()
        self._offset = self._size = 0

    def data_to_send(self) -> bytes:
        """All queued bytes, in order, joined; the queue is emptied."""
        items = self._items
        if len(items) == 1 and not self._offset and isinstance(items[0], bytes):
            data = items[0]  # one small message: handed over as it is
        else:
            data = self.queued_bytes()
        self.consume_output(self._size)
        return data

    def queued_bytes(self) -> bytes:
        """All queued bytes, joined, left in the queue (what a snapshot carries)."""
        return b"".join(self.pending_output(self._size, 2 * self._size + 2))

    def pending_output(
        self, limit: int = 1 << 20, max_buffers: int = 1024
    ) -> list[bytes | memoryview]:
        """The first queued bytes as a list of buffers, without copying or dequeuing them.

        At least ``limit`` bytes (or all that is queued) unless ``max_buffers`` (>= 2) comes
        first. Write them, then call :meth:`consume_output` with how many the socket took.
        """
        out: list[bytes | memoryview] = []
        got = 0
        offset = self._offset
        for item in self._items:
            if got >= limit or len(out) >= max_buffers - 1:
                break
            if isinstance(item, bytes):
                out.append(memoryview(item)[offset:] if offset else item)
                got += len(item) - offset
            else:
                parts, size = item.buffers_counted(offset, limit - got, max_buffers - len(out))
                out += parts
                got += size
            offset = 0
        return out

    def consume_output(self, count: int) -> None:
        """Drop the first ``count`` queued bytes: the writer sent them.

        :raises LocalProtocolError: more than is queued.
        """
        if not 0 <= count <= self._size:
            raise LocalProtocolError(f"cannot consume {count} of {self._size} bytes")
        self._size -= count
        count += self._offset
        items = self._items
        while items and count >= len(items[0]):
            count -= len(items.popleft())
        self._offset = count
