"""What an eager guest → host clipboard fetch costs, through the REAL guest agent.

The clipboard bridge (app/vdagent_bridge/bridges/clipboard.py) fetches the guest's data as soon
as the guest grabs, instead of waiting for a host paste. This measures the price of that choice:
for each size, the guest copies text with xclip (the real spice-vdagent on its own Xvfb, behind
the pty relay of tests/system), the host runtime sees the GRAB, requests UTF8_TEXT and waits for
the ``ClipboardReceived`` event. Printed per size: the grab → data time (what a host paste
would wait for with a lazy fetch, and what an eager fetch spends on every guest copy), the
throughput, and the ratio to the 1 KiB round trip (the fixed cost of one request).

    python benchmarks/clipboard_fetch.py [--runs 3] [--sizes 1K,64K,1M,4M,16M,64M]

Needs the Debian packages of tests/run.sh (spice-vdagent, xvfb, xclip, x11-utils, dbus-daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "app"))
sys.path.insert(0, str(_ROOT / "tests" / "system"))

from agent_stack import AgentStack  # noqa: E402

from vdagent_bridge.protocol import (  # noqa: E402
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardType,
    Event,
    Selection,
)
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime  # noqa: E402

_UNITS = {"K": 1024, "M": 1024 * 1024}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    if text[-1] in _UNITS:
        return int(text[:-1]) * _UNITS[text[-1]]
    return int(text)


def human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:g} MiB"
    return f"{size / 1024:g} KiB"


async def measure(stack: AgentStack, sizes: list[int], runs: int) -> list[tuple[int, float]]:
    events: list[Event] = []
    vm = VmRuntime("bench", [Site(Endpoint("unix", path=stack.socket_path))],
                   on_event=events.append)
    task = asyncio.create_task(vm.run(), name="bench-vm")
    loop = asyncio.get_running_loop()

    async def until(kind: type, since: int, timeout: float = 60.0) -> Event:
        end = loop.time() + timeout
        while True:
            for event in events[since:]:
                if isinstance(event, kind):
                    return event
            if loop.time() > end:
                raise TimeoutError(f"no {kind.__name__}; last events {events[-4:]!r}")
            await asyncio.sleep(0.0005)

    try:
        while not vm.session.clipboard_ready:
            await asyncio.sleep(0.01)
        results = []
        for size in sizes:
            best = float("inf")
            for run in range(runs):
                data = bytes([0x41 + run]) * size
                mark = len(events)
                await asyncio.to_thread(stack.guest_copy, data)
                await until(ClipboardGrabbed, mark)
                mark = len(events)
                start = time.perf_counter()
                vm.session.request_clipboard(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT,
                                             vm.now())
                vm.flush()
                received = await until(ClipboardReceived, mark)
                elapsed = time.perf_counter() - start
                assert isinstance(received, ClipboardReceived) and len(received.data) == size
                best = min(best, elapsed)
            results.append((size, best))
        return results
    finally:
        await vm.stop()
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1K,64K,1M,4M,16M,64M")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with AgentStack() as stack:
        results = asyncio.run(measure(stack, sizes, args.runs))
    base = results[0][1]
    print(f"{'size':>10} {'grab → data':>12} {'throughput':>12} {'× 1 KiB trip':>13}")
    for size, seconds in results:
        rate = size / seconds / 1024 / 1024
        print(f"{human(size):>10} {seconds * 1000:>9.1f} ms {rate:>7.1f} MiB/s "
              f"{seconds / base:>12.1f}×")


if __name__ == "__main__":
    main()
