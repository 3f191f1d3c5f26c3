"""Save and restore with the bridge running: ``virsh save`` / ``restore`` and ``managedsave``
/ ``start`` (what libvirt-guests does around a host's shutdown), with the real guest agent.

The guest must not notice: its daemon log shows one client for the VM's whole life and never
"lost spice client", the guest's copy from before the save still pastes on the host after the
restore, and a host copy made while the VM was saved reaches the guest once it runs. Across a
restart of the bridge the conversation comes from its state file; when that file is gone, the
restore is a fresh connect and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hosts import LibvirtGuest
from test_libvirt_runtime import CB, PRIMARY, TEXT, TIMEOUT, assert_never_lost, run, sites

from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.runtime import Runstate
from vdagent_bridge.state import StateStore

pytestmark = pytest.mark.libvirt

#: The runtime's delay between two connect attempts here: far longer than the tests, so only
#: the domain's start (which wakes the runtime) brings the connect in time for a restore.
RETRY = 600.0


async def saved(h: RuntimeHarness, save: Callable[[], None]) -> None:
    """Save the VM (virsh, in a thread); return once the runtime keeps the conversation."""
    await asyncio.to_thread(save)
    await h.until(lambda: h.vm.saved_with is not None and h.vm.runstate is Runstate.WAITING)
    assert h.vm.saved_with == h.vm.conversation_id


async def back(h: RuntimeHarness, restore: Callable[[], None], connections: int) -> None:
    """Restore the VM; return once the runtime is connected again."""
    await asyncio.to_thread(restore)
    await h.until(lambda: h.vm.connections == connections
                  and h.vm.runstate is Runstate.CONNECTED)


def test_a_save_and_restore_go_unnoticed_by_the_guest(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    guest = guest_factory("lv-save")
    image = guest.host.dir / "lv-save.img"

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY) as h:
            await h.guest_copies(guest, b"copied in the guest before the save")
            conversation = h.vm.conversation_id
            await saved(h, lambda: guest.save(image))
            h.vm.grab(PRIMARY, (TEXT,))  # a host copy while the VM is saved
            await back(h, lambda: guest.restore(image), connections=2)
            assert h.vm.conversation_id == conversation
            assert await h.host_fetches() == b"copied in the guest before the save"
            assert await h.guest_pastes(guest, PRIMARY, b"copied on the host while saved") \
                == b"copied on the host while saved"
            h.vm.grab(CB, (TEXT,))
            assert await h.guest_pastes(guest, CB, b"after the restore") == b"after the restore"
            assert_never_lost(guest)

    run(scenario)


def test_a_managed_save_and_start_continue_across_a_restart_of_the_bridge(
    guest_factory: Callable[..., LibvirtGuest], tmp_path: Path,
) -> None:
    """The host shuts down: libvirt-guests saves the VM, the session ends (the bridge quits);
    at the next boot the bridge starts, then libvirt-guests restores the VM."""
    guest = guest_factory("lv-managed")
    store = StateStore(tmp_path / "state")

    async def before() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY, store=store) as h:
            await h.guest_copies(guest, b"copied before the host shut down")
            await saved(h, guest.managed_save)
        loaded = store.load("vm")
        assert loaded is not None and loaded.saved_with is not None

    async def after() -> None:
        h = RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY, store=store)
        task = asyncio.create_task(h.vm.run())
        try:
            await h.until(lambda: h.vm.runstate is Runstate.WAITING)
            await back(h, guest.start_saved, connections=1)
            assert await h.host_fetches() == b"copied before the host shut down"
            h.vm.grab(CB, (TEXT,))
            assert await h.guest_pastes(guest, CB, b"after the boot") == b"after the boot"
            assert_never_lost(guest)
        finally:
            await h.vm.stop()
            await asyncio.wait_for(task, TIMEOUT)

    run(before)
    run(after)


def test_a_restore_whose_conversation_is_gone_is_a_fresh_connect_and_says_why(
    guest_factory: Callable[..., LibvirtGuest], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    guest = guest_factory("lv-gone")
    store = StateStore(tmp_path / "state")

    async def before() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY, store=store) as h:
            await saved(h, guest.managed_save)

    async def after() -> None:
        h = RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY, store=store)
        task = asyncio.create_task(h.vm.run())
        try:
            await h.until(lambda: h.vm.runstate is Runstate.WAITING)
            await asyncio.to_thread(guest.start_saved)
            await h.until(lambda: h.vm.session.clipboard_ready)  # a fresh announce answered
            await h.guest_copies(guest, b"copied after a fresh connect")
            assert await h.host_fetches() == b"copied after a fresh connect"
        finally:
            await h.vm.stop()
            await asyncio.wait_for(task, TIMEOUT)

    run(before)
    store.delete("vm")  # the state file is gone
    with caplog.at_level(logging.INFO, logger="vdagent_bridge"):
        run(after)
    assert "a fresh connect: no conversation was kept for it" in caplog.text
