"""The switchover machine's phases and the record of a migration in progress."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class Attempt:
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
    #: Sites other than the source that resumed the guest while we were not connected to
    #: them (a destination found later may be one of them).
    resumed: set[int] = field(default_factory=set)
    #: When the source's connection ended (None: it has not).
    source_gone: float | None = None
