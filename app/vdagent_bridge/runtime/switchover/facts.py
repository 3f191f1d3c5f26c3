"""What the drivers observe and tell the switchover machine: the *facts*.

Values only. The drivers produce them: followers (a site's QMP monitor, libvirt's events) the
migration facts, the conversation driver the facts about its links and the clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Progress(enum.Enum):
    """A migration's status as the source's QEMU (or libvirt) reports it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


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
