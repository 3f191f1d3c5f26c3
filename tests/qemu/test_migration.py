"""The VM runtime carries the conversation across REAL QEMU live migrations.

A source QEMU runs the guest with the real spice-vdagentd and GTK session agent; the runtime
is connected to it with QMP on both the source and the destination. We migrate, and judge from
the guest's own daemon log that its agent never lost the host (no "lost spice client", a single
"New client connected"), that a guest copy made before the migration is still served after it,
that a host grab after it is accepted (no "grab discard"), and that a host grab made while the
migration runs arrives exactly once (a duplicate would make the daemon log "client grab wins").
Then the VM migrates on to a third QEMU and the same holds. Without QMP the runtime cannot
prepare the switchover: the guest sees the host go, and the reconnect is fresh but works.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from vm import LOST_CLIENT_LINE, Vm, migrate

from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.protocol import ClipboardType, Owner, Selection
from vdagent_bridge.runtime import Endpoint, FileProgress, Runstate, Site

pytestmark = pytest.mark.qemu

TEXT = ClipboardType.UTF8_TEXT
CB = Selection.CLIPBOARD
PRIMARY = Selection.PRIMARY
TIMEOUT = 20.0  # TCG: the first messages after a migration are slow
#: Large enough that the transfer (a few MiB/s through virtio-serial under TCG) spans the
#: migration of a 256 MiB guest over a local socket.
FILE_SIZE = 24 * 1024 * 1024


def site(vm: Vm, *, qmp: bool = True) -> Site:
    return Site(
        Endpoint("unix", path=str(vm.agent_socket)),
        Endpoint("unix", path=str(vm.qmp_socket)) if qmp else None,
    )


class Harness(RuntimeHarness):
    def __init__(self, sites: list[Site]) -> None:
        super().__init__(sites, timeout=TIMEOUT, delay=0.1)

    async def guest_pastes_host_data(self, guest: Vm, selection: Selection, data: bytes) -> None:
        """The host owns ``selection``; a paste in the guest asks us and gets ``data``."""
        assert await self.guest_pastes(guest, selection, data) == data


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 240))


async def migrate_while(h: Harness, src: Vm, dst: Vm,
                        during: Callable[[], None] | None = None) -> None:
    """Migrate ``src`` to ``dst`` (in a thread) and run ``during`` once the runtime has seen
    the migration start; return when the runtime has switched to ``dst``."""
    before = h.vm.migrations
    job = asyncio.create_task(asyncio.to_thread(migrate, src, dst, quit_source=False))
    if during is not None:
        await h.until(lambda: h.vm.runstate is Runstate.MIGRATING or job.done())
        during()
    await job
    await h.until(lambda: h.vm.migrations > before)
    assert h.vm.runstate is Runstate.CONNECTED
    await asyncio.to_thread(src.quit)


def assert_guest_never_lost_the_host(guest: Vm) -> None:
    log = guest.daemon_log()
    assert LOST_CLIENT_LINE not in log
    assert log.count("New client connected") == 1
    assert "grab discard" not in log
    assert "client grab wins" not in log


def test_migration_and_migration_back_keep_the_conversation(
    vm_factory: Callable[..., Vm],
) -> None:
    src = vm_factory("src")
    dst = vm_factory("dst", incoming=True)

    async def scenario() -> None:
        async with Harness([site(src), site(dst)]) as h:
            await h.guest_copies(src, b"copied before the migration")
            serial_before = h.vm.session.serial(CB)

            def host_grab_during() -> None:
                assert h.vm.runstate is Runstate.MIGRATING  # not after the switch
                h.vm.session.grab_clipboard(PRIMARY, (TEXT,))
                h.vm.flush()

            await migrate_while(h, src, dst, host_grab_during)
            assert h.vm.site_index == 1
            assert_guest_never_lost_the_host(dst)

            # The guest's copy from before the migration is still served.
            assert await h.host_fetches() == b"copied before the migration"
            # The grab made during the migration arrived (once: no "client grab wins").
            await h.guest_pastes_host_data(dst, PRIMARY, b"grabbed while migrating")
            # A host grab after the migration continues the serials and is accepted.
            h.vm.session.grab_clipboard(CB, (TEXT,))
            h.vm.flush()
            assert h.vm.session.serial(CB) == serial_before + 1
            await h.guest_pastes_host_data(dst, CB, b"host copy after the migration")
            assert_guest_never_lost_the_host(dst)

            # And on to a third QEMU: the destination becomes the source.
            dst2 = vm_factory("dst2", incoming=True)
            h.vm.add_site(site(dst2))
            await h.guest_copies(dst, b"copied before the second migration")
            await migrate_while(h, dst, dst2)
            assert h.vm.site_index == 2
            assert await h.host_fetches() == b"copied before the second migration"
            h.vm.session.grab_clipboard(CB, (TEXT,))
            h.vm.flush()
            await h.guest_pastes_host_data(dst2, CB, b"host copy after the second migration")
            assert_guest_never_lost_the_host(dst2)
            assert h.vm.session.owner(PRIMARY) is Owner.HOST
            assert h.vm.migrations == 2

    run(scenario)


def test_ten_migrations_back_and_forth_with_copies_both_ways(
    vm_factory: Callable[..., Vm], tmp_path: Path,
) -> None:
    """Two sites (two directories of sockets, as two hosts); the VM migrates from one to the
    other and back, ten times, each time to a new QEMU. Before each migration the guest
    copies (CLIPBOARD); while it migrates the host copies (PRIMARY); after it the guest's copy
    still pastes on the host, the host's copy pastes in the guest exactly once, and the guest
    never saw the host go."""
    homes = [_short_dir("vdsite-a-"), _short_dir("vdsite-b-")]
    current = vm_factory("m0", directory=homes[0])
    sites = [site(current), Site(Endpoint("unix", path=str(homes[1] / "agent.sock")),
                                 Endpoint("unix", path=str(homes[1] / "qmp.sock")))]

    async def scenario() -> None:
        nonlocal current
        async with Harness(sites) as h:
            for n in range(1, 11):
                destination = vm_factory(f"m{n}", incoming=True, directory=homes[n % 2])
                guest_copy = f"guest copy before migration {n}".encode()
                host_copy = f"host copy during migration {n}".encode()
                await h.guest_copies(current, guest_copy)
                await migrate_while(h, current, destination,
                                    lambda: h.vm.grab(PRIMARY, (TEXT,)))
                assert h.vm.site_index == n % 2
                assert await h.host_fetches() == guest_copy
                await h.guest_pastes_host_data(destination, PRIMARY, host_copy)
                assert_guest_never_lost_the_host(destination)
                current = destination
            assert h.vm.migrations == 10

    try:
        run(scenario)
    finally:
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


def _short_dir(prefix: str) -> Path:
    """A directory whose socket paths fit in sockaddr_un."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def test_without_qmp_the_reconnect_after_a_migration_is_fresh_and_works(
    vm_factory: Callable[..., Vm],
) -> None:
    src = vm_factory("src")
    dst = vm_factory("dst", incoming=True)

    async def scenario() -> None:
        async with Harness([site(src, qmp=False), site(dst, qmp=False)]) as h:
            await h.guest_copies(src, b"before")
            first = h.vm.connections
            # The source's connection gets no EOF until the source quits; then the runtime
            # finds the VM at the other site and starts a fresh conversation there.
            await asyncio.to_thread(migrate, src, dst, quit_source=True)
            await h.until(lambda: h.vm.connections > first and h.vm.site_index == 1)
            await h.until(lambda: h.vm.session.clipboard_ready)
            log = dst.daemon_log()
            assert LOST_CLIENT_LINE in log  # the guest saw the host go
            await h.guest_copies(dst, b"after a fresh reconnect")
            assert await h.host_fetches() == b"after a fresh reconnect"
            h.vm.session.grab_clipboard(CB, (TEXT,))
            h.vm.flush()
            await h.guest_pastes_host_data(dst, CB, b"host copy after the reconnect")

    run(scenario)


