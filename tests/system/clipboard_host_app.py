"""The host side of the X11 clipboard test, as its own process: Qt (xcb) + qasync + the
clipboard bridge + one VmRuntime per VM.

Why a process: a process has one QApplication, and the unit tests of the same pytest run
have already made theirs (offscreen). This one runs on the test's host Xvfb (``DISPLAY`` and
``QT_QPA_PLATFORM=xcb`` come from the environment) and is driven by JSON lines:

- argv[1]: ``{"vms": [{"name": ..., "socket": ..., "policy": {...}}]}``;
- stdin: ``{"cmd": "policy", "vm": NAME, "changes": {...}}``, ``{"cmd": "status"}``,
  ``{"cmd": "quit"}``;
- stdout: ``{"ready": true}`` once every VM's clipboard is negotiated, ``{"notice": TEXT}``
  for each bridge notice, ``{"event": KIND, "vm": NAME, "selection": N}`` for each clipboard
  event a session reports, ``{"host_changed": SELECTION}`` after the bridge handled a host
  clipboard change, and ``{"reply": CMD, ...}`` for each command.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))
os.environ["QT_API"] = "pyside6"  # the binding qasync uses, whatever the import order

import qasync  # noqa: E402
from host_app_io import commands, emit, quick  # noqa: E402
from PySide6.QtGui import QClipboard, QGuiApplication  # noqa: E402

from vdagent_bridge.bridges import ClipboardBridge, ClipboardPolicy  # noqa: E402
from vdagent_bridge.protocol import (  # noqa: E402
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardRequestFailed,
    Event,
    Selection,
)
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime  # noqa: E402

_REPORTED = (ClipboardGrabbed, ClipboardReceived, ClipboardReleased, ClipboardRequested,
             ClipboardRequestFailed)


def on_event(bridge: ClipboardBridge, name: str, event: Event) -> None:
    bridge.handle_event(name, event)
    if isinstance(event, _REPORTED):
        emit(event=type(event).__name__, vm=name, selection=int(event.selection))


async def serve(config: dict[str, Any]) -> None:
    bridge = ClipboardBridge()
    bridge.notice.connect(lambda text: emit(notice=text))
    clipboard = QGuiApplication.clipboard()

    def host_changed(mode: QClipboard.Mode) -> None:  # connected after the bridge's slot
        if mode == QClipboard.Mode.Clipboard:
            emit(host_changed=int(Selection.CLIPBOARD))
        elif mode == QClipboard.Mode.Selection:
            emit(host_changed=int(Selection.PRIMARY))

    clipboard.changed.connect(host_changed)
    runtimes: list[VmRuntime] = []
    for vm in config["vms"]:
        runtime = VmRuntime(vm["name"], [Site(Endpoint("unix", path=vm["socket"]))],
                            on_event=partial(on_event, bridge, vm["name"]), delays=quick)
        bridge.add_vm(runtime, ClipboardPolicy(**vm.get("policy", {})))
        runtimes.append(runtime)
    tasks = [asyncio.create_task(r.run(), name=f"{r.name}-runtime") for r in runtimes]

    queue = commands()
    try:
        while not all(r.session.clipboard_ready for r in runtimes):
            await asyncio.sleep(0.01)
        emit(ready=True, supports_selection=clipboard.supportsSelection())
        while True:
            command = await queue.get()
            cmd = command["cmd"]
            if cmd == "quit":
                emit(reply="quit")
                return
            if cmd == "policy":
                policy = bridge.update_policy(command["vm"], **command["changes"])
                emit(reply="policy", policy=repr(policy))
            elif cmd == "status":
                emit(reply="status", owners={
                    sel.name: bridge.host_owner(sel) for sel in (Selection.CLIPBOARD,
                                                                 Selection.PRIMARY)
                })
    finally:
        bridge.close()
        for runtime in reversed(runtimes):
            await runtime.stop()
        for task in reversed(tasks):
            await task


def main() -> None:
    config = json.loads(sys.argv[1])
    app = QGuiApplication(sys.argv[:1])
    qasync.run(serve(config))
    del app


if __name__ == "__main__":
    main()
