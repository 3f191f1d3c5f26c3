"""Shared test helpers: an in-memory host ↔ simulated-guest pair, and guest-side byte builders."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

from vdagent_bridge.demo.guest import SimulatedGuest
from vdagent_bridge.protocol import Event, HostSession, RemoteProtocolError
from vdagent_bridge.protocol.codec import FULL, WireFormat, encode
from vdagent_bridge.protocol.framer import frame_message
from vdagent_bridge.protocol.messages import Message


def agent_bytes(*messages: Message, fmt: WireFormat = FULL) -> bytes:
    """Messages framed the way the Linux agent sends them: one chunk each, any size."""
    out = bytearray()
    for msg in messages:
        msg_type, payload = encode(msg, fmt)
        frame_message(out, msg_type, payload, max_chunk=1 << 62)
    return bytes(out)


def drain(session: HostSession) -> tuple[list[Event], list[RemoteProtocolError]]:
    """Every event and protocol error the session has for us now."""
    events: list[Event] = []
    errors: list[RemoteProtocolError] = []
    while True:
        try:
            event = session.next_event()
        except RemoteProtocolError as err:
            errors.append(err)
            continue
        if event is None:
            return events, errors
        events.append(event)


class Pair:
    """A HostSession talking to a SimulatedGuest in memory, with a settable clock."""

    def __init__(
        self,
        host: HostSession | None = None,
        guest: SimulatedGuest | None = None,
        *,
        connect: bool = True,
    ) -> None:
        self.host = host or HostSession()
        self.guest = guest or SimulatedGuest()
        self.now = 0.0
        self.events: list[Event] = []
        self.errors: list[RemoteProtocolError] = []
        if connect:
            self.guest.open_port()
            self.host.start(self.now)
            self.pump()
            self.events.clear()

    def pump(self) -> list[Event]:
        """Move bytes both ways until both sides are quiet; returns the new host events."""
        new: list[Event] = []
        for _ in range(100):
            to_guest = self.host.data_to_send()
            if to_guest:
                self.guest.receive_data(to_guest)
            to_host = self.guest.data_to_send()
            if to_host:
                self.host.receive_data(to_host, self.now)
            events, errors = drain(self.host)
            new += events
            self.errors += errors
            if not to_guest and not to_host and not events:
                break
        self.events += new
        return new

    def advance(self, seconds: float) -> list[Event]:
        """Let the clock run and fire the host's timers."""
        self.now += seconds
        deadline = self.host.next_deadline()
        if deadline is not None and deadline <= self.now:
            self.host.handle_timeout(self.now)
        return self.pump()

    def of_type(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


async def until(condition: Callable[[], object], timeout: float = 5.0,
                what: str = "condition") -> None:
    """Wait on the running loop until ``condition()`` is true; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.005)


def quick() -> Iterator[float]:
    """Reconnect delays that do not grow (tests want quick retries)."""
    return itertools.repeat(0.05)
