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

Output and back-pressure: everything for the guest waits in the session's queue until a
socket takes it (see runtime/connection.py). One :class:`OutputGate` per VM holds the
high-water mark over that queue, whichever connection writes it (the destination, during a
migration switchover): :attr:`VmRuntime.writable` and :meth:`VmRuntime.wait_writable` for
producers, and :meth:`VmRuntime.send_files` sends files at the pace the guest reads them.
Pointer motion is coalesced by the pointer bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..protocol import (
    CapabilitiesReceived,
    CapabilitiesTimedOut,
    Event,
    HostSession,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
)
from ..state import StateStore
from .backoff import backoff
from .connection import AgentConnection, Endpoint, OutputGate
from .filesend import ANSWER_TIMEOUT, FileProgress, FileTransfers, send_files
from .qmp import MigrationStatus, QmpError, QmpMonitor, VmEvent

log = logging.getLogger(__name__)

#: How long after a change the state is written (so a burst of events costs one write).
SAVE_DELAY = 1.0


#: After a migration switch, the source connection is read until it has been quiet this
#: long (the guest stopped long before; its last bytes may still be in our socket), at most
#: SWITCH_DRAIN_MAX.
SWITCH_QUIET = 0.02
SWITCH_DRAIN_MAX = 0.5
#: The least wait before announcing again after an announce went unanswered.
RESYNC_DELAY = 1.0


