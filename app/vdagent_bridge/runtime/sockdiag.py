"""How many bytes the far end of a UNIX stream socket has not read yet.

At a live migration's switchover the source QEMU stops reading its agent socket; whatever we
wrote that it had not read is lost with it, and the guest, which carries on on the
destination, would see a gap in the stream (vdagentd then parses data as chunk headers,
logs "chunk size ... too large" and drops the host). Those bytes must go to the destination
first. ``SIOCOUTQ`` cannot say how many they are: for a UNIX socket it counts buffer memory,
not bytes. The kernel's sock_diag netlink interface can (what ``ss -x`` shows as Recv-Q): a
UNIX stream socket's data sits in its peer's receive queue, and the peer's queue length is
counted in bytes. This module asks it, with no privileges needed for one's own sockets.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
UDIAG_SHOW_PEER = 0x04
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_PEER = 2
UNIX_DIAG_RQLEN = 4
_NO_COOKIE = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_REQUEST = struct.Struct("=BBHIII2I")  # family, protocol, pad, states, inode, show, cookie
_MESSAGE = struct.Struct("=BBBBI2I")  # family, type, state, pad, inode, cookie
_ATTR = struct.Struct("=HH")  # length, type


def unread_by_peer(sock: socket.socket) -> int | None:
    """Bytes written on ``sock`` that its peer has not read, or None where that cannot be
    known (not a UNIX socket, no peer, no sock_diag in this kernel or sandbox)."""
    if sock.family != socket.AF_UNIX or sock.fileno() < 0:
        return None
    try:
        inode = os.fstat(sock.fileno()).st_ino
        peer = _query(inode, UDIAG_SHOW_PEER).get(UNIX_DIAG_PEER)
        if peer is None or len(peer) < 4:
            return None
        (peer_inode,) = struct.unpack_from("=I", peer)
        rqlen = _query(peer_inode, UDIAG_SHOW_RQLEN).get(UNIX_DIAG_RQLEN)
    except (OSError, struct.error):
        return None
    if rqlen is None or len(rqlen) < 8:
        return None
    unread, _ = struct.unpack_from("=II", rqlen)
    return int(unread)


def _query(inode: int, show: int) -> dict[int, bytes]:
    """The attributes sock_diag reports for one UNIX socket, by inode."""
    request = _REQUEST.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, show,
                            _NO_COOKIE, _NO_COOKIE)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY,
                            NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as link:
        link.settimeout(1.0)
        link.sendto(header + request, (0, 0))
        data = link.recv(65536)
    length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data)
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", data, _NLMSGHDR.size)
        raise OSError(-error, os.strerror(-error))
    attrs: dict[int, bytes] = {}
    pos = _NLMSGHDR.size + _MESSAGE.size
    end = min(length, len(data))
    while pos + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, pos)
        if size < _ATTR.size:
            break
        attrs[kind] = data[pos + _ATTR.size : pos + size]
        pos += (size + 3) & ~3
    return attrs
