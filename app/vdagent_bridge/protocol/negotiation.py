"""The caps exchange as a state machine: its phases, the table of its steps, and the caps it
has learned.

Theory of operation
-------------------
The wire format of the clipboard messages (selection prefix, grab serial) is the intersection
of our caps and the guest's (docs/protocol.md §4.3). Before the guest's caps arrive nothing that
depends on it is sent: host grabs are recorded and sent once the caps are known. Every guest
request=1 is answered with request=0. A request=1 that arrives after caps were already
exchanged means the guest agent restarted: we then re-announce with request=1 (which zeroes the
daemon's counters whatever survived of them), zero ours, forget what the guest owned and
re-grab what the host owns, the way QEMU ends up doing after its close/reopen cycle. An
announce of ours that gets no answer within the caps timeout is reported once
(:class:`~.events.CapabilitiesTimedOut`); caps that come later are still taken.

Phases and inputs (:data:`TRANSITIONS`, one entry for every pair)::

                  START        CAPS (request=0)   CAPS_REQUEST (request=1)      DEADLINE
    NO_CAPS       ANNOUNCED    EXCHANGED          EXCHANGED                     NO_CAPS
                  fresh        learn, greet       learn, answer, greet          -
    ANNOUNCED     ANNOUNCED    EXCHANGED          EXCHANGED                     NO_CAPS
                  fresh        learn, greet       learn, answer, greet          timed out
    EXCHANGED     ANNOUNCED    EXCHANGED          EXCHANGED                     EXCHANGED
                  fresh        learn              learn, answer, restart        -

    fresh   = forget the guest's caps, reset the conversation, announce, arm the deadline
    restart = reset the conversation, announce, greet (the guest agent restarted)

The deadline is armed exactly in ANNOUNCED, so DEADLINE only happens there; the other two
DEADLINE entries are there for the table to be total, and do nothing. No input is refused: a
guest may announce at any time, and the host may start a fresh conversation at any time.

:class:`Negotiation` holds the phase and what goes with it (the guest's caps, the wire format,
the deadline) and applies the part of each step that is its own. The rest of a step's
:class:`Effect` touches the other parts of the conversation (the output queue, the clipboard,
the transfers, the events) and is carried out by the session, in one place
(``HostSession._follow``).

A snapshot keeps only the guest's caps and whether they were exchanged, not the deadline: a
session restored from ANNOUNCED is in NO_CAPS, still waiting for caps but not timing them.
"""

from __future__ import annotations

import enum

from .caps import Caps
from .codec import LEGACY, WireFormat
from .constants import Capability


class Phase(enum.Enum):
    """Where the caps exchange stands."""

    #: No guest caps, and none awaited on a clock: a new session before :meth:`start`, an
    #: announce already reported unanswered, or a session restored before caps arrived.
    NO_CAPS = "no-caps"
    #: Our caps went out with request=1 (a fresh connection); the guest's are due by the
    #: deadline.
    ANNOUNCED = "announced"
    #: The guest's caps are known and the wire format follows them.
    EXCHANGED = "exchanged"


class Input(enum.Enum):
    """What moves the exchange."""

    #: ``HostSession.start``: the guest (re)opened its port, a fresh conversation begins.
    START = "start"
    #: The guest's ANNOUNCE_CAPABILITIES with request=0 (an answer).
    CAPS = "caps"
    #: The guest's ANNOUNCE_CAPABILITIES with request=1 (it asks for ours).
    CAPS_REQUEST = "caps-request"
    #: ``HostSession.handle_timeout`` at or after the deadline of our announce.
    DEADLINE = "deadline"


class Effect(enum.Flag):
    """What a step does, besides changing the phase. In the order the session does them."""

    NONE = 0
    #: The guest's caps are forgotten; the wire format is LEGACY again. (Negotiation)
    FORGET = enum.auto()
    #: The guest's caps are taken from its announce; the wire format follows. (Negotiation)
    LEARN = enum.auto()
    #: The guest's answer is due ``caps_timeout`` from now. (Negotiation)
    ARM = enum.auto()
    #: The old conversation ends: serials zeroed, our requests fail, the guest's requests
    #: and selections are forgotten, transfers are cancelled. (session)
    RESET = enum.auto()
    #: Our caps are sent with request=0. (session)
    ANSWER = enum.auto()
    #: Our caps are sent with request=1. (session)
    ANNOUNCE = enum.auto()
    #: The first caps of this conversation: MAX_CLIPBOARD is sent, and what the host owns is
    #: grabbed again. (session)
    GREET = enum.auto()
    #: The announce went unanswered: CapabilitiesTimedOut is reported. (session)
    TIMED_OUT = enum.auto()


_FRESH = Effect.FORGET | Effect.RESET | Effect.ANNOUNCE | Effect.ARM
_FIRST_ANSWER = Effect.LEARN | Effect.GREET
_FIRST_REQUEST = Effect.LEARN | Effect.ANSWER | Effect.GREET
_RESTART = Effect.LEARN | Effect.ANSWER | Effect.RESET | Effect.ANNOUNCE | Effect.GREET

