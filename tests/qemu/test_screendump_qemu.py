"""The pointer surface's screen image from a REAL QEMU: ``VmRuntime.screendump`` through the
QMP monitor the runtime's migration follower holds open (a QMP socket serves one client at a
time), and :class:`GuestScreen` loading it as a QImage.

The guest gets a standard VGA card (the fixture's QEMU has none): its text console, where
SeaBIOS wrote, is what QEMU dumps.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio  # noqa: E402
import stat  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from vm import Vm  # noqa: E402

from tests.runtime_harness import RuntimeHarness  # noqa: E402
from vdagent_bridge.bridges import GuestScreen  # noqa: E402
from vdagent_bridge.runtime import Endpoint, Site  # noqa: E402

pytestmark = pytest.mark.qemu


def test_screendump_through_the_runtime_gives_an_image_qimage_loads(
    vm_factory: Callable[..., Vm], tmp_path: Path
) -> None:
    vm = vm_factory(extra_args=["-device", "VGA"])
    site = Site(Endpoint("unix", path=vm.agent_socket), Endpoint("unix", path=vm.qmp_socket))

    async def scenario() -> None:
        async with RuntimeHarness([site], timeout=30.0) as h:
            target = tmp_path / "screen"
            # The follower opens the app's monitor once the agent connection is up.
            await h.until(lambda: bool(h.vm.qmp_open))
            assert await h.vm.screendump(target)
            data = target.read_bytes()
            assert data.startswith(b"\x89PNG\r\n\x1a\n")  # QEMU 7.2 takes format=png
            image = QImage(str(target))
            assert not image.isNull()
            assert 320 <= image.width() <= 2560 and 200 <= image.height() <= 1600
            colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
                       for y in range(0, image.height(), 5)}
            assert len(colours) > 1  # SeaBIOS's text on the console, not an empty frame

            screen = GuestScreen(h.vm)
            shown = await screen()
            assert shown is not None and shown.size() == image.size()
            directory = screen._dir
            assert directory is not None
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            screen.close()
            assert not directory.exists()

    asyncio.run(asyncio.wait_for(scenario(), 120))
