"""The libvirt channel stream against the direct UNIX socket of the same session domain.

One libvirt session daemon (tests/libvirt/hosts.py) runs the test guest (the real
spice-vdagentd and session agent under TCG). The VM runtime talks to its agent twice, one
path after the other (a channel serves one client at a time):

- **direct**: the channel's own socket, at the path the live XML names (root may open it);
- **libvirt**: ``virDomainOpenChannel`` on a non-blocking stream over libvirt's connection.

For each path, in the same run: a clipboard of ``--mib`` MiB host → guest (the guest pastes
it, hashed in the guest) and guest → host (the guest copies it, the host fetches it), and
the round trip of a small request (host REQUEST → the guest's answer), median of
``--trips``. Targets: the libvirt path at most 1.2x the direct path's time; the round trip
at most 2 ms more.

    python benchmarks/libvirt_channel.py [--mib 64] [--trips 50]

Needs root, libvirtd, QEMU and the guest image (the test command installs them all).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "app"), str(ROOT), str(ROOT / "tests" / "libvirt"),
                str(ROOT / "tests" / "qemu"), str(ROOT / "tests" / "system")]

from guest_image import build_guest_image  # noqa: E402
from hosts import LibvirtGuest, SessionDaemon, channel_path, copy_image  # noqa: E402
from tests.runtime_harness import RuntimeHarness  # noqa: E402

from vdagent_bridge.protocol import (  # noqa: E402
    ClipboardReceived,
    ClipboardRequested,
    ClipboardType,
    Selection,
)
from vdagent_bridge.runtime import Endpoint, Site  # noqa: E402
from vdagent_bridge.sites import AGENT_CHANNEL, LibvirtSite, VmSite  # noqa: E402

CB = Selection.CLIPBOARD
TEXT = ClipboardType.UTF8_TEXT


def offered(guest: LibvirtGuest, timeout: float = 30.0) -> None:
    """Wait until the guest's X clipboard offers text (the host's grab has arrived)."""
    deadline = time.monotonic() + timeout
    while b"UTF8_STRING" not in guest.cmd("xclip -selection clipboard -t TARGETS -o").stdout:
        if time.monotonic() > deadline:
            raise TimeoutError("the host's grab did not reach the guest's clipboard")
        time.sleep(0.1)


async def measure(site: VmSite, guest: LibvirtGuest, size: int, trips: int) -> dict[str, float]:
    """Seconds host → guest, guest → host, and the median small round trip, through
    ``site``."""
    data = bytes(range(256)) * (size // 256)
    digest = hashlib.sha256(data).hexdigest()
    async with RuntimeHarness([site], timeout=600) as h:
        # host -> guest: the guest pastes (hashed in the guest), the host answers.
        h.vm.grab(CB, (TEXT,))
        await asyncio.to_thread(offered, guest)
        mark = len(h.events)
        paste = asyncio.create_task(asyncio.to_thread(guest.guest_paste_sha256, timeout=600))
        await h.event(ClipboardRequested, mark, timeout=60)
        started = time.monotonic()
        h.vm.answer(CB, TEXT, data)
        got = await paste
        to_guest = time.monotonic() - started
        assert got == (digest, size), got
        # guest -> host: the guest copies (made in the guest), the host fetches.
        await asyncio.to_thread(guest.cmd, f"yes | head -c {size} | "
                                "xclip -selection clipboard -t UTF8_STRING -i", 120)
        await asyncio.sleep(0.5)
        mark = len(h.events)
        started = time.monotonic()
        h.vm.request(CB, TEXT)
        received = await h.event(ClipboardReceived, mark, timeout=600)
        to_host = time.monotonic() - started
        assert isinstance(received, ClipboardReceived) and len(received.data) == size
        # a small round trip, many times
        await asyncio.to_thread(guest.guest_copy, b"small")
        await asyncio.sleep(0.3)
        times = []
        for _ in range(trips):
            mark = len(h.events)
            started = time.monotonic()
            h.vm.request(CB, TEXT)
            await h.event(ClipboardReceived, mark)
            times.append(time.monotonic() - started)
    return {"to_guest": to_guest, "to_host": to_host, "trip": statistics.median(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--trips", type=int, default=50)
    args = parser.parse_args()
    size = args.mib << 20
    image = build_guest_image()
    base = Path(tempfile.mkdtemp(prefix="lvb", dir="/tmp"))
    base.chmod(0o755)
    guest_dir = copy_image(image.kernel, image.initrd, base / "guest")
    logs = base / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    host = SessionDaemon(base, "a", "6f1e4a52-3c1d-4c8e-9a51-0c2b7d3e1a0b").start()
    # xclip, the session agent and the daemon each hold a copy of a large clipboard.
    guest = LibvirtGuest("lvbench", [host], guest_dir, logs, memory_mib=1024)
    try:
        guest.start()
        path = channel_path(host.uri, guest.name, AGENT_CHANNEL)
        assert path is not None
        direct = asyncio.run(measure(Site(Endpoint("unix", path=path)), guest, size,
                                     args.trips))
        through = asyncio.run(measure(LibvirtSite(host.uri, guest.name), guest, size,
                                      args.trips))
    finally:
        guest.destroy()
        host.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"through the real agent in a TCG guest, {args.mib} MiB each way, one session "
          f"daemon, python {sys.version.split()[0]}")
    ok = True
    for key, label in (("to_guest", "host -> guest"), ("to_host", "guest -> host")):
        ratio = through[key] / direct[key]
        ok &= ratio <= 1.2
        print(f"  {label}: direct {direct[key]:7.2f} s ({args.mib / direct[key]:5.1f} MiB/s); "
              f"libvirt {through[key]:7.2f} s ({args.mib / through[key]:5.1f} MiB/s); "
              f"ratio {ratio:.2f}x (target <= 1.2)")
    extra = (through["trip"] - direct["trip"]) * 1000
    ok &= extra <= 2.0
    print(f"  small round trip (median of {args.trips}): direct {direct['trip'] * 1000:.2f} ms; "
          f"libvirt {through['trip'] * 1000:.2f} ms; {extra:+.2f} ms (target <= +2 ms)")
    print("all targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
