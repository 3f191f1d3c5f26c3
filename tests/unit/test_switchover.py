"""The switchover machine (runtime/switchover.py) as a specification.

1. The table: every (phase, fact) pair, each with the phase it leads to and the commands it
   gives, in order (``ROWS``); a test checks that no pair is missing.
2. The odd cases, one test each: RESUME before the pre-connect finished, STOP twice, a
   failure after STOP, the destination's EOF while held, a second migration from the
   destination, a pause of the source during a migration, a source that quits first.
3. A property over random fact sequences from a model of the world (QEMU processes, their
   agent ports, a guest that reads): no byte of our output reaches the guest twice or is
   lost, at most one link is read at a time, and a guest that saw the host go is never
   continued without a fresh announce.

The drivers that carry the commands out over real sockets are tested in
test_conversation.py and, with real QEMU migrations, in tests/qemu/test_migration.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from vdagent_bridge.protocol import LocalProtocolError
from vdagent_bridge.runtime.switchover import (
    FACT_TYPES,
    SOURCE_GONE_GRACE,
    Announce,
    CarryOver,
    Close,
    Command,
    Connect,
    DestinationsFound,
    End,
    Fact,
    FindDestinations,
    Follow,
    GuestResumed,
    GuestStopped,
    Hold,
    LinkEnded,
    LinkFailed,
    LinkUp,
    MigrationStatus,
    Note,
    Phase,
    Progress,
    ReadFrom,
    Record,
    Release,
    Resend,
    Shutdown,
    Switched,
    Switchover,
    Tick,
    Unfollow,
    WriteTo,
    transitions,
)

IDLE, PREPARING, PRECONNECTED = Phase.IDLE, Phase.PREPARING, Phase.PRECONNECTED
UNPREPARED, WRITING, ENDED = Phase.UNPREPARED, Phase.WRITING_TO_DESTINATION, Phase.ENDED
RUNNING, COMPLETED, FAILED = Progress.RUNNING, Progress.COMPLETED, Progress.FAILED
T0 = 100.0


def machine_in(phase: Phase) -> Switchover:
    """A machine of a VM with three followed sites, source site 0 on link 0, in ``phase``.
    A migration in progress goes to site 1 (link 1); site 2 is the other candidate."""
    machine = Switchover(site=0, link=0, sites=3, followed=frozenset({0, 1, 2}))
    steps: dict[Phase, list[Fact]] = {
        IDLE: [],
        PREPARING: [MigrationStatus(0, RUNNING), DestinationsFound((1, 2))],
        PRECONNECTED: [MigrationStatus(0, RUNNING), DestinationsFound((1, 2)), LinkUp(1)],
        UNPREPARED: [MigrationStatus(0, RUNNING), DestinationsFound(())],
        WRITING: [MigrationStatus(0, RUNNING), DestinationsFound((1, 2)), LinkUp(1),
                  GuestStopped(0, unread=100)],
        ENDED: [LinkEnded(0, "the agent port closed")],
    }
    for fact in steps[phase]:
        machine.handle(fact, T0)
    assert machine.phase is phase
    return machine


def kinds(commands: list[Command]) -> list[type]:
    """The commands' kinds, without the log lines."""
    return [type(c) for c in commands if not isinstance(c, Note)]


# ----------------------------------------------------------------------------- the table

