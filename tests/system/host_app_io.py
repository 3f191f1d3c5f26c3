"""The JSON-lines side of the host test apps (clipboard_host_app.py, pointer_host_app.py),
which the tests drive through :class:`hostx.ScriptedApp`: lines out on stdout, commands in
from stdin, and the quick reconnect delays they run their VmRuntime with."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any


def emit(**fields: Any) -> None:
    """One JSON line to the test."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def quick() -> Iterator[float]:
    """Reconnect delays for tests: always 50 ms."""
    while True:
        yield 0.05


def commands() -> asyncio.Queue[dict[str, Any]]:
    """The test's commands, one dict per stdin line, read by a thread into a queue of the
    running loop; the end of stdin reads as ``{"cmd": "quit"}``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(queue.put_nowait, {"cmd": "quit"})

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    return queue
