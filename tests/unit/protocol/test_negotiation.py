"""The caps exchange, specified step by step: one test per (phase, input) pair, and the table
is total.

Each test puts a :class:`HostSession` in a phase the way a conversation gets there, gives it
one input through the session's public methods (``start``, a guest announce, ``handle_timeout``)
and checks what the session then sends and reports, and the phase it ends in.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from tests.helpers import agent_bytes, drain
from vdagent_bridge.protocol import (
    FULL,
    HOST_CAPS,
    LEGACY,
    LINUX_AGENT_CAPS,
    CapabilitiesReceived,
    CapabilitiesTimedOut,
    Caps,
    ClipboardReleased,
    ClipboardRequestFailed,
    ClipboardType,
    Event,
    FailureReason,
    HostSession,
    LocalProtocolError,
    Owner,
    Selection,
    WireFormat,
)
from vdagent_bridge.protocol.codec import Limits, decode
from vdagent_bridge.protocol.deframer import Deframer, RawMessage
from vdagent_bridge.protocol.messages import (
    AnnounceCapabilities,
    ClipboardGrab,
    MaxClipboard,
    Message,
)
from vdagent_bridge.protocol.negotiation import (
    TRANSITIONS,
    Effect,
    Input,
    Negotiation,
    Phase,
)

CB, PRIMARY, TEXT = Selection.CLIPBOARD, Selection.PRIMARY, ClipboardType.UTF8_TEXT
TIMEOUT = 2.0
#: An older agent: clipboard by demand, nothing else (legacy wire format, no MAX_CLIPBOARD).
OLD_AGENT = Caps.of([5])


def phase(session: HostSession) -> Phase:
    return session._caps.phase


def sent(session: HostSession, fmt: WireFormat) -> list[Message]:
    """What the session queued, decoded in ``fmt``; the queue is emptied."""
    deframer = Deframer(max_message_size=1 << 20)
    deframer.feed(session.data_to_send())
    out: list[Message] = []
    while (item := deframer.pop()) is not None:
        assert isinstance(item, RawMessage)
        out.append(decode(item.type, item.payload, fmt, Limits()))
    return out


def announce(request: bool, caps: Caps = LINUX_AGENT_CAPS) -> bytes:
    return agent_bytes(AnnounceCapabilities(request, caps.to_words()))


def receive(session: HostSession, data: bytes, now: float = 1.0) -> list[Event]:
    session.receive_data(data, now)
    events, errors = drain(session)
    assert errors == []
    return events


def no_caps() -> HostSession:
    """NO_CAPS as a live conversation reaches it: our announce went unanswered."""
    session = HostSession(caps_timeout=TIMEOUT)
    session.start(0.0)
    session.handle_timeout(TIMEOUT)
    assert [type(e) for e in drain(session)[0]] == [CapabilitiesTimedOut]
    session.grab_clipboard(PRIMARY, (TEXT,))  # recorded, sent once caps come
    session.data_to_send()
    return session


def announced() -> HostSession:
    session = HostSession(caps_timeout=TIMEOUT)
    session.start(0.0)
    session.grab_clipboard(PRIMARY, (TEXT,))
    session.data_to_send()
    return session


def exchanged() -> HostSession:
    """EXCHANGED with the Linux agent: the host owns PRIMARY, the guest CLIPBOARD, and a
    request of ours is pending."""
    session = announced()
    receive(session, announce(True))
    receive(session, agent_bytes(ClipboardGrab(CB, (TEXT,), 0)))
    session.request_clipboard(CB, TEXT, 1.0)
    session.data_to_send()
    return session


SETUPS: dict[Phase, Callable[[], HostSession]] = {
    Phase.NO_CAPS: no_caps,
    Phase.ANNOUNCED: announced,
    Phase.EXCHANGED: exchanged,
}


# ----- the table -----------------------------------------------------------------------------


def test_every_phase_and_input_has_a_step() -> None:
    assert set(TRANSITIONS) == set(itertools.product(Phase, Input))


def test_each_setup_reaches_its_phase() -> None:
    for expected, setup in SETUPS.items():
        assert phase(setup()) is expected


def test_the_deadline_is_armed_exactly_when_entering_announced() -> None:
    """What lets Negotiation keep ``deadline`` set exactly in ANNOUNCED."""
    for (_, _), (next_phase, effect) in TRANSITIONS.items():
        assert bool(effect & Effect.ARM) == (next_phase is Phase.ANNOUNCED)


def test_every_announce_from_the_guest_leaves_its_caps_learned() -> None:
    for (_, event), (next_phase, effect) in TRANSITIONS.items():
        if event in (Input.CAPS, Input.CAPS_REQUEST):
            assert next_phase is Phase.EXCHANGED and effect & Effect.LEARN
            assert bool(effect & Effect.ANSWER) == (event is Input.CAPS_REQUEST)


# ----- START ---------------------------------------------------------------------------------


@pytest.mark.parametrize("before", list(Phase), ids=lambda p: p.name)
def test_start_in_any_phase_announces_afresh_and_arms_the_deadline(before: Phase) -> None:
    session = SETUPS[before]()
    session.start(10.0)
    assert phase(session) is Phase.ANNOUNCED
    assert session.guest_caps is None and session.wire_format == LEGACY
    assert sent(session, LEGACY) == [AnnounceCapabilities(True, HOST_CAPS.to_words())]
    assert session.next_deadline() == 10.0 + TIMEOUT
    assert session.owner(PRIMARY) is Owner.HOST  # kept, grabbed again once caps come
    events, _ = drain(session)
    if before is Phase.EXCHANGED:  # what the old conversation held ends
        assert events == [
            ClipboardRequestFailed(CB, TEXT, FailureReason.CONNECTION_RESET),
            ClipboardReleased(CB),
        ]
        assert session.owner(CB) is Owner.NONE and session.serial(PRIMARY) == 0
    else:
        assert events == []


def test_start_of_a_new_session_is_the_same_first_step() -> None:
    session = HostSession(caps_timeout=TIMEOUT)
    assert phase(session) is Phase.NO_CAPS and session.next_deadline() is None
    session.start(3.0)
    assert phase(session) is Phase.ANNOUNCED and session.next_deadline() == 3.0 + TIMEOUT


# ----- CAPS (request=0) ----------------------------------------------------------------------


@pytest.mark.parametrize("before", [Phase.NO_CAPS, Phase.ANNOUNCED], ids=lambda p: p.name)
def test_a_first_answer_is_learned_and_greeted(before: Phase) -> None:
    session = SETUPS[before]()
    events = receive(session, announce(False))
    assert phase(session) is Phase.EXCHANGED and session.next_deadline() is None
    assert session.guest_caps == LINUX_AGENT_CAPS and session.wire_format == FULL
    assert sent(session, FULL) == [
        MaxClipboard(session.max_clipboard),
        ClipboardGrab(PRIMARY, (TEXT,), 0),
    ]
    assert events == [
        CapabilitiesReceived(LINUX_AGENT_CAPS, HOST_CAPS & LINUX_AGENT_CAPS, False, False)
    ]


def test_a_later_answer_is_learned_and_nothing_else() -> None:
    """New caps without a request: the wire format follows them, and nothing is sent again,
    reset or grabbed again."""
    session = exchanged()
    events = receive(session, announce(False, OLD_AGENT))
    assert phase(session) is Phase.EXCHANGED
    assert session.guest_caps == OLD_AGENT and session.wire_format == LEGACY
    assert session.data_to_send() == b""
    assert session.owner(CB) is Owner.GUEST and session.pending_requests[0]
    assert events == [CapabilitiesReceived(OLD_AGENT, HOST_CAPS & OLD_AGENT, False, False)]


# ----- CAPS_REQUEST (request=1) --------------------------------------------------------------


@pytest.mark.parametrize("before", [Phase.NO_CAPS, Phase.ANNOUNCED], ids=lambda p: p.name)
def test_a_first_request_is_answered_learned_and_greeted(before: Phase) -> None:
    session = SETUPS[before]()
    events = receive(session, announce(True))
    assert phase(session) is Phase.EXCHANGED and session.next_deadline() is None
    assert sent(session, FULL) == [
        AnnounceCapabilities(False, HOST_CAPS.to_words()),
        MaxClipboard(session.max_clipboard),
        ClipboardGrab(PRIMARY, (TEXT,), 0),
    ]
    assert events == [
        CapabilitiesReceived(LINUX_AGENT_CAPS, HOST_CAPS & LINUX_AGENT_CAPS, True, False)
    ]


def test_a_request_after_the_exchange_is_a_restarted_agent() -> None:
    """Answer, announce again (the daemon zeroes its counters), end the old conversation,
    greet the new agent: MAX_CLIPBOARD, and the host's grab with the serial from 0."""
    session = exchanged()
    assert session.serial(PRIMARY) == 1
    events = receive(session, announce(True))
    assert phase(session) is Phase.EXCHANGED
    assert sent(session, FULL) == [
        AnnounceCapabilities(False, HOST_CAPS.to_words()),
        AnnounceCapabilities(True, HOST_CAPS.to_words()),
        MaxClipboard(session.max_clipboard),
        ClipboardGrab(PRIMARY, (TEXT,), 0),
    ]
    assert events == [
        ClipboardRequestFailed(CB, TEXT, FailureReason.CONNECTION_RESET),
        ClipboardReleased(CB),
        CapabilitiesReceived(LINUX_AGENT_CAPS, HOST_CAPS & LINUX_AGENT_CAPS, True, True),
    ]


