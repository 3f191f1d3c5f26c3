"""The VM runtime's reconnect loop, against the demo guest on a real UNIX socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import quick, until
from vdagent_bridge.demo import GuestServer, SimulatedGuest
from vdagent_bridge.protocol import (
    CapabilitiesReceived,
    ClipboardType,
    Event,
    HostSession,
    Owner,
    Selection,
)
from vdagent_bridge.protocol.messages import ClipboardData
from vdagent_bridge.runtime import Endpoint, Runstate, Site, VmRuntime
from vdagent_bridge.runtime import connection as connection_module
from vdagent_bridge.state import StateStore


def test_runtime_waits_for_the_socket_then_connects_fresh(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "agent.sock"
        states: list[Runstate] = []
        events: list[Event] = []
        vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))],
                       on_event=events.append, on_runstate=states.append, delays=quick)
        task = asyncio.create_task(vm.run())
        await until(lambda: Runstate.WAITING in states)  # no socket yet: retrying
        async with GuestServer(path) as server:
            await until(lambda: any(isinstance(e, CapabilitiesReceived) for e in events))
            assert vm.runstate is Runstate.CONNECTED
            assert server.guest.log.count("New client connected") == 1
            await vm.stop()
            await asyncio.wait_for(task, 5)
        assert vm.runstate is Runstate.IDLE

    asyncio.run(scenario())


def test_after_the_socket_drops_the_next_connection_is_fresh_and_regrabs(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "agent.sock"
        guest = SimulatedGuest()
        vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], delays=quick)
        async with GuestServer(path, guest) as server:
            task = asyncio.create_task(vm.run())
            await until(lambda: vm.session.clipboard_ready)
            vm.session.grab_clipboard(Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT,))
            vm.flush()
            await until(lambda: guest.selections[Selection.CLIPBOARD].holder.value == "host")
            before = vm.connections
        # The VM's socket goes away (QEMU restarted): the runtime keeps retrying.
        await until(lambda: vm.runstate in (Runstate.WAITING, Runstate.CONNECTING))
        guest2 = SimulatedGuest()
        async with GuestServer(path, guest2):
            await until(lambda: vm.connections > before and vm.session.clipboard_ready)
            # Fresh: announced again, and the host's selection re-grabbed on the new guest.
            await until(lambda: guest2.selections[Selection.CLIPBOARD].holder.value == "host")
            assert vm.session.owner(Selection.CLIPBOARD) is Owner.HOST
            await vm.stop()
            await asyncio.wait_for(task, 5)
        del server

    asyncio.run(scenario())


def test_permission_denied_is_fatal_with_a_readable_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root, file modes do not refuse a connect, so the refusal is simulated at the socket.
    async def refuse(endpoint: Endpoint) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(connection_module, "open_endpoint", refuse)

    async def scenario() -> None:
        vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(tmp_path / "s")))], delays=quick)
        await asyncio.wait_for(vm.run(), 5)
        assert vm.runstate is Runstate.FAILED
        assert vm.failure == f"cannot connect to unix:{tmp_path / 's'}: Permission denied"

    asyncio.run(scenario())


def test_takeover_continues_an_imported_conversation_without_announcing(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "agent.sock"
        guest = SimulatedGuest()
        store = StateStore(tmp_path / "state")
        async with GuestServer(path, guest) as server:
            first = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], store=store,
                              delays=quick)
            task = asyncio.create_task(first.run())
            await until(lambda: first.session.clipboard_ready)
            guest.copy(Selection.CLIPBOARD, {ClipboardType.UTF8_TEXT: b"keep me"})
            server.flush()
            await until(lambda: first.session.owner(Selection.CLIPBOARD) is Owner.GUEST)
            await first.stop()
            await asyncio.wait_for(task, 5)
            loaded = store.load("vm")
            assert loaded is not None

            session = HostSession.restore(loaded.session, 0.0)
            second = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], session=session,
                               takeover=True, delays=quick)
            received: list[Event] = []
            second._on_event = received.append
            task = asyncio.create_task(second.run())
            await until(lambda: second.runstate is Runstate.CONNECTED)
            session.request_clipboard(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, second.now())
            second.flush()
            await until(lambda: any(getattr(e, "data", None) == b"keep me" for e in received))
            assert guest.log.count("New client connected") == 1
            await second.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_the_saved_conversation_is_loaded_at_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "agent.sock"
        store = StateStore(tmp_path / "state")
        saved = HostSession()
        saved.grab_clipboard(Selection.PRIMARY, (ClipboardType.UTF8_TEXT,))
        store.save("vm", saved.snapshot(0.0))
        guest = SimulatedGuest()
        async with GuestServer(path, guest):
            vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], store=store,
                           delays=quick)
            task = asyncio.create_task(vm.run())
            # Fresh connection (the app restarted), and the host's selection is grabbed again.
            await until(lambda: guest.selections[Selection.PRIMARY].holder.value == "host")
            assert guest.log.count("New client connected") == 1
            await vm.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_an_unusable_saved_conversation_is_set_aside(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "agent.sock"
        store = StateStore(tmp_path / "state")
        store.save("vm", {"version": 999})
        async with GuestServer(path):
            vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], store=store,
                           delays=quick)
            task = asyncio.create_task(vm.run())
            await until(lambda: vm.session.clipboard_ready)
            await vm.stop()
            await asyncio.wait_for(task, 5)
        kept = [p.name for p in (tmp_path / "state").iterdir() if ".bad-" in p.name]
        assert len(kept) == 1

    asyncio.run(scenario())


def test_an_unanswered_announce_drops_the_connection_and_waits_before_announcing_again(
    tmp_path: Path,
) -> None:
    """A peer that accepts but never answers (no agent yet, or a guest parser stuck in an old
    message): the runtime drops it after the caps timeout and waits at least RESYNC_DELAY."""
    from vdagent_bridge.runtime.vm import RESYNC_DELAY

    async def scenario() -> None:
        path = tmp_path / "mute.sock"
        accepted: list[float] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(asyncio.get_running_loop().time())
            while await reader.read(65536):
                pass
            writer.close()

        server = await asyncio.start_unix_server(mute, path=str(path))
        session = HostSession(caps_timeout=0.2)
        vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], session=session,
                       delays=quick)
        task = asyncio.create_task(vm.run())
        await until(lambda: len(accepted) >= 2, timeout=10)
        assert accepted[1] - accepted[0] >= 0.2 + RESYNC_DELAY - 0.05
        await vm.stop()
        await asyncio.wait_for(task, 5)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_the_debounced_save_waits_while_a_large_output_is_queued(tmp_path: Path) -> None:
    """Queued output is part of the saved conversation; a whole clipboard on its way to a
    slow guest is not serialised every second: the save waits until the queue is down to
    the high-water mark."""

    async def scenario() -> None:
        store = StateStore(tmp_path / "state")
        vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(tmp_path / "s")))], store=store)
        vm.session.start(vm.now())
        vm.session.send(ClipboardData(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT,
                                      bytes(2 * vm.gate.high)))
        vm._save_later()
        assert store.load("vm") is None and vm._save_handle is not None  # later
        vm.session.consume_output(vm.session.bytes_to_send)  # the guest read it
        vm._save_later()
        assert store.load("vm") is not None

    asyncio.run(scenario())
