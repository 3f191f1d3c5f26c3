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
    No migration: the source is read and written (while its guest is paused, our output is
    held: it could not read it, and a save would end its QEMU with it unread).
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
up is closed. Every (phase, fact) pair is in the table (transitions.py); a missing pair is a bug and
raises :class:`~vdagent_bridge.protocol.LocalProtocolError`.

The package: facts.py (what goes in), commands.py (what comes out), phases.py, machine.py
(:class:`Switchover`), transitions.py (the table). No asyncio, no sockets, no clock.
"""

from __future__ import annotations

from .commands import (
    Announce,
    CarryOver,
    Close,
    Command,
    Connect,
    End,
    FindDestinations,
    Follow,
    Hold,
    Note,
    ReadFrom,
    Record,
    Release,
    Resend,
    Switched,
    Unfollow,
    WriteTo,
)
from .facts import (
    FACT_TYPES,
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
from .machine import Switchover
from .phases import SOURCE_GONE_GRACE, Phase
from .transitions import transitions

__all__ = [
    "Announce",
    "CarryOver",
    "Close",
    "Command",
    "Connect",
    "DestinationsFound",
    "End",
    "FACT_TYPES",
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
    "SOURCE_GONE_GRACE",
    "Shutdown",
    "Switched",
    "Switchover",
    "Tick",
    "Unfollow",
    "WriteTo",
    "transitions",
]
