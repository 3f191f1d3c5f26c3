"""Where a VM runs, as plain values: endpoints and sites.

A VM is one or more *sites*: the QEMU processes that may run it (the source and the
destinations of a live migration), each with its agent port and optionally a QMP monitor.
These are values only, parsed from the command line and the configuration file
(``state.config``) and opened by the runtime (``runtime.sockets``); so both depend on this
module and neither on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol.errors import VDAgentError


class EndpointError(VDAgentError, ValueError):
    """An endpoint string that cannot be used; the message is one readable line."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a guest agent port (or a QMP monitor) listens: ``unix:PATH`` or ``tcp:HOST:PORT``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``unix:/path/to/sock`` or ``tcp:host:port`` (IPv6 hosts in brackets).

        :raises EndpointError: with a message fit for the user.
        """
        scheme, sep, rest = text.partition(":")
        if not sep or not rest:
            raise EndpointError(f"endpoint {text!r}: expected unix:PATH or tcp:HOST:PORT")
        if scheme == "unix":
            return cls("unix", path=rest)
        if scheme == "tcp":
            host, sep, port_text = rest.rpartition(":")
            host = host.strip("[]")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise EndpointError(
                    f"endpoint {text!r}: expected tcp:HOST:PORT with a port 1-65535"
                )
            return cls("tcp", host=host, port=int(port_text))
        raise EndpointError(f"endpoint {text!r}: unknown scheme {scheme!r} (use unix: or tcp:)")

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Site:
    """One QEMU process that may run the VM: its agent port and optional QMP monitor (with
    which its migrations can be followed)."""

    agent: Endpoint
    qmp: Endpoint | None = None