#: (phase, fact, the phase after, the commands' kinds in order). One row at least per
#: (phase, fact kind); several where the fact's values lead to different outcomes.
ROWS: list[tuple[Phase, Fact, Phase, list[type]]] = [
    # IDLE: the source is read and written.
    (IDLE, MigrationStatus(0, RUNNING), PREPARING, [Hold, FindDestinations]),
    (IDLE, MigrationStatus(0, COMPLETED), ENDED, [End]),  # it went by unseen
    (IDLE, MigrationStatus(0, FAILED), IDLE, []),
    (IDLE, MigrationStatus(1, RUNNING), IDLE, []),  # not the source
    (IDLE, GuestStopped(0), IDLE, [Hold]),  # a pause (a save starts with one)
    (IDLE, GuestStopped(1), IDLE, []),  # not the source
    (IDLE, GuestResumed(0), IDLE, []),  # not paused: nothing held
    (IDLE, DestinationsFound((1,)), IDLE, []),  # for an aborted migration
    (IDLE, LinkUp(7), IDLE, [Close]),  # a stale connect attempt
    (IDLE, LinkFailed(7, "refused"), IDLE, []),
    (IDLE, LinkEnded(0, "the agent port closed"), ENDED, [End]),
    (IDLE, LinkEnded(7, "gone"), IDLE, []),
    (IDLE, Tick(), IDLE, []),
    (IDLE, Shutdown(), ENDED, [End]),
    # PREPARING: output held, connecting to site 1 (link 1).
    (PREPARING, MigrationStatus(0, RUNNING), PREPARING, []),
    (PREPARING, MigrationStatus(0, COMPLETED), PREPARING, []),  # switch once connected
    (PREPARING, MigrationStatus(0, FAILED), IDLE, [Close, Unfollow, Release, WriteTo]),
    (PREPARING, GuestStopped(0), PREPARING, []),  # remembered
    (PREPARING, GuestResumed(1), PREPARING, []),  # remembered: the guest saw us go
    (PREPARING, DestinationsFound((2,)), PREPARING, []),  # asked once
    (PREPARING, LinkUp(1), PRECONNECTED, []),
    (PREPARING, LinkUp(9), PREPARING, [Close]),
    (PREPARING, LinkFailed(1, "refused"), PREPARING, [Unfollow, Follow, Connect]),  # site 2
    (PREPARING, LinkFailed(9, "refused"), PREPARING, []),
    (PREPARING, LinkEnded(0, "reset"), ENDED, [Close, Unfollow, End]),  # before the stop
    (PREPARING, LinkEnded(1, "gone"), PREPARING, []),  # not connected yet: LinkFailed comes
    (PREPARING, Tick(), PREPARING, []),
    (PREPARING, Shutdown(), ENDED, [Close, Unfollow, End]),
    # PRECONNECTED: site 1 connected on link 1, held.
    (PRECONNECTED, MigrationStatus(0, RUNNING), PRECONNECTED, []),
    (PRECONNECTED, MigrationStatus(0, COMPLETED), IDLE,
     [CarryOver, ReadFrom, Release, WriteTo, Unfollow, Follow, Switched]),
    (PRECONNECTED, MigrationStatus(0, FAILED), IDLE, [Close, Unfollow, Release, WriteTo]),
    (PRECONNECTED, GuestStopped(0, unread=0), WRITING, [Record, Release, WriteTo]),
    (PRECONNECTED, GuestStopped(0, unread=50), WRITING, [Record, CarryOver, Release, WriteTo]),
    (PRECONNECTED, GuestStopped(0, unread=50, kept=False), WRITING, [Record, Release, WriteTo]),
    (PRECONNECTED, GuestStopped(0, unread=None), WRITING, [Record, Release, WriteTo]),
    (PRECONNECTED, GuestStopped(2), PRECONNECTED, []),
    (PRECONNECTED, GuestResumed(1), IDLE,
     [CarryOver, ReadFrom, Release, WriteTo, Unfollow, Follow, Switched]),
    (PRECONNECTED, GuestResumed(0), PRECONNECTED, []),
    (PRECONNECTED, DestinationsFound((2,)), PRECONNECTED, []),
    (PRECONNECTED, LinkUp(9), PRECONNECTED, [Close]),
    (PRECONNECTED, LinkFailed(9, "refused"), PRECONNECTED, []),
    (PRECONNECTED, LinkEnded(1, "closed"), PREPARING, [Close, Unfollow, Follow, Connect]),
    (PRECONNECTED, LinkEnded(0, "closed"), ENDED, [Close, Unfollow, End]),  # before its stop
    (PRECONNECTED, Tick(), PRECONNECTED, []),
    (PRECONNECTED, Shutdown(), ENDED, [Close, Unfollow, End]),
    # UNPREPARED: no destination; the output goes to the source.
    (UNPREPARED, MigrationStatus(0, RUNNING), UNPREPARED, []),
    (UNPREPARED, MigrationStatus(0, COMPLETED), ENDED, [End]),  # the reconnect is fresh
    (UNPREPARED, MigrationStatus(0, FAILED), IDLE, [Release, WriteTo]),
    (UNPREPARED, GuestStopped(0), UNPREPARED, []),
    (UNPREPARED, GuestResumed(1), UNPREPARED, []),
    (UNPREPARED, DestinationsFound((1,)), UNPREPARED, []),
    (UNPREPARED, LinkUp(9), UNPREPARED, [Close]),
    (UNPREPARED, LinkFailed(9, "refused"), UNPREPARED, []),
    (UNPREPARED, LinkEnded(0, "closed"), ENDED, [End]),
    (UNPREPARED, Tick(), UNPREPARED, []),
    (UNPREPARED, Shutdown(), ENDED, [End]),
    # WRITING_TO_DESTINATION: the source stopped with 100 bytes unread, carried over.
    (WRITING, MigrationStatus(0, RUNNING), WRITING, []),
    (WRITING, MigrationStatus(0, COMPLETED), IDLE,
     [Record, ReadFrom, Release, WriteTo, Unfollow, Follow, Switched]),
    (WRITING, MigrationStatus(0, FAILED), IDLE, [Resend, Close, Unfollow, Release, WriteTo]),
    (WRITING, GuestStopped(0), WRITING, []),  # STOP twice
    (WRITING, GuestResumed(1), IDLE,
     [Record, ReadFrom, Release, WriteTo, Unfollow, Follow, Switched]),
    (WRITING, GuestResumed(0), UNPREPARED, [Resend, Close, Unfollow, Release, WriteTo]),
    (WRITING, DestinationsFound((2,)), WRITING, []),
    (WRITING, LinkUp(9), WRITING, [Close]),
    (WRITING, LinkFailed(9, "refused"), WRITING, []),
    (WRITING, LinkEnded(1, "closed"), UNPREPARED, [Resend, Close, Unfollow, Release, WriteTo]),
    (WRITING, LinkEnded(0, "closed"), WRITING, []),  # the source quits: RESUME is coming
    (WRITING, Tick(), WRITING, []),
    (WRITING, Shutdown(), ENDED, [Close, Unfollow, End]),
    # ENDED: nothing happens any more, but a stale link is closed.
    (ENDED, MigrationStatus(0, RUNNING), ENDED, []),
    (ENDED, GuestStopped(0), ENDED, []),
    (ENDED, GuestResumed(1), ENDED, []),
    (ENDED, DestinationsFound((1,)), ENDED, []),
    (ENDED, LinkUp(9), ENDED, [Close]),
    (ENDED, LinkFailed(9, "refused"), ENDED, []),
    (ENDED, LinkEnded(0, "closed"), ENDED, []),
    (ENDED, Tick(), ENDED, []),
    (ENDED, Shutdown(), ENDED, []),
]