def test_an_older_agent_is_greeted_without_max_clipboard_and_in_the_legacy_format() -> None:
    session = announced()
    session.grab_clipboard(CB, (TEXT,))
    receive(session, announce(True, OLD_AGENT))
    assert sent(session, LEGACY) == [
        AnnounceCapabilities(False, HOST_CAPS.to_words()),
        ClipboardGrab(CB, (TEXT,), None),  # PRIMARY does not exist without SELECTION
    ]


# ----- DEADLINE ------------------------------------------------------------------------------


def test_an_unanswered_announce_times_out_once_and_late_caps_are_still_taken() -> None:
    session = announced()
    session.handle_timeout(TIMEOUT - 0.1)
    assert phase(session) is Phase.ANNOUNCED and drain(session) == ([], [])
    session.handle_timeout(TIMEOUT)
    assert phase(session) is Phase.NO_CAPS and session.next_deadline() is None
    assert drain(session) == ([CapabilitiesTimedOut(TIMEOUT)], [])
    session.handle_timeout(100.0)
    assert drain(session) == ([], [])
    receive(session, announce(False))
    assert phase(session) is Phase.EXCHANGED


@pytest.mark.parametrize("before", [Phase.NO_CAPS, Phase.EXCHANGED], ids=lambda p: p.name)
def test_no_deadline_outside_announced(before: Phase) -> None:
    """The DEADLINE input does not come there (nothing is armed), and would do nothing."""
    session = SETUPS[before]()
    session.handle_timeout(1e9)
    assert phase(session) is before
    assert not [e for e in drain(session)[0] if isinstance(e, CapabilitiesTimedOut)]
    negotiation = Negotiation(HOST_CAPS)
    negotiation.phase = before
    assert negotiation.step(Input.DEADLINE) is Effect.NONE and negotiation.phase is before


# ----- restore -------------------------------------------------------------------------------


@pytest.mark.parametrize("before", list(Phase), ids=lambda p: p.name)
def test_a_snapshot_restores_the_phase_without_the_deadline(before: Phase) -> None:
    session = SETUPS[before]()
    drain(session)
    restored = HostSession.restore(session.snapshot(1.0), 1.0)
    assert phase(restored) is (Phase.EXCHANGED if before is Phase.EXCHANGED else Phase.NO_CAPS)
    assert restored._caps.deadline is None


@pytest.mark.parametrize(
    ("guest_caps", "exchanged"), [([1], False), (None, True)], ids=["caps-only", "exchange-only"]
)
def test_a_snapshot_whose_exchange_disagrees_with_its_caps_is_refused(
    guest_caps: list[int] | None, exchanged: bool
) -> None:
    state = HostSession().snapshot(0.0)
    state.update(guest_caps=guest_caps, caps_exchanged=exchanged)
    with pytest.raises(LocalProtocolError, match="caps_exchanged disagrees"):
        HostSession.restore(state, 0.0)
