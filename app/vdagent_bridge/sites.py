"""Where a VM runs, as plain values: endpoints and sites.

A VM is one or more *sites*, the places that may run it (the source and the destinations of a
live migration): a QEMU process with its agent port and optionally a QMP monitor
(:class:`Site`), or a libvirt connection, a host, on which the VM is a domain
(:class:`LibvirtSite`). These are values only, parsed from the command line and the
configuration file (``state.config``) and opened by the runtime; so both depend on this
module and neither on the other.
"""

from __future__ import annotations

import re
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


#: A libvirt connection URI: ``driver[+transport]://[user@][host][:port]/[path][?params]``.
_LIBVIRT_URI = re.compile(r"^[a-z][a-z0-9]*(\+[a-z0-9]+)?://[^\s]*$")
#: The guest agent's channel name, which a libvirt domain's channel must carry.
AGENT_CHANNEL = "com.redhat.spice.0"


@dataclass(frozen=True, slots=True)
class LibvirtSite:
    """One libvirt connection (a host: ``qemu:///session``, ``qemu:///system``,
    ``qemu+ssh://host/system``) on which the VM is the domain ``domain``. The bridge talks
    to the domain's ``com.redhat.spice.0`` channel through libvirt, and follows its
    migrations through libvirt's events."""

    uri: str
    domain: str

    #: No QMP monitor: libvirt keeps QEMU's to itself.
    qmp = None

    @classmethod
    def parse(cls, uri: str, domain: str) -> LibvirtSite:
        """Check the URI's form and the domain name (libvirt itself checks the rest when it
        connects).

        :raises EndpointError: with a message fit for the user.
        """
        if not _LIBVIRT_URI.match(uri):
            raise EndpointError(f"libvirt URI {uri!r}: expected driver://..., such as "
                                f"qemu:///session, qemu:///system or qemu+ssh://host/system")
        if not domain or domain != domain.strip() or any(c < " " for c in domain):
            raise EndpointError(f"libvirt domain {domain!r}: expected a domain name")
        return cls(uri, domain)

    def __str__(self) -> str:
        return f"{self.domain} on {self.uri}"


#: Any site of a VM.
VmSite = Site | LibvirtSite


def describe(site: VmSite) -> str:
    """Where a site is, in words: its agent port, or its domain and libvirt connection."""
    return str(site.agent) if isinstance(site, Site) else str(site)
