"""The received payload of one message: the zero-copy half of the receive path.

The deframer (:mod:`.deframer`) appends views of the caller's reads to a :class:`Payload`
instead of joining them, and a large message can be received straight into the buffer its data
is handed over in; the codec then takes the message's small head and its data apart without
building the whole payload first (:meth:`Payload.head`, :meth:`Payload.tail`).
"""

from __future__ import annotations

from .errors import LocalProtocolError


def _base_size(view: memoryview) -> int:
    """Bytes of the buffer a view keeps alive."""
    base = view.obj
    return memoryview(base).nbytes if base is not None else view.nbytes


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

