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


def fact_of(site: int, event: VmEvent) -> SiteFact | None:
    """The switchover fact a QMP event of ``site`` stands for (None: nothing to say)."""
    if event.kind == "stop":
        return GuestStopped(site)
    if event.kind == "resume":
        return GuestResumed(site)
    status = event.status
    if event.kind != "migration" or status is None or status is QmpMigrationStatus.NONE:
        return None
    if status.running:
        return MigrationStatus(site, Progress.RUNNING)
    progress = {
        QmpMigrationStatus.COMPLETED: Progress.COMPLETED,
        QmpMigrationStatus.FAILED: Progress.FAILED,
        QmpMigrationStatus.CANCELLED: Progress.CANCELLED,
    }[status]
    return MigrationStatus(site, progress)


async def follow_qmp(site: int, monitor: QmpMonitor, observe: Callable[[SiteFact], None],
                     *, vm: str = "vm") -> None:
    """Read ``monitor`` (connected) and pass on its facts until it goes away or the task is
    cancelled. Migration events are switched on where QEMU allows it (else the monitor polls
    ``query-migrate``)."""
    try:
        await monitor.enable_migration_events()
        async with contextlib.aclosing(monitor.events()) as events:
            async for event in events:
                fact = fact_of(site, event)
                if fact is not None:
                    observe(fact)
    except QmpError as err:
        log.warning("%s: %s", vm, err)
