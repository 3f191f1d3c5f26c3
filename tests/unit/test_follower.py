"""What a site's QMP events mean to the switchover (runtime/follower.py ``QmpFacts``)."""

from __future__ import annotations

import pytest

from vdagent_bridge.runtime.follower import QmpFacts
from vdagent_bridge.runtime.qmp import MigrationStatus as Qmp
from vdagent_bridge.runtime.qmp import VmEvent
from vdagent_bridge.runtime.switchover import (
    GuestResumed,
    GuestStopped,
    MigrationStatus,
    Progress,
)

STOP, RESUME = VmEvent("stop"), VmEvent("resume")


def status(value: Qmp) -> VmEvent:
    return VmEvent("migration", value)


@pytest.mark.parametrize(("running", "events", "facts"), [
    # An outgoing migration: reported from its start to its end.
    (True, [status(Qmp.SETUP), status(Qmp.ACTIVE), STOP, status(Qmp.DEVICE),
            status(Qmp.COMPLETED)],
     [MigrationStatus(3, Progress.RUNNING), MigrationStatus(3, Progress.RUNNING),
      GuestStopped(3), MigrationStatus(3, Progress.RUNNING),
      MigrationStatus(3, Progress.COMPLETED)]),
    (True, [status(Qmp.ACTIVE), status(Qmp.FAILED)],
     [MigrationStatus(3, Progress.RUNNING), MigrationStatus(3, Progress.FAILED)]),
    (True, [status(Qmp.ACTIVE), status(Qmp.CANCELLED)],
     [MigrationStatus(3, Progress.RUNNING), MigrationStatus(3, Progress.CANCELLED)]),
    # A destination's incoming migration, and its COMPLETED just after its RESUME: nothing
    # but the RESUME (the conversation may follow it as its new source already).
    (False, [status(Qmp.SETUP), status(Qmp.ACTIVE), RESUME, status(Qmp.COMPLETED)],
     [GuestResumed(3)]),
    # The end of a migration not seen starting says nothing.
    (True, [status(Qmp.COMPLETED)], []),
    (True, [status(Qmp.NONE)], []),
    # A paused VM: no migration is followed; the next one, after RESUME, is.
    (False, [status(Qmp.ACTIVE), RESUME, status(Qmp.ACTIVE)],
     [GuestResumed(3), MigrationStatus(3, Progress.RUNNING)]),
    (True, [VmEvent("migration", None)], []),
])
def test_qmp_events_as_facts(running: bool, events: list[VmEvent], facts: list[object]) -> None:
    translate = QmpFacts(3, running=running)
    assert [f for f in map(translate.fact, events) if f is not None] == facts
