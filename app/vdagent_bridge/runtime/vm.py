"""One VM's conversation: a session that outlives its connections, and the reconnect loop.

Theory of operation
-------------------
A VM is one or more *sites*: an agent socket (and optionally a QMP monitor) per QEMU process
that may run it — the source and the destinations of a live migration. One
:class:`HostSession` holds the conversation for the VM's whole life; connections come and go
around it.

Runstate: ``IDLE → CONNECTING → CONNECTED → (connection lost) → WAITING → CONNECTING …``,
``FAILED`` on an error retrying cannot fix, back to ``IDLE`` on :meth:`VmRuntime.stop`.

Fresh or continuation: after a connection ends, the guest may have seen the host side close
(a QEMU socket chardev closes the guest's port when its client goes), so the next connection
is *fresh*: the session announces caps with request=1, the agent zeroes its serials, what the
host owns is grabbed again. A *continuation* (no announce; serials, ownership, pending requests
and a half-received message carry over) is only right when the guest cannot have noticed: a
conversation imported from another instance for a takeover. Without QMP the runtime cannot
prepare a migration switchover, so after a migration the reconnect is fresh too.

Retryable errors (the socket is missing, refused, reset: the VM is not up yet or restarting)
wait a jittered, growing delay (:func:`backoff`) and retry; the delay starts over after a
connection that worked. Fatal errors (permission denied) stop the loop in FAILED with a
readable reason.

The session state is saved to the :class:`StateStore` (debounced, and when a connection ends
or the runtime stops), so it can be exported for another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..protocol import Event, HostSession, RemoteProtocolError, StateError
from ..state import StateStore
from .backoff import backoff
from .connection import AgentConnection, Endpoint

log = logging.getLogger(__name__)

#: How long after a change the state is written (so a burst of events costs one write).
SAVE_DELAY = 1.0


class Runstate(enum.Enum):
    """Where a VM's connection stands."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Site:
    """One QEMU process that may run the VM: its agent socket and optional QMP monitor."""

    agent: Endpoint
    qmp: Endpoint | None = None


def is_fatal(err: BaseException) -> bool:
    """Errors that retrying cannot fix without the user."""
    return isinstance(err, PermissionError)


class VmRuntime:
    """Keeps one VM connected; see the module docstring."""

    def __init__(
        self,
        name: str,
        sites: list[Site],
        *,
        session: HostSession | None = None,
        store: StateStore | None = None,
        takeover: bool = False,
        on_event: Callable[[Event], None] | None = None,
        on_runstate: Callable[[Runstate], None] | None = None,
        delays: Callable[[], Iterator[float]] = backoff,
    ) -> None:
        if not sites:
            raise ValueError(f"VM {name!r} has no site")
        self.name = name
        self.sites = list(sites)
        self.site_index = 0
        self.store = store
        self._takeover = takeover
        self.session = session or HostSession()
        self._on_event = on_event
        self._on_runstate = on_runstate
        self._delays = delays
        self.runstate = Runstate.IDLE
        self.failure: str | None = None
        self.connection: AgentConnection | None = None
        self.connections = 0
        self._stopping = asyncio.Event()
        self._save_handle: asyncio.TimerHandle | None = None
        self.protocol_errors = 0

    @property
    def site(self) -> Site:
        return self.sites[self.site_index]

    def _set_runstate(self, state: Runstate) -> None:
        if state is not self.runstate:
            log.debug("%s: %s -> %s", self.name, self.runstate.value, state.value)
            self.runstate = state
            if self._on_runstate is not None:
                self._on_runstate(state)

    # ---------------------------------------------------------------- actions

    def flush(self) -> None:
        """Write what the session queued (call after an action on :attr:`session`)."""
        if self.connection is not None:
            self.connection.flush()
        self._schedule_save()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # ---------------------------------------------------------------- loop

    async def run(self) -> None:
        """Connect and stay connected until :meth:`stop` (or a fatal error)."""
        self._stopping.clear()
        self.failure = None
        fresh = not self._takeover
        self._takeover = False
        delays = self._delays()
        while not self._stopping.is_set():
            self._set_runstate(Runstate.CONNECTING)
            conn = AgentConnection(self.session, self._handle_event, self._handle_error)
            try:
                await conn.connect(self.site.agent, fresh=fresh)
            except OSError as err:
                reason = err.strerror or str(err)
                if is_fatal(err):
                    self.failure = f"cannot connect to {self.site.agent}: {reason}"
                    log.error("%s: %s", self.name, self.failure)
                    self._set_runstate(Runstate.FAILED)
                    return
                await self._wait(next(delays), f"cannot connect to {self.site.agent}: {reason}")
                continue
            self.connection = conn
            self.connections += 1
            delays = self._delays()
            self._set_runstate(Runstate.CONNECTED)
            log.info(
                "%s: connected to %s (%s)", self.name, self.site.agent,
                "fresh: caps announced" if fresh else "continuing the conversation",
            )
            reason = "the agent port closed"
            try:
                await self._run_connection(conn)
            except OSError as err:
                reason = err.strerror or str(err)
            finally:
                self.connection = None
                await conn.close()
                self._save_now()
            if self._stopping.is_set():
                break
            fresh = True
            qmp_note = "" if self.site.qmp else " (no QMP: the next connection starts fresh)"
            await self._wait(next(delays), f"{reason}{qmp_note}")
        self._set_runstate(Runstate.IDLE)

    async def _run_connection(self, conn: AgentConnection) -> None:
        """Read until EOF or until stop() is called."""
        reader = asyncio.create_task(conn.run(), name=f"{self.name}-reader")
        stopper = asyncio.create_task(self._stopping.wait(), name=f"{self.name}-stop")
        try:
            done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()  # EOF returns; a broken stream raises OSError
        finally:
            for task in (reader, stopper):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _wait(self, delay: float, reason: str) -> None:
        self._set_runstate(Runstate.WAITING)
        log.info("%s: reconnecting in %.1f s: %s", self.name, delay, reason)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self) -> None:
        """Ask :meth:`run` to end (it returns after closing the connection)."""
        self._stopping.set()

    def reconnect(self) -> None:
        """Drop the current connection now; the loop reconnects (fresh) at once."""
        if self.connection is not None:
            asyncio.get_running_loop().create_task(self.connection.close())

    # ---------------------------------------------------------------- events and state

    def _handle_event(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        self._schedule_save()

    def _handle_error(self, err: RemoteProtocolError) -> None:
        self.protocol_errors += 1

    def _schedule_save(self) -> None:
        if self.store is None or self._save_handle is not None:
            return
        self._save_handle = asyncio.get_running_loop().call_later(SAVE_DELAY, self._save_now)

    def _save_now(self) -> None:
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self.store is None:
            return
        try:
            self.store.save(self.name, self.session.snapshot(self.now()))
        except StateError:
            self._schedule_save()  # events are still being handed out: try again shortly
        except OSError as err:
            log.error("%s: cannot save the conversation state: %s", self.name, err.strerror)
