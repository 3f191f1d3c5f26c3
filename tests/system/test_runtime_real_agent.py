"""The VM runtime (asyncio) against the REAL guest agent behind the pty relay.

The runtime keeps one session across connections. Here the relay stands in for QEMU's socket
chardev: every new connection after a drop is fresh (the runtime announces caps with
request=1), and the clipboard must work again both ways, however badly the previous
connection ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from agent_stack import AgentStack, GuestCommandError

from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.protocol import (
    CapabilitiesReceived,
    ClipboardReceived,
    ClipboardRequested,
    ClipboardRequestFailed,
    ClipboardType,
    FailureReason,
    Owner,
    Selection,
)
from vdagent_bridge.runtime import Endpoint, FileProgress, FileSendError, Runstate, Site

pytestmark = pytest.mark.system

TEXT = ClipboardType.UTF8_TEXT
CB = Selection.CLIPBOARD
TIMEOUT = 10.0
#: A target only the session agent offers when it owns a selection for the host.
AGENT_ONLY_TARGET = "text/plain;charset=utf-8"


class Harness(RuntimeHarness):
    """The runtime on the relay's socket; the guest is the agent stack."""

    def __init__(self, stack: AgentStack) -> None:
        super().__init__([Site(Endpoint("unix", path=str(stack.socket_path)))], timeout=TIMEOUT)
        self.stack = stack

    async def guest_to_host(self, data: bytes) -> None:
        """The guest copies ``data``; the host fetches it and gets it whole."""
        await self.guest_copies(self.stack, data)
        assert await self.host_fetches(timeout=30) == data

    async def agent_offers(self, selection: str) -> None:
        """Wait until the session agent owns ``selection`` in the guest for the host (its
        targets include one only the agent offers), so a guest paste asks the host."""
        loop = asyncio.get_running_loop()
        end = loop.time() + TIMEOUT
        while True:
            try:
                targets = await asyncio.to_thread(self.stack.guest_targets, selection, 2.0)
            except GuestCommandError:
                targets = []
            if AGENT_ONLY_TARGET in targets:
                return
            if loop.time() > end:
                raise AssertionError(f"the agent never took {selection}: {targets}")
            await asyncio.sleep(0.02)

    async def host_to_guest(self, data: bytes) -> None:
        """The host copies ``data``; a guest paste gets it whole."""
        self.vm.session.grab_clipboard(CB, (TEXT,))
        self.vm.flush()
        await self.agent_offers("clipboard")
        assert await self.guest_pastes(self.stack, CB, data) == data


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_reconnect_after_the_socket_drops_is_fresh_and_the_clipboard_works_again(
    agent_stack: AgentStack,
) -> None:
    async def scenario() -> None:
        async with Harness(agent_stack) as h:
            await h.guest_to_host(b"before the drop")
            announces = agent_stack.count_log("New client connected")
            first = h.vm.connections
            await h.vm.reconnect()
            await h.until(lambda: h.vm.connections > first and h.vm.session.clipboard_ready)
            await h.until(lambda: agent_stack.count_log("New client connected") > announces)
            assert h.vm.runstate is Runstate.CONNECTED
            await h.guest_to_host(b"guest after the drop")
            await h.host_to_guest(b"host after the drop")

    run(scenario)


def test_host_selection_is_regrabbed_on_the_fresh_connection(agent_stack: AgentStack) -> None:
    async def scenario() -> None:
        async with Harness(agent_stack) as h:
            h.vm.session.grab_clipboard(Selection.PRIMARY, (TEXT,))
            h.vm.flush()
            first = h.vm.connections
            await h.vm.reconnect()
            await h.until(lambda: h.vm.connections > first and h.vm.session.clipboard_ready)
            assert h.vm.session.owner(Selection.PRIMARY) is Owner.HOST
            await h.agent_offers("primary")
            mark = len(h.events)
            paste = agent_stack.guest_paste_async("primary", "UTF8_STRING", timeout=20)
            await h.event(ClipboardRequested, mark)
            h.vm.session.send_clipboard_data(Selection.PRIMARY, TEXT, b"still mine")
            h.vm.flush()
            assert await asyncio.wrap_future(paste) == b"still mine"

    run(scenario)


