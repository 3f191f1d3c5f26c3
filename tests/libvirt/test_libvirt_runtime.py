"""The VM runtime on a libvirt domain: the conversation through virDomainOpenChannel, and
carried across REAL libvirt live migrations between two hosts (session daemons).

The guest is the real spice-vdagentd and GTK session agent; we judge from its own daemon log
that it never lost the host across the migrations (no "lost spice client", one "New client
connected"), that a guest copy made before a migration is still served after it, that a host
copy made while the VM migrates arrives once, and that a migration cancelled half way
(``virsh domjobabort``) or one that fails (the incoming domain destroyed) leaves the
conversation working on the source.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest
from hosts import LibvirtError, LibvirtGuest, SessionDaemon, virsh
from vm import LOST_CLIENT_LINE

from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.protocol import ClipboardType, Selection
from vdagent_bridge.runtime import Runstate
from vdagent_bridge.sites import LibvirtSite

pytestmark = pytest.mark.libvirt

TEXT = ClipboardType.UTF8_TEXT
CB, PRIMARY = Selection.CLIPBOARD, Selection.PRIMARY
TIMEOUT = 30.0


def sites(guest: LibvirtGuest) -> list[LibvirtSite]:
    return [LibvirtSite(host.uri, guest.name) for host in guest.hosts]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 400))


def assert_never_lost(guest: LibvirtGuest) -> None:
    log = guest.daemon_log()
    assert LOST_CLIENT_LINE not in log
    assert log.count("New client connected") == 1
    assert "grab discard" not in log and "client grab wins" not in log


async def migrate_while(h: RuntimeHarness, guest: LibvirtGuest, to: SessionDaemon,
                        during: Callable[[], None] | None = None, **migrate: object) -> None:
    """Migrate (virsh, in a thread); run ``during`` once the runtime saw it start."""
    before = h.vm.migrations
    job = asyncio.create_task(asyncio.to_thread(guest.migrate, to, **migrate))
    if during is not None:
        await h.until(lambda: h.vm.runstate is Runstate.MIGRATING or job.done())
        during()
    await job
    await h.until(lambda: h.vm.migrations > before and h.vm.runstate is Runstate.CONNECTED)


def test_the_conversation_goes_through_libvirt_both_ways(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    guest = guest_factory("lv-both")

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT) as h:
            await h.guest_copies(guest, b"copied in a libvirt guest")
            assert await h.host_fetches() == b"copied in a libvirt guest"
            h.vm.grab(CB, (TEXT,))
            assert await h.guest_pastes(guest, CB, b"copied on the host") == b"copied on the host"
            assert_never_lost(guest)

    run(scenario)


def test_ten_libvirt_migrations_back_and_forth_with_copies_both_ways(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    guest = guest_factory("lv-ten")
    a, b = guest.hosts

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT) as h:
            for n in range(1, 11):
                to = b if n % 2 else a
                guest_copy = f"guest copy before migration {n}".encode()
                await h.guest_copies(guest, guest_copy)
                await migrate_while(h, guest, to, lambda: h.vm.grab(PRIMARY, (TEXT,)))
                assert h.vm.site_index == n % 2
                assert await h.host_fetches() == guest_copy
                host_copy = f"host copy during migration {n}".encode()
                assert await h.guest_pastes(guest, PRIMARY, host_copy) == host_copy
                assert_never_lost(guest)
            assert h.vm.migrations == 10

    run(scenario)


async def _source_still_works(h: RuntimeHarness, guest: LibvirtGuest, tag: str) -> None:
    await h.until(lambda: h.vm.runstate is Runstate.CONNECTED)
    await h.guest_copies(guest, f"guest copy after the {tag}".encode())
    assert await h.host_fetches() == f"guest copy after the {tag}".encode()
    h.vm.grab(CB, (TEXT,))
    assert await h.guest_pastes(guest, CB, b"host copy after") == b"host copy after"
    assert_never_lost(guest)


def test_a_migration_cancelled_half_way_leaves_the_source_conversation_working(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    guest = guest_factory("lv-abort")
    a, b = guest.hosts

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT) as h:
            await h.guest_copies(guest, b"before the cancelled migration")
            failed: list[BaseException] = []

            def migrate_slowly() -> None:
                try:
                    guest.migrate(b, bandwidth=5)  # ~256 MiB at 5 MiB/s: time to cancel
                except LibvirtError as err:
                    failed.append(err)

            thread = threading.Thread(target=migrate_slowly)
            thread.start()
            await h.until(lambda: h.vm.runstate is Runstate.MIGRATING)
            await asyncio.to_thread(virsh, a.uri, "domjobabort", guest.name)
            await asyncio.to_thread(thread.join, 60)
            assert failed, "the migration was not cancelled"
            guest.host = a  # it stays on the source
            assert h.vm.migrations == 0 and h.vm.site_index == 0
            assert await h.host_fetches() == b"before the cancelled migration"
            await _source_still_works(h, guest, "cancelled migration")

    run(scenario)


def test_a_failed_migration_leaves_the_source_conversation_working(
    guest_factory: Callable[..., LibvirtGuest],
) -> None:
    guest = guest_factory("lv-fail")
    a, b = guest.hosts

    async def scenario() -> None:
        async with RuntimeHarness(sites(guest), timeout=TIMEOUT) as h:
            failed: list[BaseException] = []

            def migrate_slowly() -> None:
                try:
                    guest.migrate(b, bandwidth=5)
                except LibvirtError as err:
                    failed.append(err)

            thread = threading.Thread(target=migrate_slowly)
            thread.start()
            await h.until(lambda: h.vm.runstate is Runstate.MIGRATING)
            await asyncio.sleep(0.5)  # pre-connected to the incoming domain by now
            # The destination's QEMU dies: the migration fails.
            await asyncio.to_thread(virsh, b.uri, "destroy", guest.name)
            await asyncio.to_thread(thread.join, 60)
            assert failed, "the migration did not fail"
            guest.host = a
            assert h.vm.migrations == 0 and h.vm.site_index == 0
            await _source_still_works(h, guest, "failed migration")

    run(scenario)