def test_a_file_sent_while_the_vm_migrates_arrives_whole(
    vm_factory: Callable[..., Vm], tmp_path: Path
) -> None:
    """A file transfer that spans the switchover: the runtime holds its output while the
    source stops, continues it on the destination, and the guest's agent, which never lost
    the host, saves every byte (checked by its sha256 in the guest)."""
    src = vm_factory("src")
    dst = vm_factory("dst", incoming=True)
    data = random.Random(36).randbytes(FILE_SIZE)
    path = tmp_path / "spans-the-migration.bin"
    path.write_bytes(data)

    async def scenario() -> None:
        async with Harness([site(src), site(dst)]) as h:
            reports: list[FileProgress] = []
            send = asyncio.create_task(h.vm.send_files([path], reports.append))
            await h.until(lambda: bool(reports) and reports[-1].sent > 0)
            at_start: list[int] = []

            def note_progress() -> None:
                assert not send.done(), "the file was sent before the migration started"
                at_start.append(reports[-1].sent)

            await migrate_while(h, src, dst, note_progress)
            await asyncio.wait_for(send, 180)
            assert at_start[0] < FILE_SIZE
            assert reports[-1].sent == reports[-1].size == FILE_SIZE
            assert_guest_never_lost_the_host(dst)

    run(scenario)
    out = dst.cmd(f"sha256sum /tmp/xfer/{path.name}; stat -c %s /tmp/xfer/{path.name}",
                  30, check=True).stdout.split()
    assert (out[0].decode(), int(out[2])) == (hashlib.sha256(data).hexdigest(), FILE_SIZE)
