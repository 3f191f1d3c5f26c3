"""Live migration through the app: QEMU's downtime, and how long until the clipboard works.

Boots a real guest (QEMU under TCG, the real spice-vdagentd and GTK session agent: the
tests/qemu fixture), connects the app's VM runtime with QMP to every site, has the guest copy
some text, and migrates the VM from QEMU to QEMU a few times. For each migration it prints:

- the downtime QEMU reports (``query-migrate``), the limit;
- the time from the destination's RESUME event (QEMU's own timestamp) to the first successful
  clipboard round trip through the app: a request made while the migration runs (held by the
  runtime, written to the destination at the switch) answered by the guest's agent;
- the part of it that is ours: RESUME to the runtime's switch;
- a steady-state round trip on the destination afterwards, for reference (under TCG the first
  guest work after a migration is slow while the destination re-translates guest code).

Target (issue 3): the round trip adds at most 50 ms to the downtime. Under TCG the guest itself
needs far longer than that for its first work after resuming, so the script also measures a
minimal standard-library client, pre-connected with its request already waiting in the
destination's socket, and prints the app's share over it.

    python benchmarks/migration.py [--migrations 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "app"), str(ROOT / "tests" / "qemu")]

from guest_image import build_guest_image  # type: ignore[import-not-found]  # noqa: E402
from test_vm_smoke import (  # type: ignore[import-not-found]  # noqa: E402
    CLIPBOARD,
    CLIPBOARD_REQUEST,
    SEL_CLIPBOARD,
    TYPE_UTF8_TEXT,
    RawHost,
    announce,
    copy_in_guest,
    sel,
)
from vm import Vm, migrate  # type: ignore[import-not-found]  # noqa: E402

from vdagent_bridge.protocol import (  # noqa: E402
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardType,
    Event,
    Selection,
)
from vdagent_bridge.runtime import Endpoint, Runstate, Site, VmRuntime  # noqa: E402

TEXT = ClipboardType.UTF8_TEXT
CB = Selection.CLIPBOARD


def site(vm: Vm) -> Site:
    return Site(Endpoint("unix", path=str(vm.agent_socket)),
                Endpoint("unix", path=str(vm.qmp_socket)))


async def until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


async def measure(count: int, image: object) -> list[dict[str, float]]:
    vms: list[Vm] = []
    rows: list[dict[str, float]] = []
    events: list[tuple[float, Event]] = []
    try:
        src = Vm(image, name="bench-0").start()
        vms.append(src)
        runtime = VmRuntime("bench", [site(src)],
                            on_event=lambda e: events.append((time.time(), e)))
        task = asyncio.create_task(runtime.run())
        await until(lambda: runtime.session.clipboard_ready)
        text = b"clipboard content that must survive the migration"
        await asyncio.to_thread(src.guest_copy, text)
        await until(lambda: any(isinstance(e, ClipboardGrabbed) for _, e in events))
        for number in range(1, count + 1):
            dst = Vm(image, name=f"bench-{number}", incoming=True).start()
            vms.append(dst)
            runtime.add_site(site(dst))
            before = runtime.migrations
            job = asyncio.create_task(asyncio.to_thread(migrate, src, dst))
            await until(lambda j=job: runtime.runstate is Runstate.MIGRATING or j.done())
            mark = len(events)
            runtime.session.request_clipboard(CB, TEXT, runtime.now())
            runtime.flush()  # held until the switch
            result = await job
            await until(lambda b=before: runtime.migrations > b)
            switched = time.time()
            await until(lambda m=mark: any(isinstance(e, ClipboardReceived)
                                           for _, e in events[m:]))
            received_at, received = next(
                (t, e) for t, e in events[mark:] if isinstance(e, ClipboardReceived)
            )
            assert isinstance(received, ClipboardReceived) and received.data == text
            resume = next(e for e in dst.qmp.events if e.get("event") == "RESUME")
            resumed_at = resume["timestamp"]["seconds"] + resume["timestamp"]["microseconds"] / 1e6
            # Steady state, for reference.
            mark = len(events)
            start = time.time()
            runtime.session.request_clipboard(CB, TEXT, runtime.now())
            runtime.flush()
            await until(lambda m=mark: any(isinstance(e, ClipboardReceived)
                                           for _, e in events[m:]))
            steady = time.time() - start
            rows.append({
                "downtime_ms": float(result.downtime_ms),
                "total_ms": float(result.total_time_ms),
                "resume_to_roundtrip_ms": (received_at - resumed_at) * 1000,
                "resume_to_switch_ms": (switched - resumed_at) * 1000,
                "steady_roundtrip_ms": steady * 1000,
            })
            await asyncio.to_thread(src.quit)
            src = dst
        await runtime.stop()
        await task
    finally:
        for vm in vms:
            vm.close()
    return rows


def minimal_client(count: int, image: object) -> list[float]:
    """The best any host can do: a standard-library client, pre-connected to the
    destination, whose request waits in the destination's socket before the guest resumes
    there. Returns RESUME → answer, in ms, per migration."""
    times: list[float] = []
    vms: list[Vm] = []
    try:
        src = Vm(image, name="ref-0").start()
        vms.append(src)
        host = RawHost(src.agent_socket)
        announce(host)
        copy_in_guest(src, host, b"reference text")
        for number in range(1, count + 1):
            dst = Vm(image, name=f"ref-{number}", incoming=True).start()
            vms.append(dst)
            nxt = RawHost(dst.agent_socket)
            job = threading.Thread(target=migrate, args=(src, dst))
            job.start()
            # Like the app, write the request while the migration runs (delivered on resume).
            nxt.send(CLIPBOARD_REQUEST, sel(SEL_CLIPBOARD) + struct.pack("<I", TYPE_UTF8_TEXT))
            payload = nxt.expect(CLIPBOARD, timeout=60)
            answered = time.time()
            job.join()
            assert payload[8:] == b"reference text"
            resume = next(e for e in dst.qmp.events if e.get("event") == "RESUME")
            resumed = resume["timestamp"]["seconds"] + resume["timestamp"]["microseconds"] / 1e6
            times.append((answered - resumed) * 1000)
            host.close()
            host = nxt
            src.quit()
            src = dst
        host.close()
    finally:
        for vm in vms:
            vm.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory():
        image = build_guest_image()
        rows = asyncio.run(measure(args.migrations, image))
        reference = minimal_client(args.migrations, image)
    print("migration  downtime  total   RESUME->switch  RESUME->round trip  added  steady")
    for i, row in enumerate(rows, 1):
        added = row["resume_to_roundtrip_ms"]
        print(f"{i:9d}  {row['downtime_ms']:6.0f} ms {row['total_ms']:5.0f} ms"
              f"  {row['resume_to_switch_ms']:10.1f} ms  {row['resume_to_roundtrip_ms']:14.1f} ms"
              f"  {added / 50:4.2f}x  {row['steady_roundtrip_ms']:5.1f} ms")
    median = statistics.median(r["resume_to_roundtrip_ms"] for r in rows)
    ours = statistics.median(r["resume_to_switch_ms"] for r in rows)
    ideal = statistics.median(reference)
    print("minimal client, RESUME->round trip: "
          + ", ".join(f"{t:.1f} ms" for t in reference))
    print(f"median: the round trip through the app adds {median:.1f} ms to the downtime "
          f"(ratio {median / 50:.2f}x of the 50 ms target); a minimal pre-connected client "
          f"needs {ideal:.1f} ms (the guest's own first work after resuming under TCG), so "
          f"the app's share is {median - ideal:.1f} ms; the runtime switched its reading "
          f"{ours:.1f} ms after RESUME (its output had gone to the destination at STOP)")
    print(f"literal target (round trip <= 50 ms after RESUME): "
          f"{'met' if median <= 50 else 'MISSED'}"
          f"{'' if median <= 50 or ideal <= 50 else ' - the minimal client misses it too'}")
    share_ok = median - ideal <= 50
    print(f"the app's share over the minimal client (<= 50 ms): "
          f"{'met' if share_ok else 'MISSED'}")
    return 0 if share_ok else 1


if __name__ == "__main__":
    sys.exit(main())
