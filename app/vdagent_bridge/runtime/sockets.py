"""Opening an endpoint: a connected, non-blocking socket on the running asyncio loop."""

from __future__ import annotations

import asyncio
import socket

from ..sites import Endpoint


async def open_endpoint(endpoint: Endpoint) -> socket.socket:
    """Connect a non-blocking socket to ``endpoint`` (TCP without Nagle's delay: the
    protocol's messages are small and interactive).

    :raises OSError: the endpoint is missing, refused, unreachable (retryable by the
        caller's policy) or not ours to open (PermissionError: fatal).
    """
    loop = asyncio.get_running_loop()
    if endpoint.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, endpoint.path)
        except BaseException:
            sock.close()
            raise
        return sock
    infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {endpoint.host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except OSError as err:
            sock.close()
            error = err
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error