#: (phase, input) -> (next phase, effect), for every pair (see the module docstring).
TRANSITIONS: dict[tuple[Phase, Input], tuple[Phase, Effect]] = {
    (Phase.NO_CAPS, Input.START): (Phase.ANNOUNCED, _FRESH),
    (Phase.NO_CAPS, Input.CAPS): (Phase.EXCHANGED, _FIRST_ANSWER),
    (Phase.NO_CAPS, Input.CAPS_REQUEST): (Phase.EXCHANGED, _FIRST_REQUEST),
    (Phase.NO_CAPS, Input.DEADLINE): (Phase.NO_CAPS, Effect.NONE),
    (Phase.ANNOUNCED, Input.START): (Phase.ANNOUNCED, _FRESH),
    (Phase.ANNOUNCED, Input.CAPS): (Phase.EXCHANGED, _FIRST_ANSWER),
    (Phase.ANNOUNCED, Input.CAPS_REQUEST): (Phase.EXCHANGED, _FIRST_REQUEST),
    (Phase.ANNOUNCED, Input.DEADLINE): (Phase.NO_CAPS, Effect.TIMED_OUT),
    (Phase.EXCHANGED, Input.START): (Phase.ANNOUNCED, _FRESH),
    (Phase.EXCHANGED, Input.CAPS): (Phase.EXCHANGED, Effect.LEARN),
    (Phase.EXCHANGED, Input.CAPS_REQUEST): (Phase.EXCHANGED, _RESTART),
    (Phase.EXCHANGED, Input.DEADLINE): (Phase.EXCHANGED, Effect.NONE),
}


def wire_format(negotiated: Caps) -> WireFormat:
    """The optional clipboard fields both sides announced."""
    return WireFormat(
        selection=Capability.CLIPBOARD_SELECTION in negotiated,
        grab_serial=Capability.CLIPBOARD_GRAB_SERIAL in negotiated,
    )


class Negotiation:
    """The caps exchange of one conversation: phase, the guest's caps, the wire format."""

    __slots__ = ("deadline", "fmt", "guest_caps", "host_caps", "phase")

    def __init__(self, host_caps: Caps) -> None:
        #: What we announce.
        self.host_caps = host_caps
        self.phase = Phase.NO_CAPS
        #: What the guest announced last (None before it announced, or after :meth:`step`
        #: forgot it).
        self.guest_caps: Caps | None = None
        #: The optional clipboard fields on the wire, both ways.
        self.fmt: WireFormat = LEGACY
        #: When the guest's answer to our announce is due: set exactly in ANNOUNCED.
        self.deadline: float | None = None

    @property
    def negotiated(self) -> Caps:
        """Caps both sides announced (empty until the guest announced)."""
        return Caps() if self.guest_caps is None else self.host_caps & self.guest_caps

    def guest_has(self, cap: Capability) -> bool:
        """Whether the guest announced ``cap``."""
        return self.guest_caps is not None and cap in self.guest_caps

    @property
    def clipboard_ready(self) -> bool:
        """Whether clipboard messages can be exchanged (both sides have BY_DEMAND)."""
        return Capability.CLIPBOARD_BY_DEMAND in self.negotiated

    def due(self, now: float) -> bool:
        """Whether the DEADLINE input has come at ``now``."""
        return self.deadline is not None and self.deadline <= now

    def step(
        self,
        event: Input,
        *,
        caps: tuple[int, ...] = (),
        now: float = 0.0,
        timeout: float = 0.0,
    ) -> Effect:
        """Take one step: move to the next phase and apply this object's part of the
        effect (FORGET, LEARN with the guest's ``caps`` words, ARM at ``now + timeout``).
        Returns the whole effect; the session carries out the rest."""
        phase, effect = TRANSITIONS[self.phase, event]
        self.phase = phase
        if effect & Effect.FORGET:
            self.guest_caps, self.fmt = None, LEGACY
        if effect & Effect.LEARN:
            self.guest_caps = Caps(caps)
            self.fmt = wire_format(self.negotiated)
        self.deadline = now + timeout if effect & Effect.ARM else None
        return effect

    def restore(self, guest_caps: Caps | None, exchanged: bool) -> None:
        """Continue an exchange saved by a snapshot (which keeps no deadline).

        :raises ValueError: the two disagree: caps without an exchange, or the reverse.
        """
        if (guest_caps is not None) != exchanged:
            raise ValueError("caps_exchanged disagrees with guest_caps")
        self.phase = Phase.EXCHANGED if exchanged else Phase.NO_CAPS
        self.guest_caps = guest_caps
        self.fmt = LEGACY if guest_caps is None else wire_format(self.negotiated)
        self.deadline = None
