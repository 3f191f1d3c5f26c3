"""The switchover machine's transition table: one handler per (phase, fact) pair.

Each handler appends the commands for one fact in one phase to ``out`` and moves the machine
to its next phase. Every pair is in :data:`TABLE`; the tests walk it pair by pair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .commands import (
    Close,
    Command,
    FindDestinations,
    Hold,
    Note,
    Release,
    Resend,
    Unfollow,
    WriteTo,
)
from .facts import (
    DestinationsFound,
    Fact,
    GuestResumed,
    GuestStopped,
    LinkEnded,
    LinkFailed,
    LinkUp,
    MigrationStatus,
    Progress,
    Shutdown,
    Tick,
)
from .phases import Attempt, Phase

if TYPE_CHECKING:
    from .machine import Switchover

Handler = Callable[["Switchover", Fact, float, list[Command]], None]


# --------------------------------------------------------------------------- handlers
# One function per (phase, fact) kind; each appends its commands to ``out``. They are
# listed in TABLE, which the tests walk pair by pair.


def _ignore(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    """Nothing to do in this phase."""


def _close_stale(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    """A connect attempt the machine no longer wants came up: close it."""
    assert isinstance(fact, LinkUp)
    if fact.link != machine.link and fact.link != machine.destination:
        out.append(Close(fact.link))


def _shutdown(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    machine._end(out, "stopping")


def _source_ended(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    """The source's connection ended outside a migration's final phase: lost."""
    assert isinstance(fact, LinkEnded)
    if fact.link == machine.link:
        machine._end(out, fact.reason)


# IDLE

def _idle_status(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, MigrationStatus)
    if fact.site != machine.site:
        return
    if fact.progress is Progress.RUNNING:
        machine._attempt = Attempt(started=now)
        machine.phase = Phase.PREPARING
        machine.paused = False  # the migration holds and releases from here
        out.append(Hold(machine.link))
        out.append(FindDestinations(machine.site))
        out.append(Note(logging.INFO, "a migration started; holding our output"))
    elif fact.progress is Progress.COMPLETED:
        # The migration went by unseen (a monitor that polls, a short one): the guest runs
        # elsewhere, and the source will never read again.
        machine._end(out, "the VM migrated before the bridge could prepare",
                     machine._other_site())


def _idle_stopped(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    """The guest was paused (by its user, or for a save): it reads nothing until it runs
    again, and a save ends its QEMU with whatever the socket still holds. So our output
    waits in the session (it goes on with the session, into a restore too)."""
    assert isinstance(fact, GuestStopped)
    if fact.site != machine.site or machine.paused:
        return
    machine.paused = True
    out.append(Hold(machine.link))
    out.append(Note(logging.INFO, "the guest is paused; holding our output until it runs"))


def _idle_resumed(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, GuestResumed)
    if fact.site != machine.site or not machine.paused:
        return
    machine.paused = False
    out.append(Release(machine.link))


# PREPARING

def _preparing_status(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, MigrationStatus)
    attempt = machine._attempt
    assert attempt is not None
    if fact.site != machine.site:
        return
    if fact.progress is Progress.COMPLETED:
        attempt.completed = True  # switch (afresh) as soon as the destination is connected
    elif fact.progress in (Progress.FAILED, Progress.CANCELLED):
        machine._abort(out, f"the migration {fact.progress.value}")


def _stopped(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    """The source stopped the guest (PREPARING or PRECONNECTED)."""
    assert isinstance(fact, GuestStopped)
    attempt = machine._attempt
    assert attempt is not None
    if fact.site != machine.site or attempt.stopped:
        return
    attempt.stopped, attempt.unread, attempt.kept = True, fact.unread, fact.kept
    if machine.phase is Phase.PRECONNECTED:
        machine._start_writing(out)


def _preparing_resumed(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, GuestResumed)
    attempt = machine._attempt
    assert attempt is not None
    if fact.site == machine.site:
        attempt.stopped = False  # the STOP was a pause, undone (the final one comes later)
    else:
        # The guest runs there and found no host connected: it saw the host go.
        attempt.resumed.add(fact.site)


def _found(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, DestinationsFound)
    attempt = machine._attempt
    assert attempt is not None
    if attempt.candidates is not None:
        return  # asked once per migration
    attempt.candidates = [s for s in fact.sites if s != machine.site and 0 <= s < machine.sites]
    machine._try_next(out, now)


def _preparing_up(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, LinkUp)
    attempt = machine._attempt
    assert attempt is not None
    if fact.link != attempt.link:
        _close_stale(machine, fact, now, out)
        return
    attempt.connected = True
    if attempt.site in attempt.resumed or attempt.completed:
        # The guest resumed (or, the migration being complete, may well have resumed) on the
        # destination with no host on its port: it saw the host go, and waits for an announce.
        out.append(Note(logging.WARNING, "the guest resumed on the destination before the "
                        "bridge was connected there: starting the conversation afresh"))
        machine._switch(out, now, fresh=True)
        return
    machine.phase = Phase.PRECONNECTED
    out.append(Note(logging.INFO, f"pre-connected to the destination (site {attempt.site})"))
    if attempt.stopped:
        machine._start_writing(out)


def _preparing_failed(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, LinkFailed)
    attempt = machine._attempt
    assert attempt is not None
    if fact.link != attempt.link:
        return
    out.append(Note(logging.INFO, f"destination (site {attempt.site}) not reachable: "
                    f"{fact.reason}"))
    machine._try_next(out, now)


def _migrating_ended(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    """A link ended while preparing, pre-connected or unprepared."""
    assert isinstance(fact, LinkEnded)
    attempt = machine._attempt
    assert attempt is not None
    if fact.link == machine.link:
        if machine.phase is Phase.UNPREPARED or not (attempt.stopped or attempt.completed):
            # Before its final stop the source only goes away by failing (crashed, killed).
            machine._end(out, f"{fact.reason} during a migration")
            return
        # The source QEMU quits once the guest runs elsewhere, and its last facts may come
        # after its connection's end: wait for them a while (see _migrating_tick).
        if attempt.source_gone is None:
            attempt.source_gone = now
    elif fact.link == attempt.link and attempt.connected:
        out.append(Note(logging.WARNING, f"the destination (site {attempt.site}) closed: "
                        f"{fact.reason}"))
        out.append(Close(fact.link))
        machine._try_next(out, now)


def _migrating_tick(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    deadline = machine.next_deadline()
    if deadline is None or now < deadline:
        return
    attempt = machine._attempt
    assert attempt is not None
    if machine.phase is Phase.WRITING_TO_DESTINATION:
        # The source is gone after it stopped the guest: the destination is the only place
        # the guest can run (a destination we cannot follow never says RESUME).
        out.append(Note(logging.INFO, "the source is gone after stopping the guest: "
                        "continuing on the destination"))
        machine._switch(out, now)
    else:
        machine._end(out, "the source went away during a migration")


# PRECONNECTED

def _destination_status(machine: Switchover, fact: Fact, now: float,
                        out: list[Command]) -> None:
    """PRECONNECTED or WRITING_TO_DESTINATION: the source's migration ends."""
    assert isinstance(fact, MigrationStatus)
    if fact.site != machine.site:
        return
    if fact.progress is Progress.COMPLETED:
        machine._switch(out, now)
    elif fact.progress in (Progress.FAILED, Progress.CANCELLED):
        after = " after the source stopped" if machine.phase is Phase.WRITING_TO_DESTINATION else ""
        machine._abort(out, f"the migration {fact.progress.value}{after}")