class Runstate(enum.Enum):
    """Where a VM's connection stands."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    MIGRATING = "migrating"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(slots=True)
class _Migration:
    """A migration in progress: the pre-connected destination, if any."""

    index: int | None
    conn: AgentConnection | None
    started: float
    monitor: QmpMonitor | None
    writing_to_destination: bool = False
    watcher: asyncio.Task[None] | None = None
    #: Bytes the source left unread, written to the destination first (and so at the start
    #: of its record, where a failed migration must not send them to the source again).
    carried_over: int = 0


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
        #: No session given: the one saved for this VM is loaded when the runtime starts.
        self._load_saved = session is None and store is not None
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
        self.migrations = 0
        self._migration: _Migration | None = None
        self._migration_ended = asyncio.Event()
        self._switched = asyncio.Event()
        self._followers: set[asyncio.Task[None]] = set()
        #: The QMP monitors the followers hold open, by site index (for screendump: a QMP
        #: socket serves one client at a time, so the runtime's own monitor is the only way).
        self._monitors: dict[int, QmpMonitor] = {}
        self._closers: set[asyncio.Task[None]] = set()
        self._answered = False
        self._unanswered = False
        #: The high-water mark of the output to the guest, shared by every connection of
        #: this VM (they share the session's queue): see :meth:`wait_writable`.
        self.gate = OutputGate(self._backlog)
        #: Our file transfers waiting for the guest's answers (see :meth:`send_files`).
        self.file_transfers = FileTransfers()
        #: How long the guest has to answer a file offer, and to confirm the last byte.
        self.file_answer_timeout = ANSWER_TIMEOUT

    @property
    def site(self) -> Site:
        return self.sites[self.site_index]

    def add_site(self, site: Site) -> None:
        """Another QEMU that may run the VM (a new migration destination)."""
        self.sites.append(site)

    def _set_runstate(self, state: Runstate) -> None:
        if state is not self.runstate:
            log.debug("%s: %s -> %s", self.name, self.runstate.value, state.value)
            self.runstate = state
            if self._on_runstate is not None:
                self._on_runstate(state)

    # ---------------------------------------------------------------- actions

    def flush(self) -> None:
        """Write what the session queued (call after an action on :attr:`session`).

        Output normally goes to the connection we read from; once the source of a migration
        has stopped, it goes to the pre-connected destination already (QEMU delivers it when
        the guest resumes there), so the first messages after the switch cost nothing extra.
        """
        migration = self._migration
        if migration is not None and migration.writing_to_destination:
            assert migration.conn is not None
            migration.conn.flush()
        elif self.connection is not None:
            self.connection.flush()
        self._schedule_save()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def screendump(self, path: Path) -> bool:
        """Have the current site's QEMU write the guest screen to ``path``: PNG where QEMU
        takes ``format=png`` (>= 7.1), else PPM (QImage reads both, by content). False when
        that site has no QMP monitor open (none configured, or not connected yet).

        It goes through the monitor the migration follower holds open (qemu.qmp runs
        commands while the follower reads events). QEMU writes the file itself, as its own
        user: under libvirt (QEMU as another user) the directory must be writable by QEMU;
        over ``tcp:`` to another machine the file lands on that machine.

        :raises QmpError: QEMU refused or failed the dump (no display device, a path it
            cannot write), or the monitor went away.
        """
        monitor = self._monitors.get(self.site_index)
        if monitor is None:
            return False
        await monitor.screendump(str(Path(path).absolute()))
        return True

    def _writing_connection(self) -> AgentConnection | None:
        migration = self._migration
        if migration is not None and migration.writing_to_destination:
            return migration.conn
        return self.connection

    def _backlog(self) -> int:
        """Bytes queued for the guest and not yet taken by a socket."""
        conn = self._writing_connection()
        if conn is None:
            return self.session.bytes_to_send
        return conn.backlog() + (self.session.bytes_to_send if conn.hold else 0)

    @property
    def writable(self) -> bool:
        """Whether the output to the guest is under the high-water mark: producers of bulk
        output (file data, generated clipboard data) queue more only while this is true,
        and otherwise ``await`` :meth:`wait_writable`."""
        return self.gate.writable

    async def wait_writable(self) -> None:
        """Return once the output queued for the guest is below the low-water mark (at once
        if it is under the high-water mark). A guest that does not read (or a VM that is
        not connected, or held in a migration) makes this wait: cancel it to give up."""
        await self.gate.wait_writable()

    async def send_files(
        self, paths: Sequence[Path], progress: Callable[[FileProgress], None] | None = None
    ) -> None:
        """Send files one after another, waiting for the guest's verdict on each.

        Every path is checked first (exists, a regular file, readable). Per file:
        FILE_XFER_START with its number and the batch total, then DATA in 64 KiB pieces as
        the socket drains (the runtime's high-water mark), then the guest's SUCCESS.
        ``progress`` gets a :class:`FileProgress` when a file is accepted, at most every
        0.1 s while it is sent, and once it is saved.

        Cancelling the task cancels the transfer in the guest (FILE_XFER_STATUS
        CANCELLED). A live migration followed over QMP does not interrupt a transfer (the
        output is held during the switchover and continues on the destination); a
        connection that ends (including a migration without QMP) fails it.

        :raises FileSendError: the first failure, which stops the batch; its text is one
            sentence for the user ("the guest has no space left for notes.txt", "file
            transfer is disabled in the guest", "the guest agent is not connected", "cannot
            read /x/y: Permission denied", ...).
        """
        await send_files(self, paths, progress)

    # ---------------------------------------------------------------- loop

    async def run(self) -> None:
        """Connect and stay connected until :meth:`stop` (or a fatal error)."""
        self._stopping.clear()
        self.failure = None
        if self._load_saved:
            self._load_saved = False
            self._restore_saved()
        fresh = not self._takeover
        self._takeover = False
        delays = self._delays()
        while not self._stopping.is_set():
            self._set_runstate(Runstate.CONNECTING)
            conn = self._new_connection()
            try:
                await conn.connect(self.site.agent, fresh=fresh)
            except OSError as err:
                reason = err.strerror or str(err)
                if is_fatal(err):
                    self.failure = f"cannot connect to {self.site.agent}: {reason}"
                    log.error("%s: %s", self.name, self.failure)
                    self._set_runstate(Runstate.FAILED)
                    return
                failed = self.site.agent
                # The VM may run at another site now (it migrated while we were away): try
                # the sites in turn, waiting only after a full round.
                self.site_index = (self.site_index + 1) % len(self.sites)
                if self.site_index != 0 or len(self.sites) == 1:
                    await self._wait(next(delays), f"cannot connect to {failed}: {reason}")
                continue
            self.connection = conn
            self.connections += 1
            self._answered = not fresh  # a continuation needs no caps answer
            self._unanswered = False
            self._set_runstate(Runstate.CONNECTED)
            log.info(
                "%s: connected to %s (%s)", self.name, self.site.agent,
                "fresh: caps announced" if fresh else "continuing the conversation",
            )
            reason = "the agent port closed"
            try:
                await self._serve()
            except OSError as err:
                reason = err.strerror or str(err)
            finally:
                await self._end_migration_attempt()
                current, self.connection = self.connection, None
                self.file_transfers.connection_lost("the guest agent disconnected")
                if current is not None:
                    await current.close()
                self._save_now()
            if self._stopping.is_set():
                break
            fresh = True
            delay = next(delays)
            if self._answered:
                # The connection worked: start the delays over for the next trouble.
                delays = self._delays()
                delay = next(delays)
            if self._unanswered:
                # Give the guest time to drain what it still had and see the host go, so
                # its parser starts over before we announce again.
                reason = "the guest agent did not answer our announce"
                delay = max(delay, RESYNC_DELAY)
            qmp_note = "" if self.site.qmp else " (no QMP: the next connection starts fresh)"
            await self._wait(delay, f"{reason}{qmp_note}")
        self._set_runstate(Runstate.IDLE)

    def _new_connection(self) -> AgentConnection:
        return AgentConnection(
            self.session, self._handle_event, self._handle_error, after_input=self.flush,
            gate=self.gate,
        )

    async def _serve(self) -> None:
        """Read from the current connection until EOF or stop(); follow migrations (and the
        switch to another connection they bring) while it lasts."""
        if self.site.qmp is not None:
            self._start_follower(self.site_index)
        stopper = asyncio.create_task(self._stopping.wait(), name=f"{self.name}-stop")
        try:
            while True:
                conn = self.connection
                assert conn is not None
                reader = asyncio.create_task(conn.run(), name=f"{self.name}-reader")
                switched = asyncio.create_task(self._switched.wait(), name=f"{self.name}-switch")
                done, _ = await asyncio.wait(
                    {reader, stopper, switched}, return_when=asyncio.FIRST_COMPLETED
                )
                if not switched.done():
                    switched.cancel()
                if switched in done or self.connection is not conn:
                    self._switched.clear()
                    await self._retire(conn, reader)
                    continue
                if stopper in done:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await reader
                    return
                if self._migration is not None and self._migration.conn is not None:
                    # The source went away mid-migration (it quit after completing): the
                    # switch to the pre-connected destination is under way.
                    with contextlib.suppress(OSError):
                        reader.result()
                    await self._wait_for_switch()
                    continue
                reader.result()  # EOF returns; a broken stream raises OSError
                return
        finally:
            stopper.cancel()
            for task in list(self._followers):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _retire(self, conn: AgentConnection, reader: asyncio.Task[None]) -> None:
        """Let the previous connection deliver what the guest sent before it stopped, then
        close it. Its output goes nowhere: it is held, and the runtime writes on the new one."""
        conn.hold = True
        loop = asyncio.get_running_loop()
        end = loop.time() + SWITCH_DRAIN_MAX
        while not reader.done() and loop.time() < end:
            if loop.time() - conn.last_input >= SWITCH_QUIET:
                break
            await asyncio.sleep(SWITCH_QUIET / 4)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await reader
        await conn.close()

    async def _wait_for_switch(self) -> None:
        waiter = asyncio.create_task(self._switched.wait())
        ended = asyncio.create_task(self._migration_ended.wait())
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({waiter, ended, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, ended, stopper):
                task.cancel()
        if not self._switched.is_set():
            raise ConnectionResetError("the source closed during a migration that did not end")
        self._switched.clear()

    # ---------------------------------------------------------------- migration

    def _start_follower(self, index: int, monitor: QmpMonitor | None = None) -> None:
        task = asyncio.get_running_loop().create_task(
            self._follow(index, monitor), name=f"{self.name}-qmp-{index}"
        )
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)

    async def _follow(self, index: int, monitor: QmpMonitor | None = None) -> None:
        """Watch site ``index``'s QMP monitor (``monitor`` when one is already open) and carry
        the conversation through its migrations."""
        site = self.sites[index]
        assert site.qmp is not None
        if monitor is None:
            monitor = QmpMonitor(site.qmp)
            try:
                await monitor.connect()
            except QmpError as err:
                log.warning("%s: %s; migrations cannot be followed, the reconnect after one "
                            "starts fresh", self.name, err)
                return
        self._monitors[index] = monitor
        try:
            await monitor.enable_migration_events()
            async with contextlib.aclosing(monitor.events()) as events:
                await self._follow_events(index, events)
        except QmpError as err:
            log.warning("%s: %s", self.name, err)
        finally:
            if self._monitors.get(index) is monitor:
                del self._monitors[index]
            await monitor.close()

    async def _follow_events(self, index: int, events: AsyncIterator[VmEvent]) -> None:
        """React to one site's migration events (see :meth:`_follow`)."""
        async for event in events:
            if self.site_index != index:
                return  # switched on the destination's RESUME: that follower took over
            if event.kind == "stop" and self._migration is not None:
                self._source_stopped(self._migration)
                continue
            if event.kind != "migration" or event.status is None:
                continue
            status = event.status
            if status.running and self._migration is None:
                await self._begin_migration(index)
            elif status is MigrationStatus.COMPLETED:
                if self._migration is not None:
                    await self._complete_migration()
                return  # the VM runs elsewhere now; that site's follower takes over
            elif status in (MigrationStatus.FAILED, MigrationStatus.CANCELLED):
                if self._migration is not None:
                    await self._abort_migration(f"the migration {status.value}")

    async def _destinations(self, source: int) -> list[tuple[int, QmpMonitor | None]]:
        """Candidate destination sites, best first: those whose QEMU says it is waiting for
        an incoming migration (with their open monitor, which the runtime keeps: a QMP socket
        serves one client at a time), then those we cannot ask (no QMP)."""
        waiting: list[tuple[int, QmpMonitor | None]] = []
        unknown: list[tuple[int, QmpMonitor | None]] = []
        for index, site in enumerate(self.sites):
            if index == source:
                continue
            if site.qmp is None:
                unknown.append((index, None))
                continue
            monitor = QmpMonitor(site.qmp)
            try:
                await monitor.connect(timeout=2.0)
                status = await monitor.execute("query-status")
            except QmpError:
                await monitor.close()
                continue  # not running, or not reachable: not the destination
            if isinstance(status, dict) and status.get("status") == "inmigrate":
                waiting.append((index, monitor))
            else:
                await monitor.close()
        return waiting + unknown

    async def _begin_migration(self, source: int) -> None:
        """Pre-connect to a destination's agent socket, so the guest never sees the host
        leave; hold our output from now until the switch, so nothing we write can be left
        unread in the source when it stops."""
        self._migration_ended.clear()
        # Hold first: whatever is written from now on waits for the switch (or goes to the
        # source again if no destination can be reached).
        if self.connection is not None:
            self.connection.hold = True
        self._set_runstate(Runstate.MIGRATING)
        candidates = await self._destinations(source)
        for position, (index, monitor) in enumerate(candidates):
            site = self.sites[index]
            conn = self._new_connection()
            try:
                await conn.connect(site.agent, fresh=False, hold=True)
            except OSError as err:
                log.info("%s: destination %s not reachable: %s", self.name, site.agent,
                         err.strerror or err)
                if monitor is not None:
                    await monitor.close()
                continue
            for _, other in candidates[position + 1 :]:
                if other is not None:
                    await other.close()
            self._migration = migration = _Migration(index, conn, self.now(), monitor)
            if monitor is not None:
                migration.watcher = asyncio.get_running_loop().create_task(
                    self._watch_destination(migration), name=f"{self.name}-destination"
                )
            log.info("%s: migration started; pre-connected to %s", self.name, site.agent)
            return
        self._migration = _Migration(None, None, self.now(), None)
        if self.connection is not None:
            self.connection.hold = False
            self.flush()
        log.warning("%s: migration started but no destination agent socket is reachable: "
                    "the guest will see the host reconnect after it", self.name)

    def _source_stopped(self, migration: _Migration) -> None:
        """The guest is paused for the final copy: from now on write to the destination
        (recorded, in case the migration fails and the source resumes).

        What we wrote to the source before holding our output and the source did not read
        stays in its socket and is lost with it, while the guest carries on on the
        destination: it goes to the destination first, or the guest would see a gap in
        the stream (a file being sent, a large clipboard)."""
        source = self.connection
        unread = None if source is None else source.unread_by_peer()
        tail = None if source is None or not unread else source.written_tail(unread)
        if source is not None and unread is None and source.unread_output():
            log.warning("%s: the source stopped with our output still unread", self.name)
        elif unread and (tail is None or migration.conn is None):
            log.warning("%s: the source stopped with %d bytes of our output unread, which "
                        "cannot be carried over", self.name, unread)
        if migration.conn is None:
            return
        migration.conn.record = bytearray()
        if tail:
            log.info("%s: the source stopped with %d bytes of our output unread; they go "
                     "to the destination first", self.name, len(tail))
            migration.carried_over = len(tail)
            migration.conn.write(tail)
        migration.conn.hold = False
        migration.writing_to_destination = True
        log.debug("%s: the source stopped; writing to the destination", self.name)
        self.flush()

    async def _watch_destination(self, migration: _Migration) -> None:
        """Switch as soon as the guest runs on the destination (its RESUME often comes
        before the source reports the migration completed)."""
        assert migration.monitor is not None
        try:
            async with contextlib.aclosing(migration.monitor.events()) as events:
                async for event in events:
                    if event.kind == "resume":
                        break
                else:
                    return
        except QmpError:
            return
        if self._migration is migration:
            migration.watcher = None  # we are it: nothing to cancel
            await self._complete_migration()

    async def _complete_migration(self) -> None:
        """The source finished: continue on the destination (bytes written there now are
        delivered when the guest resumes), or reconnect fresh if we could not pre-connect."""
        migration = self._migration
        assert migration is not None
        self._migration = None
        self._migration_ended.set()
        if migration.watcher is not None:
            migration.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await migration.watcher
        if migration.conn is None or migration.index is None:
            # Continue with the next site, fresh (the guest saw the host go).
            self.site_index = (self.site_index + 1) % len(self.sites)
            if self.connection is not None:
                await self.connection.close()
            return
        self.site_index = migration.index
        self.connection = migration.conn
        migration.conn.hold = False
        migration.conn.record = None
        self.migrations += 1
        self._set_runstate(Runstate.CONNECTED)
        self.flush()  # what was held goes to the destination, in order
        self._switched.set()
        log.info("%s: migration completed in %.0f ms; continuing on %s", self.name,
                 (self.now() - migration.started) * 1000, self.site.agent)
        if self.site.qmp is not None:
            self._start_follower(self.site_index, migration.monitor)
        elif migration.monitor is not None:
            await migration.monitor.close()

    async def _abort_migration(self, reason: str) -> None:
        """The migration failed or was cancelled: drop the destination, release our output
        to the source."""
        migration = self._migration
        self._migration = None
        self._migration_ended.set()
        if migration is not None and migration.watcher is not None:
            migration.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await migration.watcher
        resend = b""
        if migration is not None and migration.conn is not None:
            # What went to the destination after the source stopped never reached the guest,
            # which goes on running on the source: send it there, first.
            # (Less what the source had left unread: it still has those.)
            resend = bytes((migration.conn.record or b"")[migration.carried_over :])
            await migration.conn.close()
        if migration is not None and migration.monitor is not None:
            await migration.monitor.close()
        if self.connection is not None:
            self.connection.hold = False
            if resend:
                self.connection.write(resend)
        self._set_runstate(Runstate.CONNECTED)
        self.flush()
        log.info("%s: %s; staying on %s", self.name, reason, self.site.agent)

    async def _end_migration_attempt(self) -> None:
        if self._migration is not None:
            await self._abort_migration("the connection ended during a migration")

    async def _wait(self, delay: float, reason: str) -> None:
        self._set_runstate(Runstate.WAITING)
        log.info("%s: reconnecting in %.1f s: %s", self.name, delay, reason)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self) -> None:
        """Ask :meth:`run` to end (it returns after closing the connection)."""
        self._stopping.set()

    async def reconnect(self) -> None:
        """Drop the current connection now; the loop reconnects (fresh)."""
        if self.connection is not None:
            await self.connection.close()

    # ---------------------------------------------------------------- events and state

    def _restore_saved(self) -> None:
        """Start from the conversation saved for this VM: what the host owned is grabbed
        again on the (fresh) first connection, transfer ids go on. An unusable file is kept
        aside by the store, and the VM starts with a new session."""
        assert self.store is not None
        loaded = self.store.load(self.name)
        if loaded is None:
            return
        try:
            self.session = HostSession.restore(loaded.session, self.now())
        except LocalProtocolError as err:
            kept = self.store.set_aside(self.name)
            log.error("%s: the saved conversation cannot be used (%s); starting fresh "
                      "(the file is kept as %s)", self.name, err, kept)
            return
        log.info("%s: loaded the saved conversation", self.name)

    def _handle_event(self, event: Event) -> None:
        self.file_transfers.handle(event)
        if isinstance(event, CapabilitiesReceived):
            self._answered = True
        elif isinstance(event, CapabilitiesTimedOut):
            # No answer to our announce: no agent yet, or a guest whose parser is still in
            # the middle of a message from the previous connection. Only a disconnect it can
            # see resets it: drop the connection (the loop waits before announcing again).
            log.warning("%s: the guest agent did not answer our announce in %.0f s; "
                        "reconnecting so that it starts over", self.name, event.waited)
            self._unanswered = True
            if self.connection is not None:
                task = asyncio.get_running_loop().create_task(self.connection.close())
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)
        if self._on_event is not None:
            self._on_event(event)
        self._schedule_save()

    def _handle_error(self, err: RemoteProtocolError) -> None:
        self.protocol_errors += 1

    def _schedule_save(self) -> None:
        if self.store is None or self._save_handle is not None:
            return
        self._save_handle = asyncio.get_running_loop().call_later(SAVE_DELAY, self._save_later)

    def _save_later(self) -> None:
        """The debounced save. Output still queued for the guest is part of the snapshot,
        and it can be a whole clipboard in flight to a slow guest: serialising megabytes
        every second would stall the loop, so the save waits until the queue is down to the
        high-water mark (the save when a connection ends takes it as it is)."""
        self._save_handle = None
        if self.session.bytes_to_send > self.gate.high:
            self._schedule_save()
            return
        self._save_now()

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
