"""A domain's agent channel through libvirt: a non-blocking ``virStream`` as a Transport.

libvirt relays the channel's bytes over its own connection (``virDomainOpenChannel``), so the
bridge reaches a ``qemu:///system`` domain whose socket belongs to ``libvirt-qemu``, and a
domain on another host, the same way. The stream is driven from the asyncio loop through
libvirt-python's ``libvirtaio`` event implementation (runtime/libvirt/api.py registers it):
one stream callback, whose event mask is what the connection currently waits for (readable
while the reader waits, writable while output is pending; errors and hang-ups always).

What a stream cannot tell: how much of what was written the peer has not read yet (libvirt
and the daemon buffer it), so :meth:`StreamTransport.unread_by_peer` is None and a
migration's carry-over of unread bytes is not possible through libvirt (the switchover holds
our output from the migration's start instead, so little can be in flight). A stream has no
``recv_into``: a large clipboard costs one copy more than through a socket.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from ..transport import Buffers

#: Bytes joined for one ``virStreamSend`` at most (libvirt takes bytes, not buffers).
SEND_SIZE = 256 * 1024


class StreamTransport:
    """A libvirt channel stream (see :class:`~vdagent_bridge.runtime.transport.Transport`)."""

    def __init__(self, libvirt: Any, stream: Any) -> None:
        self._lv = libvirt
        self._stream = stream
        self._on_read: Callable[[], None] | None = None
        self._on_write: Callable[[], None] | None = None
        #: A byte read by :meth:`peek`, handed out first.
        self._pending = b""
        self._eof = False
        self._closed = False
        self._mask = 0
        self._registered = False

    @property
    def retain(self) -> int:
        return 0  # what the peer left unread cannot be known: nothing to keep for it

    @property
    def knows_send_queue(self) -> bool:
        return False

    # ---------------------------------------------------------------- data

    def send(self, buffers: Buffers) -> int:
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "the libvirt stream is closed")
        data = bytearray()
        for buf in buffers:
            if len(data) >= SEND_SIZE:
                break
            data += buf[: SEND_SIZE - len(data)]
        try:
            sent = self._stream.send(bytes(data))
        except self._lv.libvirtError as err:
            raise BrokenPipeError(errno.EPIPE, _said(err)) from err
        if sent == -2:
            raise BlockingIOError
        if sent < 0:
            raise BrokenPipeError(errno.EPIPE, "the libvirt stream failed")
        return int(sent)

    def recv(self, size: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._eof or self._closed:
            return b""
        try:
            data = self._stream.recv(size)
        except self._lv.libvirtError as err:
            raise ConnectionResetError(errno.ECONNRESET, _said(err)) from err
        if data == -2:
            raise BlockingIOError
        if isinstance(data, int):
            raise ConnectionResetError(errno.ECONNRESET, "the libvirt stream failed")
        if not data:
            self._eof = True
        return bytes(data)

    def recv_into(self, view: memoryview) -> int:
        data = self.recv(len(view))
        view[: len(data)] = data
        return len(data)

    def peek(self) -> bytes | None:
        if self._pending:
            return self._pending
        try:
            data = self.recv(1)
        except BlockingIOError:
            return None
        self._pending = data
        return data

    # ---------------------------------------------------------------- events

    def on_readable(self, callback: Callable[[], None] | None) -> None:
        self._on_read = callback
        self._update()

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        self._on_write = callback
        self._update()

    def _update(self) -> None:
        if self._closed:
            return
        lv = self._lv
        mask = 0
        if self._on_read is not None:
            mask |= (lv.VIR_STREAM_EVENT_READABLE | lv.VIR_STREAM_EVENT_ERROR
                     | lv.VIR_STREAM_EVENT_HANGUP)
        if self._on_write is not None:
            mask |= lv.VIR_STREAM_EVENT_WRITABLE | lv.VIR_STREAM_EVENT_ERROR
        if mask == self._mask and self._registered:
            return
        try:
            if not self._registered:
                self._stream.eventAddCallback(mask, self._event, None)
                self._registered = True
            else:
                self._stream.eventUpdateCallback(mask)
        except self._lv.libvirtError:
            return  # the stream is gone: the next send or recv says so
        self._mask = mask

    def _event(self, _stream: Any, events: int, _opaque: object) -> None:
        lv = self._lv
        if events & lv.VIR_STREAM_EVENT_WRITABLE and self._on_write is not None:
            self._on_write()
        readable = (lv.VIR_STREAM_EVENT_READABLE | lv.VIR_STREAM_EVENT_ERROR
                    | lv.VIR_STREAM_EVENT_HANGUP)
        if events & readable:
            if events & (lv.VIR_STREAM_EVENT_ERROR | lv.VIR_STREAM_EVENT_HANGUP):
                self._eof = self._eof or not events & lv.VIR_STREAM_EVENT_READABLE
            callback = self._on_read or self._on_write
            if callback is not None:
                callback()

    def hang_up(self) -> None:
        """The libvirt connection under the stream closed (runtime/libvirt/api.py Hosts):
        from now on the stream reads as ended, and whoever waits on it hears so."""
        if self._closed or self._eof:
            return
        self._eof = True
        callback = self._on_read or self._on_write
        if callback is not None:
            callback()

    # ---------------------------------------------------------------- queue, close

    def send_queue(self) -> int:
        return 0  # not known: libvirt buffers it (see the module docstring)

    def unread_by_peer(self) -> int | None:
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_read = self._on_write = None
        stream = self._stream
        try:
            if self._registered:
                stream.eventRemoveCallback()
        except self._lv.libvirtError:
            pass
        try:
            stream.abort()
        except self._lv.libvirtError:
            pass


def _said(err: Any) -> str:
    """libvirt's own words for an error, on one line."""
    message = err.get_error_message() if hasattr(err, "get_error_message") else str(err)
    return " ".join(str(message or err).split())
