"""Soak: the VM runtime against the simulated guest for a bounded time, reporting RSS.

The guest (the demo's SimulatedGuest behind its UNIX-socket server) runs in a child process;
this process runs one VmRuntime and, until the time is up, loops over:

- a guest copy of random text (1 KiB to 4 MiB) that the host fetches and checks;
- a host copy that the guest pastes and checks;
- pointer traffic (1 000 MOUSE_STATE), counted by the guest;
- every few rounds a reconnect, alternately dropped by the host and by the guest.

It prints the RSS of both processes at the start, every minute and at the end, the counts,
and fails (exit 1) on any mismatch, protocol error, stall, or an RSS growth of more than
``--max-growth`` MiB after the warm-up round.

    python benchmarks/soak.py [--minutes 10] [--max-growth 32]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from vdagent_bridge.demo import GuestServer  # noqa: E402
from vdagent_bridge.protocol import (  # noqa: E402
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardRequested,
    ClipboardType,
    Event,
    Selection,
)
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime  # noqa: E402

MIB = 1 << 20
CB = Selection.CLIPBOARD
TEXT = ClipboardType.UTF8_TEXT


def rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def text(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size).hex().encode()[:size]


# ----- the guest (child process) -------------------------------------------------------------


def guest_main(path: str, ctrl: multiprocessing.connection.Connection) -> None:
    asyncio.run(_guest(path, ctrl))


async def _guest(path: str, ctrl: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    async with GuestServer(path) as server:
        guest = server.guest

        def on_command() -> None:
            command, arg = ctrl.recv()
            reply: Any = None
            if command == "copy":
                guest.copy(CB, {TEXT: text(*arg)})
                server.flush()
            elif command == "paste":
                guest.pasted.pop(CB, None)
                reply = guest.paste(CB, TEXT)
                server.flush()
            elif command == "pasted":
                got = guest.pasted.get(CB)
                reply = None if got is None else hashlib.sha256(got[1]).hexdigest()
            elif command == "holder":
                reply = guest.selections[CB].holder.value
            elif command == "mouse":
                reply = len(guest.mouse)
                guest.mouse.clear()
                guest.input_events.clear()
            elif command == "drop":  # the guest side drops the connection
                if server._writer is not None:
                    server._writer.close()
            elif command == "stats":
                reply = {"rss": rss(), "connections": server.connections,
                         "reopens": guest.port_reopens, "log": len(guest.log)}
                guest.log.clear()
            elif command == "quit":
                done.set_result(None)
            ctrl.send(reply)

        loop.add_reader(ctrl.fileno(), on_command)
        ctrl.send("ready")
        await done
        loop.remove_reader(ctrl.fileno())


# ----- the host (this process) ---------------------------------------------------------------


class Soak:
    def __init__(self, path: str, ctrl: multiprocessing.connection.Connection) -> None:
        self.ctrl = ctrl
        self.events: list[Event] = []
        self.vm = VmRuntime("soak", [Site(Endpoint("unix", path=path))],
                            on_event=self.events.append)
        self.counts = {"guest->host": 0, "host->guest": 0, "mouse": 0, "reconnects": 0,
                       "bytes": 0}

    async def call(self, command: str, arg: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        self.ctrl.send((command, arg))
        loop.add_reader(self.ctrl.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, 30)
        finally:
            loop.remove_reader(self.ctrl.fileno())
        return self.ctrl.recv()

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"stalled: {what}; last events {self.events[-3:]!r:.300}")
            await asyncio.sleep(0.002)

    async def event(self, kind: type, what: str) -> Event:
        mark = len(self.events)
        await self.until(lambda: any(isinstance(e, kind) for e in self.events[mark:]), what)
        return next(e for e in self.events[mark:] if isinstance(e, kind))

    async def guest_to_host(self, seed: int, size: int) -> None:
        mark = len(self.events)
        await self.call("copy", (seed, size))
        await self.until(lambda: any(isinstance(e, ClipboardGrabbed)
                                     for e in self.events[mark:]), "guest grab")
        mark = len(self.events)
        self.vm.session.request_clipboard(CB, TEXT, self.vm.now())
        self.vm.flush()
        await self.until(lambda: any(isinstance(e, ClipboardReceived)
                                     for e in self.events[mark:]), "guest data")
        received = next(e for e in self.events[mark:] if isinstance(e, ClipboardReceived))
        assert received.data == text(seed, size), "guest -> host data differs"
        self.counts["guest->host"] += 1
        self.counts["bytes"] += size

    async def host_to_guest(self, seed: int, size: int) -> None:
        data = text(seed, size)
        self.vm.session.grab_clipboard(CB, (TEXT,))
        self.vm.flush()
        await asyncio.sleep(0.01)
        mark = len(self.events)
        while not await self.call("paste"):  # the grab has not reached the guest yet
            await asyncio.sleep(0.01)
        await self.until(lambda: any(isinstance(e, ClipboardRequested)
                                     for e in self.events[mark:]), "guest request")
        assert self.vm.session.send_clipboard_data(CB, TEXT, data)
        self.vm.flush()
        digest = hashlib.sha256(data).hexdigest()
        end = time.monotonic() + 30
        while (got := await self.call("pasted")) != digest:
            assert got is None and time.monotonic() < end, "host -> guest data differs"
            await asyncio.sleep(0.005)
        self.counts["host->guest"] += 1
        self.counts["bytes"] += size

    async def pointer(self, count: int = 1000) -> None:
        await self.call("mouse")
        for i in range(count):
            self.vm.session.send_mouse(i % 1024, (i * 7) % 768)
            if i % 50 == 49:
                self.vm.flush()
                await asyncio.sleep(0)
        self.vm.flush()
        end = time.monotonic() + 30
        got = 0
        while got < count:
            got += await self.call("mouse")
            assert time.monotonic() < end, f"only {got} of {count} MOUSE_STATE arrived"
            await asyncio.sleep(0.005)
        self.counts["mouse"] += got

    async def reconnect(self, by_guest: bool) -> None:
        before = self.vm.connections
        if by_guest:
            await self.call("drop")
        else:
            await self.vm.reconnect()
        await self.until(lambda: self.vm.connections > before
                         and self.vm.session.clipboard_ready, "reconnect")
        # The fresh connection re-grabs what the host owns; a guest copy racing that grab
        # would lose by the serial rules (the host wins a tie), so wait for it to land.
        end = time.monotonic() + 30
        while await self.call("holder") != "host":
            assert time.monotonic() < end, "the host's re-grab did not reach the guest"
            await asyncio.sleep(0.005)
        self.counts["reconnects"] += 1


async def soak(minutes: float, max_growth: int) -> int:
    tmp = tempfile.mkdtemp(prefix="vdsoak-")
    path = os.path.join(tmp, "guest.sock")
    ctx = multiprocessing.get_context("spawn")
    ctrl, child = ctx.Pipe()
    proc = ctx.Process(target=guest_main, args=(path, child), daemon=True)
    proc.start()
    assert ctrl.recv() == "ready"
    s = Soak(path, ctrl)
    task = asyncio.create_task(s.vm.run())
    rng = random.Random(2026)
    failed = None
    start = time.monotonic()
    end = start + minutes * 60
    rounds = 0
    warm: int | None = None
    print(f"soak: {minutes:g} min against the simulated guest (pid {proc.pid})", flush=True)
    try:
        await s.until(lambda: s.vm.session.clipboard_ready, "first connection")
        stats = await s.call("stats")
        print(f"start: host RSS {rss() / MIB:.1f} MiB, guest RSS {stats['rss'] / MIB:.1f} MiB",
              flush=True)
        next_report = start + 60
        while time.monotonic() < end:
            rounds += 1
            size = rng.choice((1024, 64 * 1024, MIB, 4 * MIB)) + rng.randrange(1024)
            await s.guest_to_host(rng.randrange(1 << 30), size)
            await s.host_to_guest(rng.randrange(1 << 30), size)
            await s.pointer()
            if rounds % 5 == 0:
                await s.reconnect(by_guest=rounds % 10 == 0)
            s.events.clear()
            if rounds == 3:
                warm = rss()
            if time.monotonic() >= next_report:
                next_report += 60
                stats = await s.call("stats")
                print(f"{(time.monotonic() - start) / 60:4.1f} min: {rounds} rounds, host RSS "
                      f"{rss() / MIB:.1f} MiB, guest RSS {stats['rss'] / MIB:.1f} MiB, "
                      f"{s.counts}", flush=True)
    except AssertionError as err:
        failed = str(err)
    finally:
        await s.vm.stop()
        await task
    stats = await s.call("stats")
    await s.call("quit")
    proc.join(5)
    elapsed = time.monotonic() - start
    host_end = rss()
    print(f"end after {elapsed / 60:.1f} min: {rounds} rounds; host RSS {host_end / MIB:.1f} MiB "
          f"(after warm-up {0 if warm is None else warm / MIB:.1f} MiB), guest RSS "
          f"{stats['rss'] / MIB:.1f} MiB")
    print(f"counts: {s.counts}; {s.counts['bytes'] / MIB:.0f} MiB of clipboard moved; "
          f"{s.vm.connections} connections; protocol errors {s.vm.protocol_errors}")
    if failed is None and s.vm.protocol_errors:
        failed = f"{s.vm.protocol_errors} protocol errors"
    if failed is None and warm is not None and host_end - warm > max_growth * MIB:
        failed = f"host RSS grew {(host_end - warm) / MIB:.1f} MiB after the warm-up"
    print(f"FAILED: {failed}" if failed else "soak passed")
    os.rmdir(tmp) if os.path.exists(tmp) and not os.listdir(tmp) else None
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-growth", type=int, default=32, metavar="MIB")
    args = parser.parse_args()
    return asyncio.run(soak(args.minutes, args.max_growth))


if __name__ == "__main__":
    sys.exit(main())
