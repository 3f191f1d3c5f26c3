"""A host -> guest transfer cut mid-way, against the REAL agent in a REAL QEMU guest.

When the host's socket closes, QEMU closes the guest's port; vdagentd sees it (an EOF, "lost
spice client"), resets its parser and reopens, and the next connection starts clean. But the
guest sees that EOF only once it has read what was already queued for it: if the host
reconnects before (the runtime's first reconnect delay is 0.15-0.25 s; a 1 MiB answer cut
mid-way takes the TCG guest longer to drain), the close and the reopen merge, vdagentd never
resets, the rest of its half-read message is taken from the new connection, and the fresh
caps announce disappears into it: no caps come back, and nothing times out. Proven here with
a 1.5 s reconnect delay, and with a 0.1 s one, where the unanswered announce
(CapabilitiesTimedOut) makes the runtime drop the connection and wait until the guest can see
it go.

The pty relay of tests/system cannot show the guest a disconnect at all, so this direction
is tested here; the guest -> host direction is cut against the relay in
tests/system/test_runtime_real_agent.py, and at exact offsets in tests/unit/test_faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

import pytest
from vm import LOST_CLIENT_LINE, Vm, VmError

from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.protocol import ClipboardRequested, ClipboardType, Selection
from vdagent_bridge.runtime import Endpoint, Site

pytestmark = pytest.mark.qemu

TEXT = ClipboardType.UTF8_TEXT
CB = Selection.CLIPBOARD


async def paste_request(h: RuntimeHarness, guest: Vm, timeout: float = 10) -> object:
    """Grab, and start a guest paste that reaches us as a REQUEST; returns the paste's future.

    The paste starts once the session agent owns the selection (``wait_agent_owns``: a paste
    before that never reaches the host). Right after a fresh announce the agent sometimes does
    not take the selection for the first grab: grab again and retry."""
    for _attempt in range(4):
        h.vm.session.grab_clipboard(CB, (TEXT,))
        h.vm.flush()
        try:
            await asyncio.to_thread(guest.wait_agent_owns, "clipboard", 5.0)
        except VmError:
            continue
        mark = len(h.events)
        paste = guest.guest_paste_async("clipboard", "UTF8_STRING", timeout=timeout)
        await h.until(lambda m=mark, p=paste: p.done()
                      or any(isinstance(e, ClipboardRequested) for e in h.events[m:]))
        if any(isinstance(e, ClipboardRequested) for e in h.events[mark:]):
            return paste
        with contextlib.suppress(Exception):
            paste.result()
    raise AssertionError("the guest never asked for the host's clipboard")


async def cut_rounds(
    guest: Vm, fractions: tuple[float, ...], delay: float, timeout: float = 30
) -> None:
    """For each fraction: the host's 1 MiB answer to a guest paste is cut after that part of
    its bytes; the paste gets nothing; the next connection is fresh and the next paste gets
    the whole data. ``delay``: how long the runtime waits before reconnecting."""
    rng = random.Random(66)
    data = bytes(rng.choice(b"abcdefghij\n") for _ in range(64 * 1024)) * 16  # 1 MiB of text
    site = Site(Endpoint("unix", path=str(guest.agent_socket)))
    async with RuntimeHarness([site], timeout=timeout, delay=delay) as h:
        for round_, where in enumerate(fractions):
            lost = guest.daemon_log().count(LOST_CLIENT_LINE)
            paste = await paste_request(h, guest, timeout=15)
            conn = h.vm.connection
            assert conn is not None
            conn.hold = True  # keep the answer queued: only a prefix is written
            assert h.vm.session.send_clipboard_data(CB, TEXT, data)
            out = h.vm.session.data_to_send()
            conn.write(out[: int(len(out) * where)])
            await h.until(lambda c=conn: c.unread_output() == 0)
            first = h.vm.connections
            await h.vm.reconnect()
            await h.until(lambda f=first: h.vm.connections > f and h.vm.session.clipboard_ready)
            # The paste in flight got nothing (never a prefix), and the guest saw the host
            # go: its parser started over.
            pasted = b""
            with contextlib.suppress(Exception):
                pasted = await asyncio.wrap_future(paste)  # type: ignore[arg-type]
            assert pasted in (b"", data), f"round {round_}: a partial paste"
            await h.until(lambda n=lost: guest.daemon_log().count(LOST_CLIENT_LINE) > n)
            # The next transfer on the fresh connection arrives whole.
            paste = await paste_request(h, guest, timeout=30)
            whole = data + bytes([round_ + 48])
            assert h.vm.session.send_clipboard_data(CB, TEXT, whole)
            h.vm.flush()
            assert await asyncio.wrap_future(paste) == whole  # type: ignore[arg-type]


def test_host_to_guest_transfer_cut_then_the_next_one_succeeds(
    vm_factory: Callable[..., Vm],
) -> None:
    """Cuts early, mid-way and at the end, the runtime reconnecting after 1.5 s: the guest
    has drained what arrived, sees the EOF, resets its parser; the fresh conversation works."""
    guest = vm_factory("vm")
    asyncio.run(asyncio.wait_for(cut_rounds(guest, (0.001, 0.5, 0.999), 1.5), 240))


def test_host_to_guest_transfer_cut_then_a_quick_reconnect_works(
    vm_factory: Callable[..., Vm],
) -> None:
    """Reconnecting after 0.1 s, before the guest drained the cut answer: the guest never sees
    that disconnect and takes our announce as the rest of its message. The announce goes
    unanswered, the runtime drops the connection (CapabilitiesTimedOut) and waits long enough
    for the guest to see it go; then the fresh conversation works."""
    guest = vm_factory("vm")
    asyncio.run(asyncio.wait_for(cut_rounds(guest, (0.5, 0.999), 0.1, timeout=10), 240))
