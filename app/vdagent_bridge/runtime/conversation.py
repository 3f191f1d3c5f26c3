"""One connected conversation: its links, its followers, and the switchover driven over them.

Theory of operation
-------------------
This is the thin asyncio driver of :class:`~vdagent_bridge.runtime.switchover.Switchover`.
It starts with the connection the runtime opened (the *source* link) and ends, returning the
machine's :class:`~vdagent_bridge.runtime.switchover.End`, when that conversation's connection
is lost for good. Meanwhile:

- every observation becomes a fact in one queue: a link's reader reaching EOF, a held link
  closed by its peer, a connect attempt's outcome, a follower's migration facts, the answer
  to a search for destinations, the runtime stopping;
- one task (:meth:`Conversation.serve`) takes the facts one at a time, asks the machine, and
  carries out its commands in order. No other task decides anything or changes which link
  is read or written: the readers, watchers, connect attempts and followers only report;
- commands that take time (connecting, finding destinations, closing) run as tasks this
  object owns and cancels at the end; retiring the old source (letting it deliver the
  guest's last messages, at most :data:`SWITCH_DRAIN_MAX`) is awaited in place, so the new
  link is read only once the old one is done: one link is read at a time.

The runtime writes through :attr:`Conversation.writer` (the machine's ``WriteTo``) and the
UI sees :attr:`Conversation.reader` and :attr:`Conversation.site`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..protocol import HostSession
from ..sites import Endpoint, LibvirtSite, Site, VmSite
from .connection import AgentConnection
from .follower import SiteFact, follow_qmp
from .links import open_link
from .qmp import QmpError, QmpMonitor
from .switchover import (
    Announce,
    CarryOver,
    Close,
    Command,
    Connect,
    DestinationsFound,
    End,
    Fact,
    FindDestinations,
    Follow,
    GuestStopped,
    Hold,
    LinkEnded,
    LinkFailed,
    LinkUp,
    Note,
    ReadFrom,
    Record,
    Release,
    Resend,
    Shutdown,
    Switched,
    Switchover,
    Tick,
    Unfollow,
    WriteTo,
)
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: After a migration switch, the source connection is read until it has been quiet this
#: long (the guest stopped long before; its last bytes may still be in our socket), at most
#: SWITCH_DRAIN_MAX.
SWITCH_QUIET = 0.02
SWITCH_DRAIN_MAX = 0.5
#: How long asking a possible destination's QMP monitor whether it waits for a migration
#: may take.
QUERY_TIMEOUT = 2.0
#: How long the other sites are asked for the incoming side of a migration.
INCOMING_WAIT = 1.0


def _followable(site: VmSite) -> bool:
    """Whether a site's migrations can be followed: a QMP monitor, or libvirt's events."""
    return isinstance(site, LibvirtSite) or site.qmp is not None


class Conversation:
    """The links and followers of one connected conversation; see the module docstring.

    ``source`` is the connection the runtime opened to ``sites[site]``; ``new_connection``
    makes another over the same session; ``on_switched`` hears every completed switch,
    ``on_change`` every change of phase (to show MIGRATING).
    """

    def __init__(
        self,
        name: str,
        sites: list[VmSite],
        session: HostSession,
        source: AgentConnection,
        site: int,
        *,
        new_connection: Callable[[], AgentConnection],
        on_switched: Callable[[Switched], None] | None = None,
        on_change: Callable[[], None] | None = None,
        monitor: QmpMonitor | None = None,
        hosts: object | None = None,
    ) -> None:
        self.name = name
        #: The runtime's list (it may grow: :meth:`site_added`).
        self.sites = sites
        self._hosts = hosts
        self.session = session
        self._new_connection = new_connection
        self._on_switched = on_switched
        self._on_change = on_change
        followed = frozenset(i for i, s in enumerate(self.sites) if _followable(s))
        self.machine = Switchover(site=site, link=0, sites=len(self.sites), followed=followed)
        self._links: dict[int, AgentConnection] = {0: source}
        self.reader = source
        self.writer = source
        self._facts: asyncio.Queue[Fact] = asyncio.Queue()
        self._reader_task: asyncio.Task[None] | None = None
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}
        self._followers: dict[int, asyncio.Task[None]] = {}
        #: Open QMP monitors by site: the followers' (screendump goes through them) and
        #: the ones a search for destinations left open for the destination's follower.
        self._monitors: dict[int, QmpMonitor] = {}
        if monitor is not None:
            self._monitors[site] = monitor
        #: Tasks that find destinations, and closes in progress (awaited at the end: a
        #: close gives the peer a moment to take what is queued).
        self._tasks: set[asyncio.Task[None]] = set()
        self._closes: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- for the runtime

    @property
    def site(self) -> int:
        return self.machine.site

    @property
    def migrating(self) -> bool:
        return self.machine.migrating

    def monitor(self, site: int) -> QmpMonitor | None:
        """The open QMP monitor of ``site`` (its follower's), if any."""
        return self._monitors.get(site) if site in self._followers else None

    def site_added(self) -> None:
        """The runtime's list of sites grew by one (a new migration destination)."""
        self.machine.add_site(followed=_followable(self.sites[-1]))

    def flush(self) -> None:
        """Write what the session queued on the link the machine writes to."""
        self.writer.flush()

    def stop(self) -> None:
        """End the conversation (the runtime stops): :meth:`serve` returns soon."""
        self._facts.put_nowait(Shutdown())

    async def serve(self) -> End:
        """Drive the switchover until the conversation's connection is lost; returns why
        and where to reconnect. Everything this object opened is closed on return."""
        loop = asyncio.get_running_loop()
        try:
            await self._apply(self.machine.start_commands())
            self._read(0)
            while True:
                deadline = self.machine.next_deadline()
                try:
                    if deadline is None:
                        fact = await self._facts.get()
                    else:
                        fact = await asyncio.wait_for(self._facts.get(),
                                                      max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    fact = Tick()
                before = self.machine.phase
                commands = self.machine.handle(fact, loop.time())
                await self._apply(commands)
                if self.machine.phase is not before:
                    if not self.machine.migrating:
                        await self._drop_spare_monitors()
                    if self._on_change is not None:
                        self._on_change()
                for command in commands:
                    if isinstance(command, End):
                        return command
        finally:
            await self._close_all()

    # ---------------------------------------------------------------- observations

    def observe(self, fact: SiteFact) -> None:
        """A follower's fact; a stop of the source gets its measurement of what the source
        left unread (the guest no longer reads it: the count stays what it is now)."""
        if isinstance(fact, GuestStopped) and fact.site == self.machine.site:
            source = self._links.get(self.machine.link)
            unread = None if source is None else source.unread_by_peer()
            kept = source is not None and unread is not None and source.keeps(unread)
            if (source is not None and unread is None and source.knows_unread
                    and not source.unread_output()):
                unread = 0  # everything was read (the kernel says so, sock_diag or not)
            fact = GuestStopped(fact.site, unread, kept)
        self._facts.put_nowait(fact)

    def _read(self, link: int) -> None:
        conn = self._links[link]
        self._stop_watching(link)
        self.reader = conn

        async def reader() -> None:
            reason = "the agent port closed"
            try:
                await conn.run()
            except OSError as err:
                reason = err.strerror or str(err)
            self._facts.put_nowait(LinkEnded(link, reason))

        self._reader_task = asyncio.get_running_loop().create_task(
            reader(), name=f"{self.name}-reader-{link}")

    def _watch(self, link: int) -> None:
        conn = self._links[link]

        async def watcher() -> None:
            reason = await conn.watch_for_close()
            self._facts.put_nowait(LinkEnded(link, reason))

        self._watchers[link] = asyncio.get_running_loop().create_task(
            watcher(), name=f"{self.name}-watch-{link}")

    def _stop_watching(self, link: int) -> None:
        task = self._watchers.pop(link, None)
        if task is not None:
            task.cancel()

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name=f"{self.name}-{name}")  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------------- commands

    async def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            await self._carry_out(command)
        self.flush()

    async def _carry_out(self, command: Command) -> None:  # noqa: C901 - one case a command
        links = self._links
        if isinstance(command, Hold):
            links[command.link].hold = True
        elif isinstance(command, Release):
            links[command.link].hold = False
        elif isinstance(command, WriteTo):
            self.writer = links[command.link]
        elif isinstance(command, Record):
            links[command.link].record = bytearray() if command.on else None
        elif isinstance(command, CarryOver):
            self._carry_over(command)
        elif isinstance(command, Resend):
            record = links[command.recorded].record or b""
            if len(record) > command.skip:
                links[command.to].write(bytes(record[command.skip:]))
        elif isinstance(command, Connect):
            self._connecting[command.link] = self._spawn(
                self._connect(command.link, command.site), f"connect-{command.link}")
        elif isinstance(command, Close):
            self._close(command.link)
        elif isinstance(command, FindDestinations):
            self._spawn(self._find(command.source), "destinations")
        elif isinstance(command, Follow):
            await self._follow(command.site)
        elif isinstance(command, Unfollow):
            await self._unfollow(command.site)
        elif isinstance(command, ReadFrom):
            if command.retire is not None:
                await self._retire(command.retire)
            self._read(command.link)
        elif isinstance(command, Announce):
            self.session.start(asyncio.get_running_loop().time())
        elif isinstance(command, Switched):
            if self._on_switched is not None:
                self._on_switched(command)
        elif isinstance(command, Note):
            log.log(command.level, "%s: %s", self.name, command.text)
        elif isinstance(command, End):
            pass  # serve() returns it
        else:  # pragma: no cover - the Command union is exhaustive
            raise AssertionError(f"unknown command {command!r}")

    def _carry_over(self, command: CarryOver) -> None:
        source, target = self._links[command.source], self._links[command.to]
        count = command.count
        if count is None:
            count = source.unread_by_peer()
            if count is None:
                if source.unread_output():
                    log.warning("%s: the source stopped with our output still unread",
                                self.name)
                return
            if count:
                log.info("%s: the source left %d bytes of our output unread; they go to "
                         "the destination first", self.name, count)
        if not count:
            return
        tail = source.written_tail(count)
        if tail is None:
            log.warning("%s: %d bytes of our output left unread in the source cannot be "
                        "carried over", self.name, count)
            return
        target.write(tail)

    async def _connect(self, link: int, site: int) -> None:
        conn = self._new_connection()
        try:
            await open_link(self.sites[site], conn, self._hosts, fresh=False, hold=True)
        except OSError as err:
            self._facts.put_nowait(LinkFailed(link, err.strerror or str(err)))
            return
        finally:
            self._connecting.pop(link, None)
        self._links[link] = conn
        self._watch(link)
        self._facts.put_nowait(LinkUp(link))

    def _close(self, link: int) -> None:
        attempt = self._connecting.pop(link, None)
        if attempt is not None:
            attempt.cancel()
        self._stop_watching(link)
        conn = self._links.pop(link, None)
        if conn is not None:
            task = asyncio.get_running_loop().create_task(conn.close(),
                                                          name=f"{self.name}-close-{link}")
            self._closes.add(task)
            task.add_done_callback(self._closes.discard)

    async def _retire(self, link: int) -> None:
        """Let the previous source deliver what the guest sent before it stopped, then
        close it. Its output goes nowhere: it is held, and the new link writes."""
        conn = self._links.pop(link)
        conn.hold = True
        reader = self._reader_task
        loop = asyncio.get_running_loop()
        end = loop.time() + SWITCH_DRAIN_MAX
        if reader is not None:
            while not reader.done() and loop.time() < end:
                if loop.time() - conn.last_input >= SWITCH_QUIET:
                    break
                await asyncio.sleep(SWITCH_QUIET / 4)
            await cancel_and_wait(reader)
            self._reader_task = None
        await conn.close(linger=False)  # a stopped source never reads again

    async def _find(self, source: int) -> None:
        """Candidate destinations, best first: the sites that say they wait for an incoming
        migration (a QEMU's ``query-status``, a libvirt host's paused incoming domain; a
        QEMU's monitor stays open for the destination's follower: a QMP socket serves one
        client at a time), then those that cannot be asked (no QMP). Asked again for up to
        :data:`INCOMING_WAIT` while none says so (a destination that is just starting)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + INCOMING_WAIT
        others = [i for i in range(len(self.sites)) if i != source]
        unknown = [i for i in others
                   if isinstance(self.sites[i], Site) and self.sites[i].qmp is None]
        while True:
            waiting = [i for i in others if i not in unknown and await self._waits(i)]
            if waiting or loop.time() >= end:
                break
            await asyncio.sleep(0.05)
        self._facts.put_nowait(DestinationsFound(tuple(waiting + unknown)))

    async def _waits(self, index: int) -> bool:
        """Whether site ``index`` waits for an incoming migration of the VM."""
        site = self.sites[index]
        if isinstance(site, LibvirtSite):
            return await self._incoming_domain(site)
        assert site.qmp is not None
        monitor = self._monitors.get(index) or QmpMonitor(site.qmp)
        try:
            if index not in self._monitors:
                await monitor.connect(timeout=QUERY_TIMEOUT)
            status = await monitor.execute("query-status")
        except QmpError as err:
            log.info("%s: site %d is not a destination: %s", self.name, index, err)
            await self._drop_monitor(index, monitor)
            return False  # not running, or not reachable
        if isinstance(status, dict) and status.get("status") == "inmigrate":
            self._monitors[index] = monitor
            return True
        log.info("%s: site %d is not a destination: its QEMU is %s", self.name, index,
                 status.get("status") if isinstance(status, dict) else status)
        await self._drop_monitor(index, monitor)
        return False

    async def _incoming_domain(self, site: LibvirtSite) -> bool:
        """Whether ``site``'s host has the VM's domain paused for the incoming migration
        (libvirt creates it before the source's first iteration)."""
        from .libvirt import api

        if not isinstance(self._hosts, api.Hosts):
            return False
        try:
            return api.incoming(self._hosts.domain(site))
        except api.LibvirtError:
            return False

    async def _drop_monitor(self, index: int, monitor: QmpMonitor) -> None:
        if self._monitors.get(index) is monitor:
            del self._monitors[index]
        await monitor.close()

    async def _follow(self, site: int) -> None:
        """(Re)start the follower of ``site`` on its open monitor, or a new one."""
        await cancel_and_wait(self._followers.pop(site, None))
        where = self.sites[site]
        if isinstance(where, LibvirtSite):
            from .libvirt import api
            from .libvirt.follower import follow_libvirt

            if isinstance(self._hosts, api.Hosts):
                self._followers[site] = self._spawn(
                    follow_libvirt(self._hosts, site, where, self.observe, vm=self.name),
                    f"libvirt-{site}")
            return
        endpoint = where.qmp
        if endpoint is None:
            return
        self._followers[site] = self._spawn(self._run_follower(site, endpoint), f"qmp-{site}")

    async def _run_follower(self, site: int, endpoint: Endpoint) -> None:
        monitor = self._monitors.get(site)
        if monitor is None:
            monitor = QmpMonitor(endpoint)
            try:
                await monitor.connect()
            except QmpError as err:
                log.warning("%s: %s; migrations cannot be followed, the reconnect after one "
                            "starts fresh", self.name, err)
                return
            self._monitors[site] = monitor
        try:
            await follow_qmp(site, monitor, self.observe, vm=self.name)
        finally:
            if self._followers.get(site) is asyncio.current_task():
                del self._followers[site]
                await self._drop_monitor(site, monitor)

    async def _unfollow(self, site: int) -> None:
        await cancel_and_wait(self._followers.pop(site, None))
        monitor = self._monitors.pop(site, None)
        if monitor is not None:
            await monitor.close()

    async def _drop_spare_monitors(self) -> None:
        """Close the monitors a search for destinations left open and no follower uses."""
        for site, monitor in list(self._monitors.items()):
            if site not in self._followers:
                await self._drop_monitor(site, monitor)

    async def _close_all(self) -> None:
        for task in [self._reader_task, *self._watchers.values(), *self._connecting.values(),
                     *self._followers.values()]:
            await cancel_and_wait(task)
        self._reader_task = None
        self._watchers.clear()
        self._connecting.clear()
        self._followers.clear()
        for conn in list(self._links.values()):
            await conn.close()
        self._links.clear()
        for monitor in list(self._monitors.values()):
            await monitor.close()
        self._monitors.clear()
        for task in list(self._tasks):
            await cancel_and_wait(task)
        if self._closes:
            await asyncio.gather(*self._closes, return_exceptions=True)
