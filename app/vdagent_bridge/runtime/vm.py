"""One VM's conversation: a session that outlives its connections, and the reconnect loop.

Theory of operation
-------------------
A VM is one or more *sites* (:class:`~vdagent_bridge.sites.Site`): an agent port (and
optionally a QMP monitor) per QEMU process that may run it — the source and the destinations
of a live migration. One :class:`HostSession` holds the conversation for the VM's whole life;
connections come and go around it.

Runstate: ``IDLE → CONNECTING → CONNECTED (⇄ MIGRATING) → (connection lost) → WAITING →
CONNECTING …``, ``FAILED`` on an error retrying cannot fix, back to ``IDLE`` on
:meth:`VmRuntime.stop`.

While connected, a :class:`~vdagent_bridge.runtime.conversation.Conversation` drives the
connection and, through the pure switchover machine (runtime/switchover.py), the live
migrations its followers report: the conversation moves to the destination without the guest
noticing, and the runtime only hears that it did (:attr:`VmRuntime.migrations`).

Fresh or continuation: after a connection is lost, the guest may have seen the host side close
(a QEMU socket chardev closes the guest's port when its client goes), so the next connection
is *fresh*: the session announces caps with request=1, the agent zeroes its serials, what the
host owns is grabbed again. A *continuation* (no announce; serials, ownership, pending requests
and a half-received message carry over) is only right when the guest cannot have noticed: a
prepared migration switchover, or a conversation imported from another instance for a
takeover. Without QMP the runtime cannot prepare a switchover, so after a migration the
reconnect is fresh too.

Retryable errors (the socket is missing, refused, reset: the VM is not up yet or restarting)
wait a jittered, growing delay (:func:`backoff`) and retry; the delay starts over after a
connection that worked. Fatal errors (permission denied) stop the loop in FAILED with a
readable reason.

The session state is saved to the :class:`StateStore` (debounced, and when a connection ends
or the runtime stops), so it can be exported for another instance.

Output and back-pressure: everything for the guest waits in the session's queue until a
socket takes it (see runtime/connection.py). One :class:`OutputGate` per VM holds the
high-water mark over that queue, whichever connection writes it: :attr:`VmRuntime.writable`
and :meth:`VmRuntime.wait_writable` for producers. The commands (runtime/commands.py) write at
once; :meth:`VmRuntime.send_files` sends files at the pace the guest reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import (
    CapabilitiesReceived,
    CapabilitiesTimedOut,
    Event,
    HostSession,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
)
from ..sites import LibvirtSite, VmSite, describe
from ..state import StateStore
from .backoff import backoff
from .commands import AgentCommands
from .connection import AgentConnection
from .conversation import Conversation
from .filesend import ANSWER_TIMEOUT, FileProgress, FileTransfers, send_files
from .gate import OutputGate
from .links import open_link
from .restore import judge_restore
from .switchover import Switched

if TYPE_CHECKING:
    from .libvirt.api import Hosts

log = logging.getLogger(__name__)

#: How long after a change the state is written (so a burst of events costs one write).
SAVE_DELAY = 1.0
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


def is_fatal(err: BaseException) -> bool:
    """Errors that retrying cannot fix without the user."""
    return isinstance(err, PermissionError)


class VmRuntime(AgentCommands):
    """Keeps one VM connected; see the module docstring. Its commands are
    :class:`~vdagent_bridge.runtime.commands.AgentCommands`'."""

    def __init__(
        self,
        name: str,
        sites: Sequence[VmSite],
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
        self.sites: list[VmSite] = list(sites)
        self.site_index = 0
        #: The VM's libvirt connections, when it has libvirt sites (opened as needed).
        self._hosts: object | None = None
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
        self.connections = 0
        self._stopping = asyncio.Event()
        self._save_handle: asyncio.TimerHandle | None = None
        self.protocol_errors = 0
        #: Live migrations the conversation followed to their destination.
        self.migrations = 0
        self._conversation: Conversation | None = None
        #: The connection being opened (before a conversation runs over it).
        self._opening: AgentConnection | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self._answered = False
        self._unanswered = False
        #: The conversation in progress (a new one at each fresh connect): a libvirt domain
        #: carries it as a mark, so that its restore can tell it is ours (runtime/restore.py).
        self.conversation_id: str | None = None
        #: The conversation a saved VM was saved with, kept (here and on disk) for its restore.
        self.saved_with: str | None = None
        #: Why the runtime waits to connect again (None: it does not), in words.
        self.waiting_reason: str | None = None
        #: The high-water mark of the output to the guest, shared by every connection of
        #: this VM (they share the session's queue): see :meth:`wait_writable`.
        self.gate = OutputGate(self._backlog)
        #: Our file transfers waiting for the guest's answers (see :meth:`send_files`).
        self.file_transfers = FileTransfers()
        #: How long the guest has to answer a file offer, and to confirm the last byte.
        self.file_answer_timeout = ANSWER_TIMEOUT
        super().__init__()

    @property
    def site(self) -> VmSite:
        return self.sites[self.site_index]

    def add_site(self, site: VmSite) -> None:
        """Another QEMU that may run the VM (a new migration destination)."""
        self.sites.append(site)
        if self._conversation is not None:
            self._conversation.site_added()

    @property
    def connection(self) -> AgentConnection | None:
        """The connection the conversation is read from (None: not connected)."""
        conversation = self._conversation
        return None if conversation is None else conversation.reader

    @property
    def connected(self) -> bool:
        conn = self.connection
        return conn is not None and conn.connected

    def _set_runstate(self, state: Runstate) -> None:
        if state is not self.runstate:
            log.debug("%s: %s -> %s", self.name, self.runstate.value, state.value)
            self.runstate = state
            if self._on_runstate is not None:
                self._on_runstate(state)

    # ---------------------------------------------------------------- writing

    def flush(self) -> None:
        """Write what the session queued, on the connection the conversation writes to
        (during a migration switchover: the destination already, once the source stopped;
        QEMU delivers it when the guest resumes there)."""
        conversation = self._conversation
        if conversation is not None:
            conversation.flush()
        self._schedule_save()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def _writer(self) -> AgentConnection | None:
        conversation = self._conversation
        return None if conversation is None else conversation.writer

    def _backlog(self) -> int:
        """Bytes queued for the guest and not yet taken by a socket."""
        conn = self._writer()
        if conn is None:
            return self.session.bytes_to_send
        return conn.backlog() + (self.session.bytes_to_send if conn.hold else 0)

    def unread_output(self) -> int:
        conn = self._writer()
        queued = self.session.bytes_to_send
        return queued if conn is None else max(queued, conn.unread_output())

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

    @property
    def qmp_open(self) -> bool:
        """Whether the current site's QMP monitor is open (migrations are followed, and
        :meth:`screendump` works)."""
        conversation = self._conversation
        return conversation is not None and conversation.monitor(conversation.site) is not None

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
        conversation = self._conversation
        monitor = None if conversation is None else conversation.monitor(conversation.site)
        if monitor is None:
            return False
        await monitor.screendump(str(Path(path).absolute()))
        return True

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
        try:
            await self._run()
        finally:
            self._close_libvirt()

    async def _run(self) -> None:
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
            fresh = self._judge_restore(fresh)
            conn = self._new_connection()
            self._opening = conn
            try:
                await open_link(self.site, conn, self._libvirt_hosts(), fresh=fresh)
            except OSError as err:
                reason = err.strerror or str(err)
                where = describe(self.site)
                if is_fatal(err):
                    self.failure = (reason if isinstance(self.site, LibvirtSite)
                                    else f"cannot connect to {where}: {reason}")
                    log.error("%s: %s", self.name, self.failure)
                    self._set_runstate(Runstate.FAILED)
                    return
                failed = where
                # The VM may run at another site now (it migrated while we were away): try
                # the sites in turn, waiting only after a full round.
                self.site_index = (self.site_index + 1) % len(self.sites)
                if self.site_index != 0 or len(self.sites) == 1:
                    why = reason if isinstance(self.site, LibvirtSite) or reason.startswith(
                        "cannot") else f"cannot connect to {failed}: {reason}"
                    await self._wait(next(delays), why)
                continue
            finally:
                self._opening = None
            if self._stopping.is_set():
                await conn.close()
                break
            self.connections += 1
            self.waiting_reason = None
            if fresh or self.conversation_id is None:
                self._new_conversation()
            self._answered = not fresh  # a continuation needs no caps answer
            self._unanswered = False
            log.info(
                "%s: connected to %s (%s)", self.name, describe(self.site),
                "fresh: caps announced" if fresh else "continuing the conversation",
            )
            reason = await self._converse(conn)
            if self._stopping.is_set():
                break
            if self._was_saved():
                reason = "the VM was saved; its conversation is kept for its restore"
                self._save_now()
            else:
                reason = self._why_down() or reason
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
            followed = isinstance(self.site, LibvirtSite) or self.site.qmp is not None
            qmp_note = "" if followed else " (no QMP: the next connection starts fresh)"
            await self._wait(delay, f"{reason}{qmp_note}")
        self._set_runstate(Runstate.IDLE)

    def _on_libvirt(self) -> tuple[LibvirtSite, Hosts] | None:
        """The current site and the VM's libvirt connections, when the site is a domain."""
        site = self.site
        if not isinstance(site, LibvirtSite):
            return None
        from .libvirt import api

        hosts = self._libvirt_hosts()
        assert isinstance(hosts, api.Hosts)
        return site, hosts

    def _new_conversation(self) -> None:
        """A fresh conversation: a new id, marked in a libvirt domain's live definition."""
        self.conversation_id = uuid.uuid4().hex
        if (libvirt := self._on_libvirt()) is not None:
            from .libvirt import saves

            site, hosts = libvirt
            saves.set_mark(hosts, site, self.conversation_id)

    def _was_saved(self) -> bool:
        """After a conversation ended: whether the VM was saved (then its conversation is
        kept for the restore)."""
        libvirt = self._on_libvirt()
        if libvirt is None or self.conversation_id is None:
            return False
        from .libvirt import saves

        site, hosts = libvirt
        if not saves.was_saved(hosts, site):
            return False
        self.saved_with = self.conversation_id
        return True

    def _why_down(self) -> str | None:
        """After a libvirt domain's conversation ended: why, from the domain's state."""
        if (libvirt := self._on_libvirt()) is None:
            return None
        from .libvirt import api

        return api.why_down(libvirt[1], libvirt[0])

    def _judge_restore(self, fresh: bool) -> bool:
        """Before a connect: a saved VM that is being restored continues the conversation
        it was saved with, when it is ours and the guest has not run yet (runtime/restore.py);
        whether the connect is fresh."""
        if (libvirt := self._on_libvirt()) is None:
            return fresh
        from .libvirt import api, saves

        site, hosts = libvirt
        try:
            domain = hosts.domain(site)
            if not domain.isActive():
                return fresh  # still saved: the connect fails, and we wait for the restore
        except (api.LibvirtError, api.load().libvirtError):
            return fresh
        mark, restoring = saves.mark_of(domain), saves.restoring(domain)
        if self.saved_with is None and not (restoring and mark is not None):
            return fresh  # nothing kept, and no saved conversation of anyone's either
        verdict = judge_restore(self.saved_with, mark, restoring)
        log.info("%s: the VM starts from a saved state: %s", self.name,
                 verdict.why if verdict.resume else f"a fresh connect: {verdict.why}")
        self.saved_with = None
        if verdict.resume:
            return False
        return True

    async def _converse(self, conn: AgentConnection) -> str:
        """Run the conversation over ``conn`` until it is lost; why it ended."""
        conversation = Conversation(
            self.name, self.sites, self.session, conn, self.site_index,
            new_connection=self._new_connection, on_switched=self._switched,
            on_change=self._phase_changed, hosts=self._libvirt_hosts(),
        )
        self._conversation = conversation
        self._set_runstate(Runstate.CONNECTED)
        stopper = asyncio.get_running_loop().create_task(self._stop_when_asked(conversation),
                                                         name=f"{self.name}-stop")
        try:
            end = await conversation.serve()
            self.site_index = end.next_site
            return end.reason
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
            self._conversation = None
            self.file_transfers.connection_lost("the guest agent disconnected")
            self.gate.notify()
            self._save_now()

    async def _stop_when_asked(self, conversation: Conversation) -> None:
        await self._stopping.wait()
        conversation.stop()

    def _libvirt_hosts(self) -> object | None:
        """The VM's libvirt connections (made when it first needs them)."""
        if self._hosts is None and any(isinstance(s, LibvirtSite) for s in self.sites):
            from .libvirt import api

            self._hosts = api.Hosts()
        return self._hosts

    def _close_libvirt(self) -> None:
        if self._hosts is not None:
            from .libvirt import api

            if isinstance(self._hosts, api.Hosts):
                self._hosts.close()
            self._hosts = None

    def _new_connection(self) -> AgentConnection:
        return AgentConnection(
            self.session, self._handle_event, self._handle_error, after_input=self.flush,
            gate=self.gate,
        )

    def _switched(self, switched: Switched) -> None:
        self.site_index = switched.site
        self.migrations += 1
        log.info("%s: migration completed in %.0f ms; continuing on %s%s", self.name,
                 switched.seconds * 1000, describe(self.site),
                 " (afresh: the guest resumed before we were there)" if switched.fresh else "")

    def _phase_changed(self) -> None:
        conversation = self._conversation
        if conversation is not None:
            self._set_runstate(Runstate.MIGRATING if conversation.migrating
                               else Runstate.CONNECTED)

    async def _wait(self, delay: float, reason: str) -> None:
        """Wait ``delay`` s before the next connect, or less: until :meth:`stop`, or until
        a libvirt domain of the VM loads a saved image (a restore must be met while it
        loads) or its guest opens the agent port (runtime/libvirt/saves.py)."""
        self.waiting_reason = reason
        self._set_runstate(Runstate.WAITING)
        log.info("%s: reconnecting in %.1f s: %s", self.name, delay, reason)
        with self._connect_moments() as moment:
            waits = [asyncio.ensure_future(self._stopping.wait())]
            if moment is not None:
                waits.append(asyncio.ensure_future(moment.wait()))
            try:
                await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)

    @contextlib.contextmanager
    def _connect_moments(self) -> Iterator[asyncio.Event | None]:
        libvirt_sites = [site for site in self.sites if isinstance(site, LibvirtSite)]
        hosts = self._libvirt_hosts()
        if not libvirt_sites or hosts is None:
            yield None
            return
        from .libvirt import saves

        with saves.watch_connect_moments(hosts, libvirt_sites) as moment:  # type: ignore[arg-type]
            yield moment

    async def stop(self) -> None:
        """Ask :meth:`run` to end (it returns after closing the connection)."""
        self._stopping.set()

    async def reconnect(self) -> None:
        """Drop the current connection now; the loop reconnects (fresh)."""
        conn = self.connection
        if conn is not None:
            await conn.close()

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
        self.saved_with = loaded.saved_with
        log.info("%s: loaded the saved conversation%s", self.name,
                 " (the VM was saved with it)" if self.saved_with else "")

    def _handle_event(self, event: Event) -> None:
        self.file_transfers.handle(event)
        if isinstance(event, CapabilitiesReceived):
            self._answered = True
        elif isinstance(event, CapabilitiesTimedOut) and self._agent_not_up_yet():
            # The guest has not opened its port (the VM is booting): it reads our announce
            # when its agent starts, and answers then (a late answer is taken). Dropping the
            # connection now would only race the agent's start with our own close.
            log.info("%s: the guest agent has not opened its port yet; waiting for it",
                     self.name)
        elif isinstance(event, CapabilitiesTimedOut):
            # No answer to our announce: no agent yet, or a guest whose parser is still in
            # the middle of a message from the previous connection. Only a disconnect it can
            # see resets it: drop the connection (the loop waits before announcing again).
            log.warning("%s: the guest agent did not answer our announce in %.0f s; "
                        "reconnecting so that it starts over", self.name, event.waited)
            self._unanswered = True
            conn = self.connection
            if conn is not None:
                task = asyncio.get_running_loop().create_task(conn.close())
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)
        if self._on_event is not None:
            self._on_event(event)
        self._schedule_save()

    def _agent_not_up_yet(self) -> bool:
        """Whether the guest's agent has surely not opened its port (libvirt tells)."""
        if (libvirt := self._on_libvirt()) is None:
            return False
        from .libvirt import api

        return api.guest_port_open(libvirt[1], libvirt[0]) is False

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
            self.store.save(self.name, self.session.snapshot(self.now()),
                            saved_with=self.saved_with)
        except StateError:
            self._schedule_save()  # events are still being handed out: try again shortly
        except OSError as err:
            log.error("%s: cannot save the conversation state: %s", self.name, err.strerror)
