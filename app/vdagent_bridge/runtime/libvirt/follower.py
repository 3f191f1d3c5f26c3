"""Following a domain's migrations through libvirt's events, as switchover facts.

libvirt keeps QEMU's monitor to itself, so the facts come from its domain events, on the
connection of each host that may run the VM (docs/libvirt.md, observed with libvirt 9.0):

==========================================  =========================================
event on a host's connection                fact
==========================================  =========================================
MIGRATION_ITERATION (source), of a job      ``MigrationStatus(RUNNING)``
that migrates out (not a save's)
LIFECYCLE SUSPENDED (source)                ``GuestStopped``: MIGRATED: the final copy;
                                            otherwise a pause (a save starts with one)
JOB_COMPLETED, a migration out (source)     ``MigrationStatus(COMPLETED)``
LIFECYCLE RESUMED (any detail)              ``GuestResumed`` (a destination: the switch;
                                            the source: the migration failed)
the migration job ended otherwise (source)  ``MigrationStatus(FAILED / CANCELLED)``
==========================================  =========================================

The destination's STARTED/MIGRATED (the incoming domain appears, paused) needs no fact: the
driver finds the destination when the source reports the migration (the incoming domain is
there by then: libvirt's Prepare comes before the first iteration). libvirt sends no event
when a migration fails or is cancelled (``virsh domjobabort``) before the final stop, so
while a migration runs the follower asks the source's job every :data:`JOB_POLL` s, and
reports its end when the job is gone without a JOB_COMPLETED.

Events are registered for every domain of the connection and filtered by name: the incoming
domain of a migration is a new object (a transient domain on the destination).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ...sites import LibvirtSite
from ..follower import SiteFact
from ..switchover import GuestResumed, GuestStopped, MigrationStatus, Progress
from . import api

log = logging.getLogger(__name__)

#: How often the source's migration job is checked while it runs (to see it fail).
JOB_POLL = 0.2


class LibvirtFacts:
    """Turns one host's domain events into facts (pure: the table in the module docstring,
    plus the state of an outgoing migration)."""

    def __init__(self, libvirt: Any, site: int) -> None:
        self._lv = libvirt
        self.site = site
        #: An outgoing migration was reported and has not ended.
        self.outgoing = False

    def lifecycle(self, event: int, detail: int) -> SiteFact | None:
        lv = self._lv
        if event == lv.VIR_DOMAIN_EVENT_SUSPENDED:
            return GuestStopped(self.site, unread=None)
        if event == lv.VIR_DOMAIN_EVENT_RESUMED:
            return GuestResumed(self.site)
        return None

    def iteration(self, operation: int | None = None) -> SiteFact | None:
        """A migration iteration; ``operation`` is the running job's (None: unknown). A save
        writes the guest's memory the same way (and reports iterations too), but no
        destination will run it: that is not a migration to prepare for."""
        lv = self._lv
        if operation is not None and operation != lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
            return None
        if self.outgoing:
            return None
        self.outgoing = True
        return MigrationStatus(self.site, Progress.RUNNING)

    def job_completed(self, operation: int | None) -> SiteFact | None:
        lv = self._lv
        if operation is not None and operation != lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
            return None  # a save, a dump, an incoming migration's end...
        if not self.outgoing and operation is None:
            return None
        self.outgoing = False
        return MigrationStatus(self.site, Progress.COMPLETED)

    def job_gone(self, outcome: int | None) -> SiteFact | None:
        """The migration job is no longer running; ``outcome`` is the last completed job's
        type (``VIR_DOMAIN_JOB_COMPLETED`` / ``_FAILED`` / ``_CANCELLED``, None: unknown)."""
        if not self.outgoing:
            return None
        self.outgoing = False
        lv = self._lv
        if outcome == lv.VIR_DOMAIN_JOB_COMPLETED:
            return MigrationStatus(self.site, Progress.COMPLETED)
        if outcome == lv.VIR_DOMAIN_JOB_CANCELLED:
            return MigrationStatus(self.site, Progress.CANCELLED)
        return MigrationStatus(self.site, Progress.FAILED)


async def follow_libvirt(hosts: api.Hosts, index: int, site: LibvirtSite,
                         observe: Callable[[SiteFact], None], *, vm: str = "vm") -> None:
    """Watch ``site``'s host for its domain's migration facts until cancelled (or until the
    connection to the host is lost)."""
    lv = api.load()
    try:
        conn = hosts.get(site.uri)
    except api.LibvirtError as err:
        log.warning("%s: %s; its migrations cannot be followed", vm, err)
        return
    facts = LibvirtFacts(lv, index)
    ids: list[int] = []
    lost = asyncio.get_running_loop().create_future()

    def ours(domain: Any) -> bool:
        try:
            return bool(domain.name() == site.domain)
        except lv.libvirtError:
            return False

    def tell(fact: SiteFact | None) -> None:
        if fact is not None:
            observe(fact)

    def on_lifecycle(_conn: Any, domain: Any, event: int, detail: int, _opaque: Any) -> None:
        if ours(domain):
            tell(facts.lifecycle(event, detail))

    def on_iteration(_conn: Any, domain: Any, _iteration: int, _opaque: Any) -> None:
        if ours(domain) and not facts.outgoing:
            tell(facts.iteration(_job_operation(lv, domain)))

    def on_job_completed(_conn: Any, domain: Any, params: dict[str, Any],
                         _opaque: Any) -> None:
        if ours(domain):
            operation = params.get("operation") if isinstance(params, dict) else None
            tell(facts.job_completed(operation))

    try:
        for event, callback in (
            (lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle),
            (lv.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, on_iteration),
            (lv.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, on_job_completed),
        ):
            ids.append(conn.domainEventRegisterAny(None, event, callback, None))
    except lv.libvirtError as err:
        log.warning("%s: %s", vm, api.error_of(err, f"cannot follow {site}"))
        _deregister(lv, conn, ids)
        return
    try:
        while not lost.done():
            await asyncio.sleep(JOB_POLL)
            if facts.outgoing:
                tell(_job_check(lv, hosts, site, facts))
            try:
                if not conn.isAlive():
                    return
            except lv.libvirtError:
                return
    finally:
        _deregister(lv, conn, ids)


def _job_operation(lv: Any, domain: Any) -> int | None:
    """The running job's operation (a migration, a save, ...); None when it cannot be told."""
    try:
        stats = domain.jobStats(0)
    except lv.libvirtError:
        return None
    operation = stats.get("operation") if isinstance(stats, dict) else None
    return operation if isinstance(operation, int) else None


def _job_check(lv: Any, hosts: api.Hosts, site: LibvirtSite,
               facts: LibvirtFacts) -> SiteFact | None:
    """While a migration runs: its end, if the job is gone."""
    try:
        domain = hosts.domain(site)
        info = domain.jobInfo()
    except (api.LibvirtError, lv.libvirtError):
        return None  # gone with the source (the migration completed): the events tell
    if info and info[0] != lv.VIR_DOMAIN_JOB_NONE:
        return None
    outcome = None
    try:
        stats = domain.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
        if isinstance(stats, dict):
            outcome = stats.get("type")
    except lv.libvirtError:
        pass
    return facts.job_gone(outcome)


def _deregister(lv: Any, conn: Any, ids: list[int]) -> None:
    for callback_id in ids:
        try:
            conn.domainEventDeregisterAny(callback_id)
        except lv.libvirtError:
            pass
    ids.clear()
