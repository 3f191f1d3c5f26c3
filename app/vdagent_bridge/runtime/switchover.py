"""A live migration's switchover, sans-IO: which connection the conversation is read from and
which one it is written to while the guest moves from one QEMU to another.

Theory of operation
-------------------
One :class:`HostSession` holds a VM's conversation; its bytes go to the guest through a
*link*, one connection to one *site*'s agent port (a site is one QEMU, or one libvirt host,
that may run the VM). While no migration runs, one link (the *source*) is read and written.
When the guest agent must not notice a migration, the host must be connected to the
destination's agent port before the guest resumes there, and nothing it wrote may be lost or
delivered twice across the move (see docs: QEMU delivers bytes written to the destination's
port while it waits for the incoming migration once the guest resumes; the source, once
stopped, never reads again; the source's socket gets no EOF until the source QEMU quits).

:class:`Switchover` decides, from *facts* the drivers observe, what *commands* they carry out;
it has no sockets, no tasks and no clock (``now`` comes with each fact). The phases:

``IDLE``
    No migration: the source is read and written.
``PREPARING``
    The source reported a migration: our output is *held* (queued in the session, written
    nowhere, so nothing can be left unread in the source when it stops) while the drivers
    find the destinations and connect to them in turn (held as well).
``PRECONNECTED``
    A destination is connected and held. Still nothing is written.
``UNPREPARED``
    A migration runs and no destination could be reached: the output goes to the source
    again, and after the migration the guest sees the host reconnect (a fresh announce).
``WRITING_TO_DESTINATION``
    The source stopped the guest for the final copy: the output goes to the destination
    (delivered when the guest resumes there), after what the source had left unread of ours
    (it is lost with the source), and is *recorded* in case the migration fails. The source
    is still read: the guest's last messages may be in its socket.
``ENDED``
    The conversation's connection is lost (terminal): the caller reconnects, afresh.

The migration ends in one of two ways, after which the phase is ``IDLE`` again (so the next
migration can start from the destination):

- *switched*: the destination resumed the guest (its RESUME, or the source's COMPLETED):
  reading moves to the destination once the source has delivered its last input;
- *aborted*: the source reported FAILED or CANCELLED: the destination is closed, and what
  was written to it after the stop goes to the source first (less what the source had left
  unread: it still has those), so the guest, which goes on running on the source, sees every
  byte exactly once.

Rules kept in every phase: at most one link is read; a held link is written nothing of the
session's output; each byte of the session's output reaches the guest once, in order (the
property tests check these over random fact sequences). Facts about a site or link that is
not part of the current migration (a late event of a previous source, a connect attempt that
finished after the migration was aborted) change nothing, except that a stale link that comes
up is closed. Every (phase, fact) pair is in :data:`_TABLE`; a missing pair is a bug and
raises :class:`~vdagent_bridge.protocol.LocalProtocolError`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol import LocalProtocolError

#: After the source's connection ends in the middle of a migration's final phase (the source
#: QEMU quits right after it completes), how long the machine waits for the facts that say
#: where the guest went, before it decides.
SOURCE_GONE_GRACE = 5.0


class Phase(enum.Enum):
    """Where a migration's switchover stands (see the module docstring)."""

    IDLE = "idle"
    PREPARING = "preparing"
    PRECONNECTED = "preconnected"
    UNPREPARED = "unprepared"
    WRITING_TO_DESTINATION = "writing to destination"
    ENDED = "ended"


class Progress(enum.Enum):
    """A migration's status as the source's QEMU (or libvirt) reports it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Site ``site`` reports the status of its outgoing migration."""

    site: int
    progress: Progress


@dataclass(frozen=True, slots=True)
class GuestStopped:
    """Site ``site`` paused the guest (QMP STOP; for the source: the final copy begins).

    ``unread`` is how many bytes written to the source link its peer has not read (None
    where that cannot be known); ``kept`` whether those bytes are still at hand to be written
    again elsewhere. The driver measures both when the fact comes from the source.
    """

    site: int
    unread: int | None = 0
    kept: bool = True


