"""A libvirt VM's life around the bridge, and the clipboard both ways after each event:

- forced off, undefined, defined and started again: the runtime says why it waits (in the
  words the tray shows) and reconnects by itself, woken by the guest opening its agent port
  (not by a retry);
- rebooted from inside (the same QEMU): the channel stays open and the new guest daemon's
  caps request is answered;
- its libvirtd restarted under it: the lost connection is noticed at once and the runtime
  reconnects to the new daemon.

A host copy is pasted in the rebooted guest only once its session agent owns the selection
(``wait_agent_owns``): the protocol has no answer to a GRAB, and a freshly booted guest's agent
takes about a second over its first one (GTK sets up its clipboard then; measured 1.1 s under
TCG), so a paste started at once asks the previous owner and never reaches the host."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable

import pytest
from hosts import LibvirtGuest, virsh
from test_libvirt_runtime import CB, TEXT, TIMEOUT, run, sites

from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.protocol import CapabilitiesReceived
from vdagent_bridge.runtime import Runstate

pytestmark = pytest.mark.libvirt

#: The runtime's delay between connect attempts: far longer than the tests, so what brings
#: the connect after a boot is the guest opening its agent port (which wakes the runtime),
#: not a retry that happens to come at a good time.
RETRY = 600.0

#: A VM that boots again takes a while under TCG (its agent must be up before it answers).
BOOT = 90.0


async def waiting_because(h: RuntimeHarness, words: str) -> None:
    await h.until(lambda: h.vm.runstate is Runstate.WAITING
                  and words in (h.vm.waiting_reason or ""), BOOT)


async def back(h: RuntimeHarness, guest: LibvirtGuest) -> None:
    """The VM runs again: the runtime connected by itself, afresh, and the guest's agent
    answered its announce."""
    await asyncio.to_thread(guest.wait_log, "opening vdagent virtio channel", 60)
    await h.until(lambda: h.vm.runstate is Runstate.CONNECTED and h.vm.session.clipboard_ready
                  and h.vm.waiting_reason is None, BOOT)


async def clipboard_both_ways(h: RuntimeHarness, guest: LibvirtGuest, after: str) -> None:
    """The host's copy is offered in the guest (pasted once the guest's agent owns the
    selection), and a guest copy reaches the host."""
    await asyncio.to_thread(guest.wait_agent_owns)
    assert await h.guest_pastes(guest, CB, b"host copy") == b"host copy"
    copy = f"copied after {after}".encode()
    await h.guest_copies(guest, copy)
    assert await h.host_fetches() == copy


def test_a_vm_forced_off_and_undefined_is_waited_for_with_the_cause_and_reconnected(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    guest = guest_factory("lv-life")
    uri = guest.host.uri

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY) as h:
            h.vm.grab(CB, (TEXT,))
            # Forced off and undefined (or renamed: the name is gone either way).
            xml = virsh(uri, "dumpxml", "--inactive", guest.name)
            await asyncio.to_thread(virsh, uri, "destroy", guest.name)
            guest._drop_channel()
            await waiting_because(h, "the VM was forced off")
            await asyncio.to_thread(virsh, uri, "undefine", guest.name)
            # (The next connect attempt would say "no domain lv-life on ..."; the guest
            # opening its agent port after the define and start is what wakes the runtime.)
            with tempfile.NamedTemporaryFile("w", suffix=".xml") as file:
                file.write(xml)
                file.flush()
                await asyncio.to_thread(virsh, uri, "define", file.name)
            await asyncio.to_thread(virsh, uri, "start", guest.name)
            await back(h, guest)
            assert h.vm.runstate is Runstate.CONNECTED and h.vm.failure is None
            await clipboard_both_ways(h, guest, "the boot")  # the copy from before offered again

    run(scenario)


def test_a_restart_of_libvirtd_under_a_running_vm_is_noticed_and_reconnected(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    """``systemctl restart libvirtd`` (a package upgrade) under a running VM: the channel
    went through the old daemon, so the guest saw the host go. The runtime notices the lost
    connection at once, says so, reconnects to the new daemon afresh (the guest wants a new
    announce) and the clipboard works both ways again."""
    guest = guest_factory("lv-daemon")

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=1.0) as h:
            await h.until(lambda: h.vm.runstate is Runstate.CONNECTED
                          and h.vm.session.clipboard_ready)
            h.vm.grab(CB, (TEXT,))
            before = h.vm.conversation_id
            began = time.monotonic()
            restart = asyncio.create_task(asyncio.to_thread(guest.host.restart))
            await h.until(lambda: h.vm.runstate is not Runstate.CONNECTED, BOOT)
            reasons: set[str] = set()

            def connected_again() -> bool:
                reasons.add(h.vm.waiting_reason or "")
                return h.vm.runstate is Runstate.CONNECTED and h.vm.session.clipboard_ready

            down = await restart
            await h.until(connected_again, BOOT)
            print(f"libvirtd down for {down:.1f} s; connected again "
                  f"{time.monotonic() - began:.1f} s after the restart began")
            assert h.vm.conversation_id != before
            assert any("lost the connection to libvirt" in reason for reason in reasons), reasons
            await clipboard_both_ways(h, guest, "the restart")

    run(scenario)


def test_a_reboot_inside_the_guest_is_answered_on_the_same_channel(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    """The guest reboots itself (``on_reboot`` restart: the same QEMU, the channel stays
    open): the host sees no disconnect, only the new guest daemon's caps with request=1. The
    runtime answers them, offers the host's clipboard again, and the clipboard works both ways
    in the rebooted guest."""
    guest = guest_factory("lv-reboot", on_reboot="restart")

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT, delay=RETRY) as h:
            await h.until(lambda: h.vm.runstate is Runstate.CONNECTED
                          and h.vm.session.clipboard_ready)
            h.vm.grab(CB, (TEXT,))
            mark = len(h.events)
            await asyncio.to_thread(guest.cmd, "(sleep 0.5; reboot -f) >/dev/null 2>&1 &")
            await h.until(lambda: any(isinstance(e, CapabilitiesReceived) and e.guest_restarted
                                      for e in h.events[mark:]), BOOT)
            await asyncio.to_thread(guest.wait_log, "opening vdagent virtio channel", 60)
            await h.until(lambda: h.vm.runstate is Runstate.CONNECTED
                          and h.vm.session.clipboard_ready, BOOT)
            await clipboard_both_ways(h, guest, "the reboot")

    run(scenario)