def test_connection_killed_at_random_offsets_of_a_large_transfer(agent_stack: AgentStack) -> None:
    """Cut the connection at many points of a guest → host transfer: no request stays
    pending, and the next transfer succeeds every time."""
    data = bytes(random.Random(7).getrandbits(8) for _ in range(256)) * (16 * 1024)  # 4 MiB
    rng = random.Random(1234)

    async def scenario() -> None:
        async with Harness(agent_stack) as h:
            await asyncio.to_thread(agent_stack.guest_copy, data)
            await h.until(lambda: h.vm.session.owner(CB) is Owner.GUEST)
            for round_ in range(16):
                conn = h.vm.connection
                assert conn is not None
                cut_at = rng.randrange(1, len(data))
                mark = len(h.events)
                h.vm.session.request_clipboard(CB, TEXT, h.vm.now())
                h.vm.flush()
                await h.until(
                    lambda c=conn, n=cut_at, m=mark: c.bytes_in >= n or len(h.events) > m, 30
                )
                first = h.vm.connections
                await h.vm.reconnect()
                await h.until(
                    lambda f=first: h.vm.connections > f and h.vm.session.clipboard_ready
                )
                # Whatever was in flight has ended: received whole, or failed at once.
                assert h.vm.session.pending_requests == ([], [])
                ended = [e for e in h.events[mark:]
                         if isinstance(e, (ClipboardReceived, ClipboardRequestFailed))]
                assert len(ended) == 1, (round_, cut_at, ended)
                if isinstance(ended[0], ClipboardRequestFailed):
                    assert ended[0].reason is FailureReason.CONNECTION_RESET
                else:
                    assert ended[0].data == data
                # The fresh conversation works: copy again (the announce made the session
                # agent forget the guest's clipboard) and fetch it whole.
                await h.guest_to_host(data[: len(data) - round_])
            assert any(isinstance(e, CapabilitiesReceived) for e in h.events)

    run(scenario)


def test_session_agent_restart_keeps_the_host_state_and_the_clipboard_works(
    agent_stack: AgentStack,
) -> None:
    """The guest's session agent restarts (a logout, a crash): the daemon releases with its
    1-byte RELEASE and announces request=1; the runtime stays connected, the session
    re-announces, and what the host owns is grabbed again on the new session agent."""

    async def scenario() -> None:
        async with Harness(agent_stack) as h:
            h.vm.session.grab_clipboard(Selection.PRIMARY, (TEXT,))
            h.vm.flush()
            await h.guest_to_host(b"before the restart")
            connections = h.vm.connections
            mark = len(h.events)
            await asyncio.to_thread(agent_stack.restart_session_agent)
            restarted = await h.event(CapabilitiesReceived, mark)
            assert isinstance(restarted, CapabilitiesReceived) and restarted.guest_restarted
            assert h.vm.connections == connections  # no reconnect: the same connection
            assert h.vm.session.owner(CB) is Owner.NONE  # the guest's copy went with it
            assert h.vm.session.owner(Selection.PRIMARY) is Owner.HOST
            await h.agent_offers("primary")
            mark = len(h.events)
            paste = agent_stack.guest_paste_async("primary", "UTF8_STRING", timeout=20)
            await h.event(ClipboardRequested, mark)
            h.vm.session.send_clipboard_data(Selection.PRIMARY, TEXT, b"host kept it")
            h.vm.flush()
            assert await asyncio.wrap_future(paste) == b"host kept it"
            await h.guest_to_host(b"after the restart")

    run(scenario)


def test_stop_while_connected_leaves_the_runtime_idle(agent_stack: AgentStack) -> None:
    async def scenario() -> None:
        h = Harness(agent_stack)
        async with h:
            pass
        assert h.vm.runstate is Runstate.IDLE
        with contextlib.suppress(Exception):
            assert h.task is not None and h.task.done()

    run(scenario)


# ----------------------------------------------------------------------------- files


def test_send_files_lands_two_files_byte_identical_in_the_transfer_directory(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    """VmRuntime.send_files through the real agent: a 3 MiB file (48 DATA pieces, sent as
    the socket drains) and a small one, numbered 1 and 2 of 2."""
    big = tmp_path / "big \u00e9t\u00e9.bin"
    big.write_bytes(random.Random(5).randbytes(3 * 1024 * 1024 + 7))
    small = tmp_path / "notes.txt"
    small.write_bytes(b"sent by send_files\n")
    reports: list[FileProgress] = []

    async def scenario() -> None:
        async with Harness(agent_stack) as h:
            await h.vm.send_files([big, small], reports.append)

    run(scenario)
    for sent in (big, small):
        assert (Path(agent_stack.xfer_dir) / sent.name).read_bytes() == sent.read_bytes()
    assert reports[-1] == FileProgress("notes.txt", 19, 19, 2, 2)
    assert FileProgress(big.name, big.stat().st_size, big.stat().st_size, 1, 2) in reports


def test_send_files_reports_the_agents_refusal_in_words(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    """A file larger than the free space of the guest's transfer directory (a sparse 10 TiB
    file: the agent checks the space before it takes any data) is refused in words, and
    nothing is left behind in the guest."""
    huge = tmp_path / "huge.img"
    with huge.open("wb") as f:
        f.truncate(10 << 40)

    async def scenario() -> None:
        async with Harness(agent_stack) as h:
            with pytest.raises(FileSendError) as err:
                await h.vm.send_files([huge])
            assert str(err.value) == "the guest has no space left for huge.img"
            assert h.vm.session.transfer(1) is None

    run(scenario)
    assert not (Path(agent_stack.xfer_dir) / "huge.img").exists()
