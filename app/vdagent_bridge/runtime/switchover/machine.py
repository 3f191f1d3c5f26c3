"""The switchover machine: its phases, the migration in progress, and the helpers its
transitions share (the transitions themselves are in transitions.py)."""

from __future__ import annotations

import logging

from ...protocol import LocalProtocolError
from .commands import (
    Announce,
    CarryOver,
    Close,
    Command,
    Connect,
    End,
    Follow,
    Note,
    ReadFrom,
    Record,
    Release,
    Resend,
    Switched,
    Unfollow,
    WriteTo,
)
from .facts import Fact
from .phases import SOURCE_GONE_GRACE, Attempt, Phase
from .transitions import TABLE


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
        self._attempt: Attempt | None = None
        #: The source's guest is paused outside a migration (our output held meanwhile).
        self.paused = False

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
        handler = TABLE.get((self.phase, type(fact)))
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
        tried = attempt.site is not None
        if attempt.site is not None and attempt.site in self.followed:
            out.append(Unfollow(attempt.site))
        attempt.site = attempt.link = None
        attempt.connected = False
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
        other = " other" if tried else ""
        if attempt.stopped:
            out.append(Note(logging.WARNING, f"the source stopped and no{other} destination "
                            "agent port is reachable: the guest will see the host reconnect"))
        else:
            out.append(Note(logging.WARNING, f"a migration runs and no{other} destination "
                            "agent port is reachable: the guest will see the host reconnect "
                            "after it"))
        out.append(Release(self.link))

    def _start_writing(self, out: list[Command]) -> None:
        """The source stopped and the destination is connected: write there from now on."""
        attempt = self._attempt
        assert attempt is not None and attempt.link is not None
        out.append(Record(attempt.link))
        if attempt.unread is None:
            # A libvirt stream cannot tell; our output was held since the migration's start.
            out.append(Note(logging.INFO, "the source stopped; how much of our output it left "
                            "unread cannot be known"))
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
