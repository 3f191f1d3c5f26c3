"""What the switchover machine asks the drivers to do: the *commands*, carried out in order.

Values only; runtime/conversation.py carries them out over sockets and QMP monitors.
"""

from __future__ import annotations

from dataclasses import dataclass


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