def _destination_resumed(machine: Switchover, fact: Fact, now: float,
                         out: list[Command]) -> None:
    """PRECONNECTED or WRITING_TO_DESTINATION: the destination's RESUME is the switch."""
    assert isinstance(fact, GuestResumed)
    attempt = machine._attempt
    assert attempt is not None
    if fact.site == attempt.site and fact.site != machine.site:
        machine._switch(out, now)
    elif fact.site == machine.site and machine.phase is Phase.WRITING_TO_DESTINATION:
        # The STOP was a pause (the user's), not the final copy: the guest reads the source
        # again. What went to the destination goes to the source, and the destination, which
        # has bytes of ours it must never deliver, is let go.
        _back_to_source(machine, out, "the source resumed the guest before the migration "
                        "completed")


def _back_to_source(machine: Switchover, out: list[Command], why: str) -> None:
    """WRITING_TO_DESTINATION, the destination unusable: the migration goes on unprepared."""
    attempt = machine._attempt
    assert attempt is not None and attempt.link is not None
    out.append(Note(logging.WARNING, f"{why}: the guest will see the host reconnect if the "
                    "migration completes"))
    out.append(Resend(attempt.link, machine.link, attempt.carried))
    out.append(Close(attempt.link))
    if attempt.site is not None and attempt.site in machine.followed:
        out.append(Unfollow(attempt.site))
    attempt.site = attempt.link = None
    attempt.connected = attempt.stopped = False
    attempt.carried = 0
    attempt.candidates = []
    out.append(Release(machine.link))
    out.append(WriteTo(machine.link))
    machine.writer = machine.link
    machine.phase = Phase.UNPREPARED


# UNPREPARED

def _unprepared_status(machine: Switchover, fact: Fact, now: float,
                       out: list[Command]) -> None:
    assert isinstance(fact, MigrationStatus)
    if fact.site != machine.site:
        return
    if fact.progress is Progress.COMPLETED:
        machine._end(out, "the VM migrated without a prepared destination",
                     machine._other_site())
    elif fact.progress in (Progress.FAILED, Progress.CANCELLED):
        machine._abort(out, f"the migration {fact.progress.value}")