@dataclass(frozen=True, slots=True)
class GuestResumed:
    """Site ``site`` runs the guest (QMP RESUME; on a destination: the switchover)."""

    site: int


@dataclass(frozen=True, slots=True)
class DestinationsFound:
    """The answer to :class:`FindDestinations`: sites that may receive the migration, best
    first (possibly none)."""

    sites: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The connection :class:`Connect` asked for is open (and held)."""

    link: int


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """The connection :class:`Connect` asked for could not be opened."""

    link: int
    reason: str


@dataclass(frozen=True, slots=True)
class LinkEnded:
    """A link's connection ended: the peer closed it, or it broke."""

    link: int
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The deadline of :meth:`Switchover.next_deadline` has passed."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The runtime stops: let go of everything."""


Fact = (
    MigrationStatus | GuestStopped | GuestResumed | DestinationsFound | LinkUp | LinkFailed
    | LinkEnded | Tick | Shutdown
)

FACT_TYPES: tuple[type[Fact], ...] = (
    MigrationStatus, GuestStopped, GuestResumed, DestinationsFound, LinkUp, LinkFailed,
    LinkEnded, Tick, Shutdown,
)
"""Every kind of fact (for the table and its test)."""


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Hold:
    """Write nothing of the session's output to ``link`` (it stays queued in the session)."""

    link: int


@dataclass(frozen=True, slots=True)
class Release:
    """Let ``link`` write the session's output again."""

    link: int


@dataclass(frozen=True, slots=True)
class FindDestinations:
    """Find the sites other than ``source`` that may receive the migration; answer with
    :class:`DestinationsFound`."""

    source: int


@dataclass(frozen=True, slots=True)
class Connect:
    """Open ``link`` to ``site``'s agent port, held and without announcing (the guest must
    not notice); answer with :class:`LinkUp` or :class:`LinkFailed`."""

    link: int
    site: int


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``link`` (or give up the attempt to open it)."""

    link: int


@dataclass(frozen=True, slots=True)
class Follow:
    """Watch ``site``'s migration facts (start, or start over: it became the source)."""

    site: int


@dataclass(frozen=True, slots=True)
class Unfollow:
    """Stop watching ``site``."""

    site: int


@dataclass(frozen=True, slots=True)
class Record:
    """Keep a copy of everything written to ``link`` from now on (``on=False``: stop and
    drop it)."""

    link: int
    on: bool = True


@dataclass(frozen=True, slots=True)
class CarryOver:
    """Write the last ``count`` bytes written to ``source`` onto ``to``, first: what the
    source left unread. ``count`` None: as many as its peer has left unread now."""

    source: int
    to: int
    count: int | None


@dataclass(frozen=True, slots=True)
class WriteTo:
    """From now on the session's output goes to ``link``."""

    link: int


@dataclass(frozen=True, slots=True)
class Resend:
    """Write what was recorded on ``recorded`` (less its first ``skip`` bytes) onto ``to``,
    before anything else."""

    recorded: int
    to: int
    skip: int


@dataclass(frozen=True, slots=True)
class ReadFrom:
    """Read ``link`` from now on; first let ``retire`` deliver what its peer sent before
    it stopped, then close it."""

    link: int
    retire: int | None


@dataclass(frozen=True, slots=True)
class Announce:
    """Start the conversation afresh on ``link`` (caps with request=1): the guest saw the
    host go."""

    link: int


@dataclass(frozen=True, slots=True)
class Switched:
    """The guest runs at ``site`` now, reached over ``link``, ``seconds`` after the migration
    started; ``fresh`` when the conversation had to start over."""

    site: int
    link: int
    seconds: float
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Note:
    """Something to log (``level`` as in :mod:`logging`)."""

    level: int
    text: str


@dataclass(frozen=True, slots=True)
class End:
    """The connection is lost: reconnect (afresh), starting with ``next_site``."""

    reason: str
    next_site: int