@pytest.mark.parametrize(("phase", "fact", "after", "commands"), ROWS,
                         ids=[f"{p.name}-{f!r}" for p, f, _, _ in ROWS])
def test_each_phase_and_fact_leads_where_the_table_says(
    phase: Phase, fact: Fact, after: Phase, commands: list[type]
) -> None:
    machine = machine_in(phase)
    assert kinds(machine.handle(fact, T0 + 1)) == commands
    assert machine.phase is after


def test_the_table_has_every_phase_and_fact_and_the_machine_too() -> None:
    pairs = {(phase, kind) for phase in Phase for kind in FACT_TYPES}
    assert {(phase, type(fact)) for phase, fact, _, _ in ROWS} == pairs
    assert set(transitions()) == pairs


def test_a_fact_outside_the_table_is_a_local_error() -> None:
    machine = machine_in(IDLE)

    @dataclass(frozen=True)
    class Unknown:
        pass

    with pytest.raises(LocalProtocolError, match="no transition for Unknown in idle"):
        machine.handle(Unknown(), T0)  # type: ignore[arg-type]


def test_a_source_site_out_of_range_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        Switchover(site=2, link=0, sites=2)


# ----------------------------------------------------------------------------- odd cases


def test_the_commands_of_a_switch_in_order_with_their_values() -> None:
    machine = machine_in(WRITING)
    commands = [c for c in machine.handle(GuestResumed(1), T0 + 0.25) if not isinstance(c, Note)]
    assert commands == [Record(1, on=False), ReadFrom(1, retire=0), Release(1), WriteTo(1),
                        Unfollow(0), Follow(1), Switched(1, 1, 0.25)]
    assert (machine.site, machine.link, machine.writer) == (1, 1, 1)