# WRITING_TO_DESTINATION

def _writing_ended(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, LinkEnded)
    attempt = machine._attempt
    assert attempt is not None and attempt.link is not None
    if fact.link == machine.link:
        if attempt.source_gone is None:
            attempt.source_gone = now  # it quits after completing: the RESUME is on its way
    elif fact.link == attempt.link:
        # The destination is gone after the source stopped: the migration cannot complete.
        # What it was sent goes to the source, which has the guest if it resumes.
        _back_to_source(machine, out, f"the destination (site {attempt.site}) closed after "
                        f"the source stopped: {fact.reason}")


# ENDED: everything is over; only a stale link coming up still needs closing.


TABLE: dict[tuple[Phase, type[Fact]], Handler] = {
    (Phase.IDLE, MigrationStatus): _idle_status,
    (Phase.IDLE, GuestStopped): _idle_stopped,  # a pause (or a STOP ahead of its migration)
    (Phase.IDLE, GuestResumed): _idle_resumed,
    (Phase.IDLE, DestinationsFound): _ignore,  # for a migration that was aborted
    (Phase.IDLE, LinkUp): _close_stale,
    (Phase.IDLE, LinkFailed): _ignore,
    (Phase.IDLE, LinkEnded): _source_ended,
    (Phase.IDLE, Tick): _ignore,
    (Phase.IDLE, Shutdown): _shutdown,

    (Phase.PREPARING, MigrationStatus): _preparing_status,
    (Phase.PREPARING, GuestStopped): _stopped,
    (Phase.PREPARING, GuestResumed): _preparing_resumed,
    (Phase.PREPARING, DestinationsFound): _found,
    (Phase.PREPARING, LinkUp): _preparing_up,
    (Phase.PREPARING, LinkFailed): _preparing_failed,
    (Phase.PREPARING, LinkEnded): _migrating_ended,
    (Phase.PREPARING, Tick): _migrating_tick,
    (Phase.PREPARING, Shutdown): _shutdown,

    (Phase.PRECONNECTED, MigrationStatus): _destination_status,
    (Phase.PRECONNECTED, GuestStopped): _stopped,
    (Phase.PRECONNECTED, GuestResumed): _destination_resumed,
    (Phase.PRECONNECTED, DestinationsFound): _ignore,
    (Phase.PRECONNECTED, LinkUp): _close_stale,
    (Phase.PRECONNECTED, LinkFailed): _ignore,
    (Phase.PRECONNECTED, LinkEnded): _migrating_ended,
    (Phase.PRECONNECTED, Tick): _migrating_tick,
    (Phase.PRECONNECTED, Shutdown): _shutdown,

    (Phase.UNPREPARED, MigrationStatus): _unprepared_status,
    (Phase.UNPREPARED, GuestStopped): _ignore,
    (Phase.UNPREPARED, GuestResumed): _ignore,
    (Phase.UNPREPARED, DestinationsFound): _ignore,
    (Phase.UNPREPARED, LinkUp): _close_stale,
    (Phase.UNPREPARED, LinkFailed): _ignore,
    (Phase.UNPREPARED, LinkEnded): _migrating_ended,
    (Phase.UNPREPARED, Tick): _ignore,
    (Phase.UNPREPARED, Shutdown): _shutdown,

    (Phase.WRITING_TO_DESTINATION, MigrationStatus): _destination_status,
    (Phase.WRITING_TO_DESTINATION, GuestStopped): _ignore,  # STOP twice
    (Phase.WRITING_TO_DESTINATION, GuestResumed): _destination_resumed,
    (Phase.WRITING_TO_DESTINATION, DestinationsFound): _ignore,
    (Phase.WRITING_TO_DESTINATION, LinkUp): _close_stale,
    (Phase.WRITING_TO_DESTINATION, LinkFailed): _ignore,
    (Phase.WRITING_TO_DESTINATION, LinkEnded): _writing_ended,
    (Phase.WRITING_TO_DESTINATION, Tick): _migrating_tick,
    (Phase.WRITING_TO_DESTINATION, Shutdown): _shutdown,

    (Phase.ENDED, MigrationStatus): _ignore,
    (Phase.ENDED, GuestStopped): _ignore,
    (Phase.ENDED, GuestResumed): _ignore,
    (Phase.ENDED, DestinationsFound): _ignore,
    (Phase.ENDED, LinkUp): _close_stale,
    (Phase.ENDED, LinkFailed): _ignore,
    (Phase.ENDED, LinkEnded): _ignore,
    (Phase.ENDED, Tick): _ignore,
    (Phase.ENDED, Shutdown): _ignore,
}


def transitions() -> dict[tuple[Phase, type[Fact]], str]:
    """The table's handlers by name, for tests and documentation."""
    return {pair: handler.__name__ for pair, handler in TABLE.items()}
