"""What libvirt hosts have: their domains, in what state, with what agent channel; and the
start-up check of a VM's libvirt sites.

Synchronous and short (a connection opened and closed per call): used by the command line
before any event loop runs (``--list-vms``, the checks that make a mistake one line and exit
status 2), never by the running app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...sites import LibvirtSite
from . import api

#: libvirt's virDomainState, in words.
STATES = {0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down",
          5: "shut off", 6: "crashed", 7: "suspended"}
#: What ``--list-vms`` looks at without ``--libvirt``: the session and, where it can be
#: opened, the system connection.
DEFAULT_URIS = ("qemu:///session", "qemu:///system")


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """One domain of a host, for listing."""

    uri: str
    name: str
    state: str
    channel: api.AgentChannel

    def line(self) -> str:
        """One line: name, state, the agent channel (tab-separated, then the URI)."""
        return f"{self.name}\t{self.state}\t{self.channel.describe()}\t{self.uri}"


def _open(uri: str) -> object:
    return api.connect(uri)


def list_domains(uri: str) -> list[DomainInfo]:
    """Every domain of the host at ``uri``, by name.

    :raises LibvirtError: the host cannot be reached.
    :raises LibvirtUnavailable: no libvirt-python.
    """
    lv = api.load()
    conn = _open(uri)
    try:
        found = []
        for domain in conn.listAllDomains(0):  # type: ignore[attr-defined]
            try:
                state = STATES.get(domain.state()[0], "unknown")
                flags = 0 if domain.isActive() else lv.VIR_DOMAIN_XML_INACTIVE
                channel = api.agent_channel(domain.XMLDesc(flags))
                found.append(DomainInfo(uri, domain.name(), state, channel))
            except lv.libvirtError:
                continue  # it went away while we looked
        return sorted(found, key=lambda info: info.name)
    finally:
        conn.close()  # type: ignore[attr-defined]


def check_sites(vm: str, sites: Sequence[LibvirtSite]) -> None:
    """At start-up: every host reachable, the domain defined on one of them at least, and its
    agent channel usable there.

    :raises LibvirtError: the first problem, in one line.
    :raises LibvirtUnavailable: no libvirt-python.
    """
    lv = api.load()
    found: list[tuple[LibvirtSite, api.AgentChannel]] = []
    for site in sites:
        conn = _open(site.uri)
        try:
            try:
                domain = conn.lookupByName(site.domain)  # type: ignore[attr-defined]
            except lv.libvirtError as err:
                if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                    continue  # a migration destination: the domain arrives with it
                raise api.error_of(err, f"cannot look up {site}") from err
            flags = 0 if domain.isActive() else lv.VIR_DOMAIN_XML_INACTIVE
            found.append((site, api.agent_channel(domain.XMLDesc(flags))))
        finally:
            conn.close()  # type: ignore[attr-defined]
    if not found:
        where = ", ".join(site.uri for site in sites)
        name = sites[0].domain if sites else vm
        raise api.LibvirtError(2, f"VM {vm}: no domain {name} on {where}")
    for site, channel in found:
        if not channel.usable:
            raise api.LibvirtError(2, f"VM {vm}: domain {site.domain} on {site.uri} has "
                                   f"{channel.describe()}")