Command = (
    Hold | Release | FindDestinations | Connect | Close | Follow | Unfollow | Record
    | CarryOver | WriteTo | Resend | ReadFrom | Announce | Switched | Note | End
)


# --------------------------------------------------------------------------- the machine


@dataclass(slots=True)
class _Attempt:
    """The migration in progress (PREPARING .. WRITING_TO_DESTINATION)."""

    started: float
    #: Sites still to try as the destination, best first (None: not found yet).
    candidates: list[int] | None = None
    #: The destination: its site, and the link to it (once asked for).
    site: int | None = None
    link: int | None = None
    connected: bool = False
    stopped: bool = False
    #: What the source left unread at its stop (None: not known).
    unread: int | None = 0
    kept: bool = True
    #: Bytes at the start of the destination's record that the source still has.
    carried: int = 0
    completed: bool = False
    #: The destination resumed the guest before we were connected to it.
    resumed_early: bool = False
    #: When the source's connection ended (None: it has not).
    source_gone: float | None = None


class Switchover:
    """The switchover machine for one connected conversation; see the module docstring.

    ``site`` and ``link`` name the source (the site the conversation is connected to, and
    its link); ``sites`` how many sites the VM has; ``followed`` the sites whose migration
    facts can be watched (a QMP monitor, libvirt events). Link numbers start above ``link``.
    Feed facts to :meth:`handle`; it returns the commands to carry out, in order.
    """

    def __init__(self, *, site: int, link: int, sites: int,
                 followed: frozenset[int] = frozenset()) -> None:
        if not 0 <= site < sites:
            raise LocalProtocolError(f"source site {site} out of range (0..{sites - 1})")
        self.phase = Phase.IDLE
        self.site = site
        self.link = link
        self.writer = link
        self.sites = sites
        self.followed = followed
        self._next_link = link + 1
        self._attempt: _Attempt | None = None

    # ---------------------------------------------------------------- queries

    @property
    def destination(self) -> int | None:
        """The link to the destination, while one is open or being opened."""
        attempt = self._attempt
        return None if attempt is None else attempt.link

    @property
    def migrating(self) -> bool:
        return self.phase not in (Phase.IDLE, Phase.ENDED)

    def next_deadline(self) -> float | None:
        """When a :class:`Tick` is due (None: no deadline)."""
        attempt = self._attempt
        if attempt is None or attempt.source_gone is None:
            return None
        return attempt.source_gone + SOURCE_GONE_GRACE

    def add_site(self, *, followed: bool) -> int:
        """The VM may run at one more site (a new migration destination); its index."""
        index = self.sites
        self.sites += 1
        if followed:
            self.followed = self.followed | {index}
        return index

    def start_commands(self) -> list[Command]:
        """What to do when the conversation connects: follow the source."""
        return [Follow(self.site)] if self.site in self.followed else []

    # ---------------------------------------------------------------- input

    def handle(self, fact: Fact, now: float) -> list[Command]:
        """Apply ``fact`` (observed at ``now``); the commands to carry out, in order.

        :raises LocalProtocolError: a (phase, fact) pair the table does not have (a bug).
        """
        handler = _TABLE.get((self.phase, type(fact)))
        if handler is None:
            raise LocalProtocolError(f"no transition for {type(fact).__name__} in "
                                     f"{self.phase.value}")
        out: list[Command] = []
        handler(self, fact, now, out)
        return out

    # ---------------------------------------------------------------- helpers

    def _new_link(self) -> int:
        link = self._next_link
        self._next_link += 1
        return link

    def _other_site(self) -> int:
        return (self.site + 1) % self.sites

    def _end(self, out: list[Command], reason: str, next_site: int | None = None) -> None:
        attempt = self._attempt
        if attempt is not None and attempt.link is not None:
            out.append(Close(attempt.link))
            if attempt.site is not None and attempt.site in self.followed:
                out.append(Unfollow(attempt.site))
        self._attempt = None
        self.phase = Phase.ENDED
        out.append(End(reason, self.site if next_site is None else next_site))

    def _try_next(self, out: list[Command], now: float) -> None:
        """Connect to the next candidate; without one, let the output go to the source."""
        attempt = self._attempt
        assert attempt is not None and attempt.candidates is not None
        if attempt.site is not None and attempt.site in self.followed:
            out.append(Unfollow(attempt.site))
        attempt.site = attempt.link = None
        attempt.connected = attempt.resumed_early = False
        if attempt.candidates:
            site = attempt.candidates.pop(0)
            attempt.site, attempt.link = site, self._new_link()
            self.phase = Phase.PREPARING
            if site in self.followed:
                out.append(Follow(site))
            out.append(Connect(attempt.link, site))
            return
        if attempt.completed or attempt.source_gone is not None:
            self._end(out, "the VM migrated and no destination agent port could be reached",
                      self._other_site())
            return
        self.phase = Phase.UNPREPARED
        if attempt.stopped:
            out.append(Note(logging.WARNING, "the source stopped and no destination agent "
                            "port is reachable: the guest will see the host reconnect"))
        else:
            out.append(Note(logging.WARNING, "a migration started but no destination agent "
                            "port is reachable: the guest will see the host reconnect after "
                            "it"))
        out.append(Release(self.link))

    def _start_writing(self, out: list[Command]) -> None:
        """The source stopped and the destination is connected: write there from now on."""
        attempt = self._attempt
        assert attempt is not None and attempt.link is not None
        out.append(Record(attempt.link))
        if attempt.unread is None:
            out.append(Note(logging.WARNING, "the source stopped and how much of our output "
                            "it left unread cannot be known"))
        elif attempt.unread and not attempt.kept:
            out.append(Note(logging.WARNING, f"the source stopped with {attempt.unread} bytes "
                            "of our output unread, which cannot be carried over"))
        elif attempt.unread:
            out.append(Note(logging.INFO, f"the source stopped with {attempt.unread} bytes of "
                            "our output unread; they go to the destination first"))
            out.append(CarryOver(self.link, attempt.link, attempt.unread))
            attempt.carried = attempt.unread
        out.append(Release(attempt.link))
        out.append(WriteTo(attempt.link))
        self.writer = attempt.link
        self.phase = Phase.WRITING_TO_DESTINATION

    def _switch(self, out: list[Command], now: float, *, fresh: bool = False) -> None:
        """The guest runs on the destination: read and write it from now on."""
        attempt = self._attempt
        assert attempt is not None and attempt.link is not None and attempt.site is not None
        old_site, old_link = self.site, self.link
        if self.phase is Phase.PRECONNECTED and not fresh:
            # No STOP was seen (a monitor that polls): carry over what is unread now.
            out.append(CarryOver(old_link, attempt.link, None))
        if self.phase is Phase.WRITING_TO_DESTINATION:
            out.append(Record(attempt.link, on=False))
        out.append(ReadFrom(attempt.link, retire=old_link))
        out.append(Release(attempt.link))
        out.append(WriteTo(attempt.link))
        if fresh:
            out.append(Announce(attempt.link))
        if old_site in self.followed and old_site != attempt.site:
            out.append(Unfollow(old_site))
        if attempt.site in self.followed:
            out.append(Follow(attempt.site))  # start over, as the source now
        out.append(Switched(attempt.site, attempt.link, now - attempt.started, fresh))
        self.site, self.link, self.writer = attempt.site, attempt.link, attempt.link
        self._attempt = None
        self.phase = Phase.IDLE

    def _abort(self, out: list[Command], reason: str) -> None:
        """Back to the source, which runs the guest on: nothing lost, nothing twice."""
        attempt = self._attempt
        assert attempt is not None
        if attempt.source_gone is not None:
            self._end(out, f"{reason}, and the source's connection is gone")
            return
        if attempt.link is not None:
            if self.phase is Phase.WRITING_TO_DESTINATION:
                out.append(Resend(attempt.link, self.link, attempt.carried))
            out.append(Close(attempt.link))
            if attempt.site is not None and attempt.site in self.followed:
                out.append(Unfollow(attempt.site))
        out.append(Release(self.link))
        out.append(WriteTo(self.link))
        self.writer = self.link
        out.append(Note(logging.INFO, f"{reason}; staying on the source"))
        self._attempt = None
        self.phase = Phase.IDLE