def test_the_unread_tail_goes_to_the_destination_and_is_not_resent_on_failure() -> None:
    machine = machine_in(PRECONNECTED)
    stop = machine.handle(GuestStopped(0, unread=123), T0)
    assert CarryOver(0, 1, 123) in stop
    assert stop.index(Record(1)) < stop.index(CarryOver(0, 1, 123)), "the carry-over is recorded"
    failed = machine.handle(MigrationStatus(0, FAILED), T0)
    assert Resend(1, 0, skip=123) in failed


def test_resume_on_the_destination_before_the_preconnect_finished_starts_afresh() -> None:
    machine = machine_in(PREPARING)
    assert machine.handle(GuestStopped(0), T0) == []
    assert machine.handle(GuestResumed(1), T0) == []
    commands = machine.handle(LinkUp(1), T0 + 1)
    assert Announce(1) in commands, "the guest saw no host at its resume: a fresh announce"
    assert ReadFrom(1, retire=0) in commands
    switched = next(c for c in commands if isinstance(c, Switched))
    assert switched.fresh and machine.phase is IDLE and machine.site == 1


def test_completed_before_the_preconnect_finished_switches_afresh_once_connected() -> None:
    # The guest may well have resumed there already, with no host on its port.
    machine = machine_in(PREPARING)
    machine.handle(GuestStopped(0, unread=10), T0)
    machine.handle(MigrationStatus(0, COMPLETED), T0)
    commands = machine.handle(LinkUp(1), T0)
    assert Announce(1) in commands and not any(isinstance(c, CarryOver) for c in commands)
    assert machine.phase is IDLE and machine.site == 1


def test_stop_twice_carries_over_once() -> None:
    machine = machine_in(PRECONNECTED)
    first = machine.handle(GuestStopped(0, unread=5), T0)
    assert machine.handle(GuestStopped(0, unread=9), T0) == []
    assert [c for c in first if isinstance(c, CarryOver)] == [CarryOver(0, 1, 5)]


def test_a_failure_after_stop_sends_the_source_what_went_to_the_destination() -> None:
    machine = machine_in(WRITING)  # 100 bytes carried over
    commands = machine.handle(MigrationStatus(0, FAILED), T0)
    assert commands[:4] == [Resend(1, 0, skip=100), Close(1), Unfollow(1), Release(0)]
    assert WriteTo(0) in commands and machine.writer == 0 and machine.phase is IDLE


def test_the_destination_closing_while_held_tries_the_next_candidate_then_the_source() -> None:
    machine = machine_in(PRECONNECTED)
    commands = machine.handle(LinkEnded(1, "closed"), T0)
    assert Connect(2, 2) in commands and machine.phase is PREPARING
    commands = machine.handle(LinkFailed(2, "refused"), T0)
    assert Release(0) in commands and machine.phase is UNPREPARED


def test_a_second_migration_starts_from_the_destination() -> None:
    machine = machine_in(WRITING)
    machine.handle(GuestResumed(1), T0)
    assert (machine.phase, machine.site, machine.link) == (IDLE, 1, 1)
    assert machine.handle(MigrationStatus(0, COMPLETED), T0) == [], "the old source's news"
    assert machine.handle(LinkEnded(0, "closed"), T0) == [], "the old source quits"
    commands = machine.handle(MigrationStatus(1, RUNNING), T0)
    assert Hold(1) in commands and FindDestinations(1) in commands
    commands = machine.handle(DestinationsFound((0, 2)), T0)
    assert Connect(2, 0) in commands, "link numbers go on; back to site 0"
    machine.handle(LinkUp(2), T0)
    machine.handle(GuestStopped(1, unread=0), T0)
    machine.handle(GuestResumed(0), T0)
    assert (machine.phase, machine.site, machine.link) == (IDLE, 0, 2)


