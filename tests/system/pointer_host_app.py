"""The host side of the pointer test, as its own process: Qt (xcb) + qasync + a VmRuntime,
its PointerBridge and a PointerSurface window, on the test's host Xvfb.

Why a process: see clipboard_host_app.py. Driven by JSON lines:

- argv[1]: ``{"socket": PATH, "size": [W, H], "guest_display": ":N" | null}``; with a guest
  display, the surface shows that display's screen (``import -window root``, standing for
  QMP screendump, which needs a QEMU) through the surface's screendump refresher;
- stdin: ``{"cmd": "state"}``, ``{"cmd": "resize"}`` (resize the guest to the surface),
  ``{"cmd": "transfer", "text": TEXT}`` (the file-transfer status line),
  ``{"cmd": "grab", "path": PNG}`` (a picture of the surface), ``{"cmd": "quit"}``;
- stdout: ``{"ready": true, "window": ID, ...state}`` once the guest has the pointer and the
  window shows, and ``{"reply": CMD, ...}`` for each command.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))
os.environ["QT_API"] = "pyside6"  # the binding qasync uses, whatever the import order

import qasync  # noqa: E402
from host_app_io import commands, emit, quick  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from vdagent_bridge.bridges import PointerBridge  # noqa: E402
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime  # noqa: E402
from vdagent_bridge.ui.pointer_surface import PointerSurface  # noqa: E402


def x_screen(display: str) -> Any:
    """A screendump source reading an X display's root window (PNG through ImageMagick)."""
    program = shutil.which("import") or "import"

    async def dump() -> QImage | None:
        proc = await asyncio.create_subprocess_exec(
            program, "-display", display, "-window", "root", "png:-",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        data, _ = await proc.communicate()
        image = QImage()
        return image if image.loadFromData(data, "PNG") else None

    return dump


async def serve(config: dict[str, Any]) -> None:
    runtime = VmRuntime("guest", [Site(Endpoint("unix", path=config["socket"]))], delays=quick)
    task = asyncio.create_task(runtime.run(), name="runtime")
    bridge = PointerBridge(runtime)
    display = config.get("guest_display")
    surface = PointerSurface(bridge, "guest", screendump=x_screen(display) if display else None,
                             interval=0.2)
    surface.resize(*config["size"])
    surface.show()

    def state() -> dict[str, Any]:
        return {"guest_size": list(bridge.guest_size()), "area": list(surface.guest_area()),
                "device_size": list(surface.device_size()), "sent": bridge.sent,
                "dumps": surface.dumps, "dpr": surface.devicePixelRatioF()}

    queue = commands()
    try:
        while not (runtime.session.mouse_ready and surface.isVisible()
                   and (not display or surface.dumps)):
            await asyncio.sleep(0.01)
        emit(ready=True, window=int(surface.winId()), **state())
        while True:
            command = await queue.get()
            cmd = command["cmd"]
            if cmd == "quit":
                emit(reply="quit")
                return
            if cmd == "state":
                emit(reply="state", **state())
            elif cmd == "resize":
                emit(reply="resize", ok=surface.resize_guest_to_surface(), **state())
            elif cmd == "transfer":
                surface.set_transfer_text(command["text"])
                emit(reply="transfer")
            elif cmd == "grab":
                ok = surface.grab().save(command["path"])
                emit(reply="grab", ok=ok)
    finally:
        surface.close_for_quit()
        bridge.close()
        await runtime.stop()
        await task


def main() -> None:
    config = json.loads(sys.argv[1])
    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    qasync.run(serve(config))
    del app


if __name__ == "__main__":
    main()
