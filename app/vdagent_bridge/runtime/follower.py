"""Followers: what the QEMU of one site says about migrations, as switchover facts.

A follower only observes: it turns one site's QMP events (MIGRATION status, STOP, RESUME;
see runtime/qmp.py) into facts for :class:`~vdagent_bridge.runtime.switchover.Switchover`
and hands them to a callback. It decides nothing, and it ends only when told to (cancelled)
or when its monitor goes away. The facts that need a measurement of a connection (how much
of our output a stopped source left unread) are completed by the callback's owner, which
holds the connections.

The monitor stays open while the follower runs, also for ``screendump``: a QMP socket serves
one client at a time, so the follower's monitor is the runtime's only way in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from .qmp import MigrationStatus as QmpMigrationStatus
from .qmp import QmpError, QmpMonitor, VmEvent
from .switchover import GuestResumed, GuestStopped, MigrationStatus, Progress

log = logging.getLogger(__name__)

#: What a follower produces: facts about its site.
SiteFact = MigrationStatus | GuestStopped | GuestResumed


class QmpFacts:
    """Turns one site's QMP events into switchover facts.

    QEMU reports its *incoming* migration with the same MIGRATION statuses as an outgoing
    one (a destination goes setup, active, completed, the last often just after its RESUME),
    and a follower of a fresh source (the destination the conversation just moved to) would
    take those for a migration of its own. So statuses only count while the QEMU is running
    the guest: a migration that starts while it runs is outgoing, and its end is reported;
    statuses while it waits for an incoming migration, and the end of one not seen
    starting, are not.
    """

    def __init__(self, site: int, *, running: bool) -> None:
        self.site = site
        #: The QEMU runs the guest (not waiting for an incoming migration, not paused).
        self.running = running
        #: An outgoing migration was seen starting and has not ended.
        self.outgoing = False

    def fact(self, event: VmEvent) -> SiteFact | None:
        """The fact ``event`` stands for (None: nothing to say)."""
        if event.kind == "stop":
            self.running = False
            return GuestStopped(self.site)
        if event.kind == "resume":
            self.running = True
            return GuestResumed(self.site)
        status = event.status
        if event.kind != "migration" or status is None or status is QmpMigrationStatus.NONE:
            return None
        if status.running:
            if not self.outgoing and not self.running:
                return None  # an incoming migration (or a paused VM's: none we can follow)
            self.outgoing = True
            return MigrationStatus(self.site, Progress.RUNNING)
        if not self.outgoing:
            return None  # the end of an incoming migration
        self.outgoing = False
        progress = {
            QmpMigrationStatus.COMPLETED: Progress.COMPLETED,
            QmpMigrationStatus.FAILED: Progress.FAILED,
            QmpMigrationStatus.CANCELLED: Progress.CANCELLED,
        }[status]
        return MigrationStatus(self.site, progress)


async def follow_qmp(site: int, monitor: QmpMonitor, observe: Callable[[SiteFact], None],
                     *, vm: str = "vm") -> None:
    """Read ``monitor`` (connected) and pass on its facts until it goes away or the task is
    cancelled. Migration events are switched on where QEMU allows it (else the monitor polls
    ``query-migrate``)."""
    try:
        status = await monitor.execute("query-status")
        running = isinstance(status, dict) and bool(status.get("running"))
        facts = QmpFacts(site, running=running)
        await monitor.enable_migration_events()
        async with contextlib.aclosing(monitor.events()) as events:
            async for event in events:
                fact = facts.fact(event)
                if fact is not None:
                    observe(fact)
    except QmpError as err:
        log.warning("%s: %s", vm, err)
