"""Opening a link: a connection to a site's agent port, whatever the site's kind.

A QEMU site is reached at its agent socket (``unix:`` or ``tcp:``); a libvirt site through
libvirt, on a stream over the domain's agent channel (runtime/libvirt/). Both end as an
:class:`~vdagent_bridge.runtime.connection.AgentConnection` driving the same session.
"""

from __future__ import annotations

from ..sites import LibvirtSite, Site, VmSite
from .connection import AgentConnection


class LibvirtHostsMissing(RuntimeError):
    """A libvirt site was opened without the libvirt connections to open it on (a bug)."""


async def open_link(site: VmSite, conn: AgentConnection, hosts: object | None, *,
                    fresh: bool = True, hold: bool = False) -> None:
    """Connect ``conn`` to ``site``. ``hosts`` is the VM's libvirt connections
    (:class:`~vdagent_bridge.runtime.libvirt.api.Hosts`) for a libvirt site.

    :raises OSError: the site cannot be reached now (``PermissionError``: not ours to
        reach; a ``LibvirtError`` for libvirt's reasons, with one readable line).
    """
    if isinstance(site, Site):
        await conn.connect(site.agent, fresh=fresh, hold=hold)
        return
    assert isinstance(site, LibvirtSite)
    from .libvirt import api
    from .libvirt.stream import StreamTransport

    if not isinstance(hosts, api.Hosts):
        raise LibvirtHostsMissing(f"no libvirt connections to open {site} on")
    stream = StreamTransport(api.load(), await api.open_channel(hosts, site))
    hosts.carries(site.uri, stream)
    conn.attach(stream, fresh=fresh, hold=hold)
