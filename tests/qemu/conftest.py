"""Fixtures for the tests that run real QEMU guests (real spice-vdagent inside) and migrate them.

Skip/fail policy (tests/external.py): on a developer machine without QEMU
(``qemu-system-x86_64``) these tests are skipped with the install hint.  Everything else is an
error: with QEMU present a missing build tool or a failed guest build fails the tests, and under
CI (env var ``CI`` set) a missing QEMU fails too, never a silent skip.

The guest image is built once per session (cached across sessions, see guest_image.py); each
test gets fresh VMs from :func:`vm_factory`.  Logs of every VM a failed test started (QEMU
output, serial console, guest daemon/agent logs) are printed in the failure report; set
``VDAGENT_VM_KEEP=1`` to keep their temp dirs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

# The helpers sit next to this file; see tests/system/conftest.py for why sys.path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from guest_image import (  # noqa: E402
    HOST_PACKAGES,
    GuestImage,
    ImageBuildError,
    build_guest_image,
    missing_host_programs,
)
from vm import Vm, missing_programs  # noqa: E402

from tests.external import call_failed, require  # noqa: E402

_INSTALL_HINT = f"apt-get install {' '.join(HOST_PACKAGES)}"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here: pyproject.toml belongs to the lead."""
    config.addinivalue_line(
        "markers",
        "qemu: boots real QEMU guests (TCG) with the real spice-vdagent and live-migrates "
        "them; deselect with -m 'not qemu'",
    )


def require_qemu_tools() -> None:
    """Skip only locally without QEMU; with QEMU there, any other missing tool is a failure."""
    require(missing_programs(), "QEMU not installed", _INSTALL_HINT)
    require(missing_host_programs(), "QEMU test tools missing", _INSTALL_HINT, may_skip=False)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The guest kernel + initramfs (built on first use, then from the cache)."""
    require_qemu_tools()
    try:
        image = build_guest_image()
    except ImageBuildError as err:
        pytest.fail(f"cannot build the QEMU test guest: {err}", pytrace=False)
    how = "built" if image.built else "cached"
    sys.stderr.write(
        f"\nguest image {how} in {image.seconds:.1f} s: {image.initrd} "
        f"({image.initrd_size / 1e6:.1f} MB, {image.kernel_package})\n"
    )
    return image


@pytest.fixture
def vm_factory(
    request: pytest.FixtureRequest, guest_image: GuestImage
) -> Generator[Callable[..., Vm], None, None]:
    """``make(name="vm", incoming=False, wait=True, **kwargs) -> Vm``: start a VM (keyword
    args go to :class:`vm.Vm`).  A source VM is returned once its agent is ready; a
    destination (``incoming=True``) at once.  All are closed at teardown."""
    vms: list[Vm] = []

    def make(name: str = "vm", *, wait: bool = True, **kwargs: object) -> Vm:
        vm = Vm(guest_image, name=name, **kwargs)  # type: ignore[arg-type]
        vms.append(vm)
        return vm.start(wait=wait)

    try:
        yield make
    finally:
        if call_failed(request):
            for vm in vms:
                print(vm.describe())  # "Captured stdout teardown" in the report
        for vm in reversed(vms):
            vm.close()


@pytest.fixture(autouse=True)
def _runtime_log(caplog: pytest.LogCaptureFixture) -> None:
    """The runtime's INFO lines (what the switchover decided, and why) in a failure's report."""
    caplog.set_level(logging.INFO, logger="vdagent_bridge")
