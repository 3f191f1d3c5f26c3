"""libvirt's domain events as switchover facts (runtime/libvirt/follower.py's table), with
libvirt-python's own constants."""

from __future__ import annotations

import libvirt
from vdagent_bridge.runtime.libvirt.follower import LibvirtFacts
from vdagent_bridge.runtime.switchover import (
    GuestResumed,
    GuestStopped,
    MigrationStatus,
    Progress,
)

lv = libvirt


def facts() -> LibvirtFacts:
    return LibvirtFacts(lv, 1)


def test_every_pause_is_a_stop_and_every_resume_a_resume() -> None:
    f = facts()
    for detail in (lv.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, lv.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED):
        assert f.lifecycle(lv.VIR_DOMAIN_EVENT_SUSPENDED, detail) == GuestStopped(1, None)
    assert f.lifecycle(lv.VIR_DOMAIN_EVENT_RESUMED,
                       lv.VIR_DOMAIN_EVENT_RESUMED_MIGRATED) == GuestResumed(1)
    assert f.lifecycle(lv.VIR_DOMAIN_EVENT_STARTED, lv.VIR_DOMAIN_EVENT_STARTED_BOOTED) is None
    assert f.lifecycle(lv.VIR_DOMAIN_EVENT_STOPPED, lv.VIR_DOMAIN_EVENT_STOPPED_SAVED) is None


def test_a_migration_is_reported_once_and_a_save_not_at_all() -> None:
    f = facts()
    assert f.iteration(lv.VIR_DOMAIN_JOB_OPERATION_SAVE) is None
    assert not f.outgoing
    assert f.iteration(lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT) == MigrationStatus(
        1, Progress.RUNNING)
    assert f.iteration(lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT) is None  # the next pass
    assert f.job_completed(lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT) == MigrationStatus(
        1, Progress.COMPLETED)
    assert not f.outgoing


def test_an_iteration_of_an_unknown_job_counts_as_a_migration() -> None:
    assert facts().iteration(None) == MigrationStatus(1, Progress.RUNNING)


def test_a_job_that_ends_without_completing_is_a_failure_or_a_cancel() -> None:
    for outcome, progress in ((lv.VIR_DOMAIN_JOB_CANCELLED, Progress.CANCELLED),
                              (lv.VIR_DOMAIN_JOB_FAILED, Progress.FAILED),
                              (None, Progress.FAILED),
                              (lv.VIR_DOMAIN_JOB_COMPLETED, Progress.COMPLETED)):
        f = facts()
        f.iteration(None)
        assert f.job_gone(outcome) == MigrationStatus(1, progress)
    assert facts().job_gone(lv.VIR_DOMAIN_JOB_FAILED) is None  # no migration was running


def test_a_save_or_an_incoming_migration_completing_is_no_migration_of_ours() -> None:
    f = facts()
    assert f.job_completed(lv.VIR_DOMAIN_JOB_OPERATION_SAVE) is None
    assert f.job_completed(lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN) is None
    assert f.job_completed(None) is None  # nothing was outgoing