def test_a_paused_guest_gets_nothing_until_it_runs_again() -> None:
    """A paused guest reads nothing; a save ends its QEMU with what the socket holds. So the
    output waits in the session, and goes out when the guest runs (or with the session into
    a restore)."""
    machine = machine_in(IDLE)
    assert kinds(machine.handle(GuestStopped(0), T0)) == [Hold]
    assert machine.handle(GuestStopped(0), T0) == []  # paused twice: held once
    assert machine.handle(GuestResumed(0), T0) == [Release(0)]
    assert machine.handle(GuestResumed(0), T0) == []  # not paused any more
    assert machine.phase is IDLE and not machine.paused


def test_a_migration_of_a_paused_guest_holds_and_releases_as_migrations_do() -> None:
    machine = machine_in(IDLE)
    machine.handle(GuestStopped(0), T0)
    assert kinds(machine.handle(MigrationStatus(0, RUNNING), T0)) == [Hold, FindDestinations]
    assert kinds(machine.handle(MigrationStatus(0, FAILED), T0)) == [Release, WriteTo]
    assert machine.phase is IDLE and not machine.paused


def test_a_pause_of_the_source_while_preparing_is_not_the_final_stop() -> None:
    machine = machine_in(PREPARING)
    machine.handle(GuestStopped(0), T0)
    machine.handle(GuestResumed(0), T0)  # the user resumed it: the migration goes on
    commands = machine.handle(LinkUp(1), T0)
    assert machine.phase is PRECONNECTED and not any(isinstance(c, WriteTo) for c in commands)


def test_a_pause_of_the_source_while_writing_goes_back_to_the_source_unprepared() -> None:
    machine = machine_in(WRITING)
    commands = machine.handle(GuestResumed(0), T0)
    assert commands[1:3] == [Resend(1, 0, skip=100), Close(1)]
    assert machine.phase is UNPREPARED and machine.writer == 0
    assert kinds(machine.handle(MigrationStatus(0, COMPLETED), T0)) == [End]


def test_the_source_quitting_after_its_stop_waits_for_the_resume_then_switches() -> None:
    machine = machine_in(WRITING)
    assert machine.handle(LinkEnded(0, "closed"), T0) == []
    assert machine.next_deadline() == T0 + SOURCE_GONE_GRACE
    assert machine.handle(Tick(), T0 + 1) == [], "not due yet"
    commands = machine.handle(Tick(), T0 + SOURCE_GONE_GRACE)
    assert any(isinstance(c, Switched) for c in commands) and machine.site == 1
    assert machine.next_deadline() is None


def test_the_source_quitting_after_completed_but_before_its_stop_waits_the_grace() -> None:
    machine = machine_in(PREPARING)
    machine.handle(MigrationStatus(0, COMPLETED), T0)  # its STOP not seen (yet)
    assert machine.handle(LinkEnded(0, "closed"), T0) == []
    machine.handle(LinkFailed(1, "refused"), T0)
    commands = machine.handle(LinkFailed(2, "refused"), T0)
    assert kinds(commands) == [Unfollow, End] and machine.phase is ENDED


def test_a_failure_after_the_source_is_gone_ends_the_conversation() -> None:
    machine = machine_in(WRITING)
    machine.handle(LinkEnded(0, "closed"), T0)
    assert kinds(machine.handle(MigrationStatus(0, FAILED), T0)) == [Close, Unfollow, End]


def test_the_source_quitting_while_completed_waits_for_the_connect() -> None:
    machine = machine_in(PREPARING)
    machine.handle(GuestStopped(0, unread=0), T0)
    machine.handle(MigrationStatus(0, COMPLETED), T0)
    assert machine.handle(LinkEnded(0, "closed"), T0) == []
    commands = machine.handle(LinkUp(1), T0)
    assert Switched(1, 1, 0.0, fresh=True) in commands


def test_no_destination_at_all_warns_and_lets_the_output_go_to_the_source() -> None:
    machine = machine_in(IDLE)
    machine.handle(MigrationStatus(0, RUNNING), T0)
    commands = machine.handle(DestinationsFound(()), T0)
    assert any(isinstance(c, Note) and c.level == logging.WARNING for c in commands)
    assert Release(0) in commands


