"""Fixtures for the tests against real libvirt (tests/libvirt/hosts.py): two session daemons
as two hosts, a system daemon of the tests' own, and the QEMU tests' guest as a domain on
them.

Skip/fail policy (tests/external.py): without libvirtd, virsh or QEMU these tests skip on a
developer machine and fail under CI; with them present, a failure to start is a failure.
The daemons are shared by the module's tests (a start costs ~1 s); every test gets its own
domain, destroyed and undefined at its end.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for folder in (_HERE, _HERE.parent / "qemu", _HERE.parent / "system"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from guest_image import ImageBuildError, build_guest_image  # noqa: E402
from hosts import (  # noqa: E402
    LIBVIRTD,
    VIRSH,
    Daemon,
    LibvirtGuest,
    SessionDaemon,
    SystemDaemon,
    copy_image,
)

from tests.external import call_failed, require  # noqa: E402

INSTALL = ("apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients "
           "qemu-system-x86")
#: Two hosts' identities (without DMI both would invent one; with the same one libvirt
#: refuses to migrate "to the same host").
HOST_UUIDS = ("6f1e4a52-3c1d-4c8e-9a51-0c2b7d3e1a01", "6f1e4a52-3c1d-4c8e-9a51-0c2b7d3e1a02")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "libvirt: real libvirt daemons, domains and migrations; deselect with "
        "-m 'not libvirt'")


def missing_tools() -> list[str]:
    return [name for name in (LIBVIRTD, VIRSH, "qemu-system-x86_64", "runuser")
            if shutil.which(name) is None and not Path(name).exists()]


@pytest.fixture(scope="session")
def libvirt_base() -> Iterator[Path]:
    """A short directory the daemons' user can traverse (socket paths fit in 108 bytes),
    with the guest image in it."""
    require(missing_tools(), "libvirt not installed", INSTALL)
    try:
        image = build_guest_image()
    except ImageBuildError as err:
        pytest.fail(f"cannot build the test guest: {err}", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="lv", dir="/tmp"))
    base.chmod(0o755)
    copy_image(image.kernel, image.initrd, base / "guest")
    logs = base / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


_modules = itertools.count(1)


@pytest.fixture(scope="module")
def hosts(libvirt_base: Path) -> Iterator[list[SessionDaemon]]:
    """Two session daemons: the hosts a domain may run on and migrate between. (Short
    directory names: the channel sockets libvirt makes below them must fit in 108 bytes.)"""
    n = next(_modules)
    daemons = [SessionDaemon(libvirt_base, f"{n}{name}", uuid)
               for name, uuid in zip("ab", HOST_UUIDS, strict=True)]
    try:
        for daemon in daemons:
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


@pytest.fixture(scope="module")
def system_host(libvirt_base: Path) -> Iterator[SystemDaemon]:
    """A privileged daemon (``qemu:///system``) of the module's own, in its own mount
    namespace (hosts.py: SystemDaemon)."""
    daemon = SystemDaemon(libvirt_base, f"{next(_modules)}s", HOST_UUIDS[0])
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def _guests(request: pytest.FixtureRequest, hosts: list[Daemon],
            libvirt_base: Path) -> Generator[Callable[..., LibvirtGuest], None, None]:
    made: list[LibvirtGuest] = []

    def make(name: str, *, start: bool = True, **xml_options: object) -> LibvirtGuest:
        guest = LibvirtGuest(name, hosts, libvirt_base / "guest", libvirt_base / "logs",
                             **xml_options)
        made.append(guest)
        return guest.start() if start else guest.define()

    try:
        yield make
    finally:
        if call_failed(request):
            for guest in made:
                print(guest.describe())
        for guest in made:
            guest.destroy()


@pytest.fixture
def guest_factory(request: pytest.FixtureRequest, hosts: list[SessionDaemon],
                  libvirt_base: Path) -> Generator[Callable[..., LibvirtGuest], None, None]:
    """``make(name, start=True, **xml_options) -> LibvirtGuest``: a domain on the first host
    (started, its agent up). Destroyed and undefined at teardown; on failure its logs are
    printed."""
    yield from _guests(request, list(hosts), libvirt_base)


@pytest.fixture
def system_guest_factory(request: pytest.FixtureRequest, system_host: SystemDaemon,
                         libvirt_base: Path) -> Generator[Callable[..., LibvirtGuest], None, None]:
    """As :func:`guest_factory`, on the system daemon."""
    yield from _guests(request, [system_host], libvirt_base)


@pytest.fixture(autouse=True)
def _runtime_log(caplog: pytest.LogCaptureFixture) -> None:
    """The runtime's INFO lines (what the switchover decided, and why) in a failure's report."""
    caplog.set_level(logging.INFO, logger="vdagent_bridge")
