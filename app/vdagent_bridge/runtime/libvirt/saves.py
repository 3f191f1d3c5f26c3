"""A libvirt domain's save and restore, as the runtime needs them (runtime/restore.py says
why): the conversation mark in the domain's definition, whether it was saved, whether it is
being restored, and a wake-up when it starts.

The mark is an element of the domain's live metadata (``virDomainSetMetadata``, live only: the
persistent definition is the user's and stays untouched). Live metadata goes into a save
image with the rest of the live definition, and migrates with the domain.

The wake-up: a domain that is restored is paused only while its image loads (0.4 s for the
test guest's 130 MB); libvirt reports it STARTED only after that, just before it resumes it.
QEMU's own MIGRATION events (the image is loaded as an incoming migration) come at the start
of the load; libvirt relays them to clients that ask (``libvirt_qemu``'s monitor events), so
the runtime is told in time to connect while the guest is still paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from typing import Any

from ...sites import AGENT_CHANNEL, LibvirtSite
from . import api

log = logging.getLogger(__name__)

#: The namespace of the bridge's metadata element (libvirt keys metadata by namespace).
MARK_NAMESPACE = "https://vdagent-bridge.invalid/xmlns/conversation/1"
MARK_PREFIX = "vdagent-bridge"


def set_mark(hosts: api.Hosts, site: LibvirtSite, conversation: str) -> bool:
    """Mark the running domain's live definition with ``conversation``; False (and a log
    line) when libvirt refuses (the restore then starts afresh)."""
    lv = api.load()
    try:
        domain = hosts.domain(site)
        domain.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT,
                           f"<conversation id='{conversation}'/>", MARK_PREFIX,
                           MARK_NAMESPACE, lv.VIR_DOMAIN_AFFECT_LIVE)
    except (api.LibvirtError, lv.libvirtError) as err:
        said = err.strerror if isinstance(err, api.LibvirtError) else err.get_error_message()
        log.warning("cannot mark the conversation in %s (%s): a save and restore of it will "
                    "be a fresh connect", site, said)
        return False
    return True


def mark_of(domain: Any) -> str | None:
    """The conversation the domain's live definition carries (None: none, or unreadable)."""
    lv = api.load()
    try:
        element = domain.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, MARK_NAMESPACE,
                                  lv.VIR_DOMAIN_AFFECT_LIVE)
        mark = ET.fromstring(element).get("id")
    except (lv.libvirtError, ET.ParseError):
        return None
    return mark or None


def was_saved(hosts: api.Hosts, site: LibvirtSite) -> bool:
    """Whether the domain is shut off in a save (``virsh save``, or a managed save)."""
    lv = api.load()
    try:
        domain = hosts.domain(site)
        state, reason = domain.state()
        if state == lv.VIR_DOMAIN_SHUTOFF and reason == lv.VIR_DOMAIN_SHUTOFF_SAVED:
            return True
        return bool(state == lv.VIR_DOMAIN_SHUTOFF and domain.hasManagedSaveImage(0))
    except (api.LibvirtError, lv.libvirtError):
        return False


def restoring(domain: Any) -> bool:
    """Whether the domain is paused starting up (its saved image loading), not yet run."""
    return api.incoming(domain)


@contextlib.contextmanager
def watch_connect_moments(hosts: api.Hosts,
                          sites: Sequence[LibvirtSite]) -> Iterator[asyncio.Event]:
    """An event set, while the ``with`` lasts, at a moment worth a connect attempt: one of
    ``sites``' domains loads a saved image or an incoming migration (QEMU's MIGRATION events:
    a restore must be met while it loads), or its guest opens the agent port (its agent
    started: after a boot, the first moment the guest can answer an announce). Hosts that
    cannot be reached or watched are skipped (the caller's back-off retries them anyway)."""
    lv = api.load()
    moment = asyncio.Event()
    registered: list[tuple[Any, int, bool]] = []
    for site in sites:
        try:
            conn = hosts.get(site.uri)
        except api.LibvirtError:
            continue
        name = site.domain

        def on_monitor(_c: Any, domain: Any, event: str, _s: int, _us: int, details: Any,
                       _o: Any, name: str = name) -> None:
            if not _named(domain, name):
                return
            if event == "MIGRATION" or _agent_port_opened(domain, details):
                moment.set()

        for qemu_event in ("MIGRATION", "VSERPORT_CHANGE"):
            with contextlib.suppress(lv.libvirtError, ImportError):
                import libvirt_qemu

                registered.append((conn, libvirt_qemu.qemuMonitorEventRegister(
                    conn, None, qemu_event, on_monitor, None, 0), True))
    try:
        yield moment
    finally:
        for conn, callback, monitor in registered:
            with contextlib.suppress(lv.libvirtError, ImportError):
                if monitor:
                    import libvirt_qemu

                    libvirt_qemu.qemuMonitorEventDeregister(conn, callback)
                else:
                    conn.domainEventDeregisterAny(callback)


def _agent_port_opened(domain: Any, details: Any) -> bool:
    """Whether a VSERPORT_CHANGE says the guest opened the agent channel's port."""
    try:
        change = json.loads(details) if isinstance(details, str) else details
        if not isinstance(change, dict) or change.get("open") is not True:
            return False
        tree = ET.fromstring(domain.XMLDesc(0))
    except (ValueError, ET.ParseError, api.load().libvirtError):
        return False
    for channel in tree.iter("channel"):
        target, alias = channel.find("target"), channel.find("alias")
        if target is not None and target.get("name") == AGENT_CHANNEL:
            return alias is None or alias.get("name") == change.get("id")
    return False


def _named(domain: Any, name: str) -> bool:
    try:
        return bool(domain.name() == name)
    except api.load().libvirtError:
        return False