def test_sites_without_a_follower_are_neither_followed_nor_unfollowed() -> None:
    machine = Switchover(site=0, link=0, sites=2)
    assert machine.start_commands() == []
    machine.handle(MigrationStatus(0, RUNNING), T0)
    assert machine.handle(DestinationsFound((1,)), T0) == [Connect(1, 1)]
    machine.handle(LinkUp(1), T0)
    commands = machine.handle(MigrationStatus(0, COMPLETED), T0)
    assert not any(isinstance(c, Follow | Unfollow) for c in commands)


def test_a_site_added_later_can_be_a_destination() -> None:
    machine = Switchover(site=0, link=0, sites=1, followed=frozenset({0}))
    assert machine.add_site(followed=True) == 1
    machine.handle(MigrationStatus(0, RUNNING), T0)
    assert Connect(1, 1) in machine.handle(DestinationsFound((1,)), T0)


# ----------------------------------------------------------------------------- the property


@dataclass
class _Link:
    site: int
    held: bool = False
    closed: bool = False
    written: list[int] = field(default_factory=list)
    record: list[int] | None = None


class World(RuleBasedStateMachine):
    """QEMU processes at three sites, each with an agent port a link may be connected to,
    and a guest that runs at one site and reads its port. Our output is numbered bytes; the
    guest must receive exactly the numbers produced, in order, each once."""

    @initialize()
    def start(self) -> None:
        self.now = T0
        self.machine = Switchover(site=0, link=0, sites=3, followed=frozenset({0, 1, 2}))
        self.links: dict[int, _Link] = {0: _Link(0)}
        self.port: dict[int, int] = {0: 0}  # site -> the link connected to its agent port
        self.guest_site = 0
        self.running = True
        self.consumed: dict[int, int] = {0: 0}  # link -> how much of it the guest read
        self.received: list[int] = []
        self.produced = 0
        self.base = 0  # numbers below were produced before the last fresh start
        self.queue: list[int] = []
        self.writer = 0
        self.reading = {0}
        self.find_pending = False
        self.connects: dict[int, int] = {}  # link -> site, being connected
        self.migration: str | None = None  # "running", "stopped", "completed"
        self.target = 1
        self.target_alive = True
        self.guest_saw_host_go = False
        self.ended = False
        self._feed_all(self.machine.start_commands())

    # ------------------------------------------------------------ the driver, modelled

    def _feed(self, fact: Fact) -> None:
        if self.ended:
            return
        self._feed_all(self.machine.handle(fact, self.now))

    def _feed_all(self, commands: list[Command]) -> None:
        for command in commands:
            self._apply(command)
        self._flush()

    def _write(self, link: int, numbers: list[int]) -> None:
        target = self.links[link]
        if target.closed:
            return
        target.written += numbers
        if target.record is not None:
            target.record += numbers

    def _flush(self) -> None:
        writer = self.links[self.writer]
        if not writer.held and not writer.closed and self.queue:
            self._write(self.writer, self.queue)
            self.queue = []

    def _apply(self, command: Command) -> None:  # noqa: C901 - one case a command
        links = self.links
        if isinstance(command, Hold):
            links[command.link].held = True
        elif isinstance(command, Release):
            links[command.link].held = False
        elif isinstance(command, WriteTo):
            self.writer = command.link
        elif isinstance(command, Record):
            links[command.link].record = [] if command.on else None
        elif isinstance(command, CarryOver):
            source = links[command.source]
            count = command.count
            if count is None:
                count = len(source.written) - self.consumed.get(command.source, 0)
            if count:
                self._write(command.to, source.written[-count:])
        elif isinstance(command, Resend):
            record = links[command.recorded].record or []
            self._write(command.to, record[command.skip:])
        elif isinstance(command, FindDestinations):
            self.find_pending = True
        elif isinstance(command, Connect):
            self.connects[command.link] = command.site
        elif isinstance(command, Close):
            self.connects.pop(command.link, None)
            if command.link in links:
                self._close_link(command.link)
        elif isinstance(command, ReadFrom):
            if command.retire is not None:
                self.reading.discard(command.retire)
                self._close_link(command.retire)
            self.reading.add(command.link)
        elif isinstance(command, Announce):
            # session.start(): the queue is dropped, the conversation begins again.
            self.queue = []
            self.base = self.produced
            self.received = []
            self.guest_saw_host_go = False
            self.consumed[command.link] = len(links[command.link].written)
        elif isinstance(command, Switched):
            assert command.fresh or not self.guest_saw_host_go, \
                "continued a conversation the guest saw end"
        elif isinstance(command, End):
            self.ended = True
        # Follow, Unfollow, Note: nothing to model.

    def _close_link(self, link: int) -> None:
        """Our side closes: its QEMU's port has no host any more (a guest that runs there,
        or resumes there, sees the host go)."""
        self.links[link].closed = True
        site = self.links[link].site
        if self.port.get(site) == link:
            del self.port[site]
            if site == self.guest_site and self.running:
                self.guest_saw_host_go = True

    # ------------------------------------------------------------ what happens

    @rule(count=st.integers(0, 6), reads=st.integers(0, 4))
    def produce_and_read(self, count: int, reads: int) -> None:
        """A bridge queues output (and the runtime flushes); the guest reads some."""
        self.queue += range(self.produced, self.produced + count)
        self.produced += count
        self._flush()
        link = self.port.get(self.guest_site)
        if not self.running or link is None:
            return
        written = self.links[link].written
        start = self.consumed.get(link, 0)
        self.received += written[start:start + reads]
        self.consumed[link] = min(len(written), start + reads)

    @precondition(lambda self: self.migration is None and not self.ended
                  and self.guest_site in self.port)
    @rule(destination=st.sampled_from([0, 1, 2]))
    def migration_starts(self, destination: int) -> None:
        if destination == self.guest_site:
            return
        self.migration, self.target, self.target_alive = "running", destination, True
        self._feed(MigrationStatus(self.guest_site, RUNNING))

    @precondition(lambda self: self.find_pending and not self.ended)
    @rule(found=st.sampled_from(["target", "both", "none"]))
    def destinations_found(self, found: str) -> None:
        self.find_pending = False
        other = 3 - self.guest_site - self.target
        if not self.target_alive:  # it died: the search finds the other one only
            sites = {"target": (), "both": (other,), "none": ()}[found]
        else:
            sites = {"target": (self.target,), "both": (other, self.target), "none": ()}[found]
        self._feed(DestinationsFound(sites))

    @precondition(lambda self: bool(self.connects) and not self.ended)
    @rule(data=st.data())
    def connect_finishes(self, data: st.DataObject) -> None:
        link = data.draw(st.sampled_from(sorted(self.connects)))
        site = self.connects.pop(link)
        # The destination's QEMU waits for the migration, or runs the guest after it.
        migrating = self.migration in ("running", "stopped", "paused")
        waiting = site == self.target and self.target_alive and (
            migrating or self.guest_site == site)
        if waiting and site not in self.port and data.draw(st.booleans()):
            self.links[link] = _Link(site, held=True)
            self.port[site] = link
            self.consumed[link] = 0
            self._feed(LinkUp(link))
        else:
            self._feed(LinkFailed(link, "refused"))

    @precondition(lambda self: self.migration == "running" and not self.ended)
    @rule()
    def source_stops(self) -> None:
        self.migration, self.running = "stopped", False
        unread = self._unread_at_guest()
        self._feed(GuestStopped(self.guest_site, unread=unread))

    @precondition(lambda self: self.migration == "running" and not self.ended)
    @rule()
    def source_pauses(self) -> None:
        """The user pauses the guest during the migration: not its final stop."""
        self.migration, self.running = "paused", False
        self._feed(GuestStopped(self.guest_site, unread=self._unread_at_guest()))

    @precondition(lambda self: self.migration == "paused" and not self.ended)
    @rule()
    def source_resumes(self) -> None:
        self.migration, self.running = "running", True
        self._feed(GuestResumed(self.guest_site))

    @precondition(lambda self: self.migration in ("running", "stopped") and not self.ended
                  and self.target_alive and self.target in self.port)
    @rule()
    def destination_dies(self) -> None:
        """The destination QEMU goes away (its migration will fail)."""
        link = self.port.pop(self.target)
        self.target_alive = False
        self._feed(LinkEnded(link, "closed"))

    @precondition(lambda self: self.migration == "stopped" and not self.ended
                  and self.target_alive)
    @rule(order=st.sampled_from(["completed first", "resume first", "completed only",
                                 "resume only"]))
    def migration_completes(self, order: str) -> None:
        source = self.guest_site
        self.migration, self.guest_site, self.running = None, self.target, True
        if self.target not in self.port:
            self.guest_saw_host_go = True  # no host on its port when it resumed
        facts = {"completed first": [MigrationStatus(source, COMPLETED),
                                     GuestResumed(self.target)],
                 "resume first": [GuestResumed(self.target), MigrationStatus(source, COMPLETED)],
                 "completed only": [MigrationStatus(source, COMPLETED)],
                 "resume only": [GuestResumed(self.target)]}[order]
        source_link = self.port.pop(source)  # the source QEMU quits
        for fact in facts:
            self._feed(fact)
        self._feed(LinkEnded(source_link, "closed"))
        self._settle_destination_ports()

    @precondition(lambda self: self.migration == "running" and not self.ended
                  and self.target_alive)
    @rule(resume=st.booleans())
    def migration_completes_unseen(self, resume: bool) -> None:
        """The source stopped and completed, and only its COMPLETED (or the destination's
        RESUME) is seen: a monitor that polls, or events that came too late."""
        source = self.guest_site
        self.migration, self.guest_site, self.running = None, self.target, True
        if self.target not in self.port:
            self.guest_saw_host_go = True
        source_link = self.port.pop(source)
        self._feed(GuestResumed(self.target) if resume else MigrationStatus(source, COMPLETED))
        self._feed(LinkEnded(source_link, "closed"))
        self._settle_destination_ports()

    @precondition(lambda self: self.migration in ("running", "stopped", "paused")
                  and not self.ended)
    @rule(resume=st.booleans())
    def migration_fails(self, resume: bool) -> None:
        self.migration, self.running = None, True
        self._feed(MigrationStatus(self.guest_site, FAILED))
        if resume:
            self._feed(GuestResumed(self.guest_site))
        self._settle_destination_ports()

    @precondition(lambda self: not self.ended)
    @rule(seconds=st.sampled_from([0.5, SOURCE_GONE_GRACE]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        deadline = self.machine.next_deadline()
        if deadline is not None and self.now >= deadline:
            self._feed(Tick())

    def _unread_at_guest(self) -> int:
        link = self.port.get(self.guest_site)
        return 0 if link is None else len(self.links[link].written) - self.consumed[link]

    def _settle_destination_ports(self) -> None:
        """After a migration, only the guest's QEMU keeps a port; a link to another site is
        a destination that is gone (its QEMU quit)."""
        for site in list(self.port):
            if site != self.guest_site:
                link = self.port.pop(site)
                if not self.links[link].closed:
                    self._feed(LinkEnded(link, "closed"))

    # ------------------------------------------------------------ what must hold

    @invariant()
    def at_most_one_link_is_read(self) -> None:
        if hasattr(self, "reading"):
            assert len(self.reading) <= 1

    @invariant()
    def the_guest_gets_each_byte_once_in_order(self) -> None:
        if not hasattr(self, "received") or self.guest_saw_host_go:
            return
        assert self.received == list(range(self.base, self.base + len(self.received)))

    @invariant()
    def once_settled_everything_reaches_the_guest(self) -> None:
        if not hasattr(self, "machine") or self.ended or self.guest_saw_host_go:
            return
        if self.machine.phase is not IDLE or self.migration is not None:
            return
        link = self.port.get(self.guest_site)
        if link is None or self.machine.writer != link:
            return
        written = self.links[link].written
        assert not self.links[link].held
        rest = written[self.consumed[link]:]
        assert self.received + rest == list(range(self.base, self.produced)), "lost"


TestWorld = World.TestCase
TestWorld.settings = settings(max_examples=1000, stateful_step_count=30, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