Handler = Callable[[Switchover, Fact, float, list[Command]], None]


# --------------------------------------------------------------------------- handlers
# One function per (phase, fact) kind; each appends its commands to ``out``. They are
# listed in _TABLE, which the tests walk pair by pair.


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
        machine._attempt = _Attempt(started=now)
        machine.phase = Phase.PREPARING
        out.append(Hold(machine.link))
        out.append(FindDestinations(machine.site))
        out.append(Note(logging.INFO, "a migration started; holding our output"))
    elif fact.progress is Progress.COMPLETED:
        # The migration went by unseen (a monitor that polls, a short one): the guest runs
        # elsewhere, and the source will never read again.
        machine._end(out, "the VM migrated before the bridge could prepare",
                     machine._other_site())


# PREPARING

def _preparing_status(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, MigrationStatus)
    attempt = machine._attempt
    assert attempt is not None
    if fact.site != machine.site:
        return
    if fact.progress is Progress.COMPLETED:
        attempt.completed = True  # switch as soon as the destination is connected
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
    elif fact.site == attempt.site:
        # The guest runs there and found no host connected: it saw the host go.
        attempt.resumed_early = True


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
    if attempt.resumed_early:
        out.append(Note(logging.WARNING, "the guest resumed on the destination before the "
                        "bridge was connected there: starting the conversation afresh"))
        machine._switch(out, now, fresh=True)
        return
    machine.phase = Phase.PRECONNECTED
    out.append(Note(logging.INFO, f"pre-connected to the destination (site {attempt.site})"))
    if attempt.stopped:
        machine._start_writing(out)
    if attempt.completed:
        machine._switch(out, now)


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
        if machine.phase is Phase.UNPREPARED:
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

def _preconnected_status(machine: Switchover, fact: Fact, now: float,
                         out: list[Command]) -> None:
    assert isinstance(fact, MigrationStatus)
    if fact.site != machine.site:
        return
    if fact.progress is Progress.COMPLETED:
        machine._switch(out, now)
    elif fact.progress in (Progress.FAILED, Progress.CANCELLED):
        machine._abort(out, f"the migration {fact.progress.value}")


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

def _writing_status(machine: Switchover, fact: Fact, now: float, out: list[Command]) -> None:
    assert isinstance(fact, MigrationStatus)
    if fact.site != machine.site:
        return
    if fact.progress is Progress.COMPLETED:
        machine._switch(out, now)
    elif fact.progress in (Progress.FAILED, Progress.CANCELLED):
        machine._abort(out, f"the migration {fact.progress.value} after the source stopped")


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


_TABLE: dict[tuple[Phase, type[Fact]], Handler] = {
    (Phase.IDLE, MigrationStatus): _idle_status,
    (Phase.IDLE, GuestStopped): _ignore,  # a pause, or a STOP ahead of its migration's status
    (Phase.IDLE, GuestResumed): _ignore,
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

    (Phase.PRECONNECTED, MigrationStatus): _preconnected_status,
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

    (Phase.WRITING_TO_DESTINATION, MigrationStatus): _writing_status,
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
    return {pair: handler.__name__ for pair, handler in _TABLE.items()}


__all__ = [
    "FACT_TYPES",
    "Announce",
    "CarryOver",
    "Close",
    "Command",
    "Connect",
    "DestinationsFound",
    "End",
    "Fact",
    "FindDestinations",
    "Follow",
    "GuestResumed",
    "GuestStopped",
    "Hold",
    "LinkEnded",
    "LinkFailed",
    "LinkUp",
    "MigrationStatus",
    "Note",
    "Phase",
    "Progress",
    "ReadFrom",
    "Record",
    "Release",
    "Resend",
    "Shutdown",
    "Switched",
    "Switchover",
    "Tick",
    "Unfollow",
    "WriteTo",
]
