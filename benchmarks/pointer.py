"""Pointer: MOUSE_STATE rate through the bridge, and Qt pointer event → bytes on the socket.

One process, offscreen Qt on a qasync loop (the app's own loop). A VmRuntime connects to a
UNIX socket this script listens on; the accepted end plays the guest (it announces the Linux
agent's caps) and reads what the host writes, on the same loop. Printed:

- **rate**: MOUSE_STATE messages per second through ``PointerBridge`` and the runtime until
  the far end has read them all: buttons (one message per press or release, never
  coalesced; limit: the same count of 41-byte frames, 8 + 20 + 13 bytes, written raw on the
  runtime's own transport and read the same way) and motion (``min_interval=0``, a move
  every loop turn: at most one message per turn; limit: the loop turns themselves);
- **latency**: from a ``QMouseEvent`` sent to the ``PointerSurface`` (``sendEvent``) to its
  MOUSE_STATE (8 + 20 + 13 bytes) read on the far end: a move (the coalesced path: sent at
  the next loop turn; moves spaced by more than the bridge's ``min_interval``) and a press
  (sent at once); median and p99. The limit: a raw 41-byte write on the same transport to
  the same read.

    QT_QPA_PLATFORM=offscreen python benchmarks/pointer.py [--events 2000] [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["QT_API"] = "pyside6"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from qasync import QEventLoop  # noqa: E402

from vdagent_bridge.bridges import PointerBridge  # noqa: E402
from vdagent_bridge.demo.guest import SimulatedGuest  # noqa: E402
from vdagent_bridge.protocol import MessageType, MouseButton  # noqa: E402
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime  # noqa: E402
from vdagent_bridge.ui.pointer_surface import PointerSurface  # noqa: E402

FRAME = 8 + 20 + 13
_HEADERS = struct.Struct("<II IIQI")


class FarEnd:
    """The guest end of the socket: reads whole MOUSE_STATE frames, on the loop."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    async def frames(self, count: int) -> None:
        """Read exactly ``count`` 41-byte frames (checking the last one's type)."""
        loop = asyncio.get_running_loop()
        need = count * FRAME
        while len(self.buf) < need:
            self.buf += await loop.sock_recv(self.sock, 1 << 20)
        last = bytes(self.buf[need - FRAME:need])
        port, size, _proto, mtype, _opaque, body = _HEADERS.unpack_from(last)
        assert (port, size, mtype, body) == (1, 33, MessageType.MOUSE_STATE, 13), last
        del self.buf[:need]


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def connect(tmp: Path) -> tuple[VmRuntime, FarEnd, asyncio.Task[None]]:
    loop = asyncio.get_running_loop()
    path = tmp / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.setblocking(False)
    runtime = VmRuntime("bench", [Site(Endpoint("unix", path=str(path)))])
    task = asyncio.create_task(runtime.run())
    sock, _ = await loop.sock_accept(server)
    server.close()
    sock.setblocking(False)
    guest = SimulatedGuest()
    guest.open_port()  # the agent's caps, request=1
    await loop.sock_sendall(sock, bytes(guest.data_to_send()))
    while not runtime.session.mouse_ready:
        await asyncio.sleep(0.001)
    far = FarEnd(sock)
    await asyncio.sleep(0.05)
    while True:  # the host's announce and answer: not ours to count
        try:
            sock.recv(1 << 20)
        except BlockingIOError:
            break
    return runtime, far, task


async def timed_rate(far: FarEnd, count: int, send: Callable[[int], None],
                     batch: int = 500) -> float:
    """Messages per second: ``send(i)`` for each, the far end reading as it goes."""
    start = time.perf_counter()
    reader = asyncio.create_task(far.frames(count))
    for i in range(count):
        send(i)
        if i % batch == batch - 1:
            await asyncio.sleep(0)
    await reader
    return count / (time.perf_counter() - start)


async def motion_rate(far: FarEnd, bridge: PointerBridge, seconds: float) -> tuple[float, int]:
    """Moves, one per loop turn, for ``seconds``, the far end reading as it goes:
    (messages per second until read, moves made). A move the bridge had not sent yet when
    the next came was coalesced."""
    loop = asyncio.get_running_loop()
    sent = bridge.sent
    received = 0

    async def read() -> None:
        nonlocal received
        while True:
            received += len(await loop.sock_recv(far.sock, 1 << 20))

    reader = asyncio.create_task(read())
    moves = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        bridge.move(moves % 1000, (moves // 1000) % 700)
        moves += 1
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # the last scheduled send
    while received < (bridge.sent - sent) * FRAME:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    reader.cancel()
    assert received == (bridge.sent - sent) * FRAME
    return (bridge.sent - sent) / elapsed, moves


async def latencies(far: FarEnd, count: int, act: Callable[[int], None],
                    spacing: float) -> list[float]:
    samples = []
    for i in range(count):
        start = time.perf_counter()
        act(i)
        await far.frames(1)
        samples.append(time.perf_counter() - start)
        if spacing:
            await asyncio.sleep(spacing)
    return samples


def mouse_event(kind: QEvent.Type, x: float, y: float, button: Qt.MouseButton) -> QMouseEvent:
    buttons = button if kind == QEvent.Type.MouseButtonPress else Qt.MouseButton.NoButton
    return QMouseEvent(kind, QPointF(x, y), QPointF(x, y), button, buttons,
                       Qt.KeyboardModifier.NoModifier)


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pointer-bench-") as tmp:
        runtime, far, task = await connect(Path(tmp))
        conn = runtime.connection
        assert conn is not None
        raw = runtime.session  # one real frame to write raw
        raw.send_mouse(1, 2)
        frame = raw.data_to_send()
        assert len(frame) == FRAME
        n = args.messages

        raw_rate = await timed_rate(far, n, lambda i: conn.write(frame))
        bridge = PointerBridge(runtime, min_interval=0.0)
        buttons_rate = await timed_rate(
            far, n, lambda i: (bridge.press if i % 2 == 0 else bridge.release)(MouseButton.LEFT)
        )
        move_rate, motion_moves = await motion_rate(far, bridge, args.seconds)
        bridge.close()

        bridge = PointerBridge(runtime)
        surface = PointerSurface(bridge, "bench")
        surface.resize(1024, 768)
        surface.show()
        send = QApplication.sendEvent
        spacing = bridge.min_interval + 0.0005
        events = args.events

        def move(i: int) -> None:
            send(surface, mouse_event(QEvent.Type.MouseMove, 10 + i % 2, 10,
                                      Qt.MouseButton.NoButton))

        def click(i: int) -> None:
            kind = QEvent.Type.MouseButtonPress if i % 2 == 0 else QEvent.Type.MouseButtonRelease
            send(surface, mouse_event(kind, 11, 10, Qt.MouseButton.LeftButton))

        def raw_write(i: int) -> None:
            conn.write(frame)

        limit = await latencies(far, events, raw_write, spacing)
        moves = await latencies(far, events, move, spacing)
        clicks = await latencies(far, events, click, spacing)
        surface.close_for_quit()
        bridge.close()
        await runtime.stop()
        await task
        far.sock.close()

    print(f"pointer benchmark: {n} messages for the rates, {events} events for the latencies")
    print(f"  raw 41-byte writes (limit)        {raw_rate / 1000:8.1f} k msg/s")
    print(f"  buttons via PointerBridge         {buttons_rate / 1000:8.1f} k msg/s"
          f"   {buttons_rate / raw_rate:.2f}x limit")
    turns = motion_moves / args.seconds
    print(f"  qasync loop turns (motion limit)  {turns / 1000:8.1f} k/s")
    print(f"  motion, one move per loop turn    {move_rate / 1000:8.1f} k msg/s"
          f"   {move_rate / turns:.2f}x loop turns")
    lmed, lp99 = quantiles(limit)
    print(f"  latency, raw write → read (limit) median {lmed * 1e6:7.1f} µs  "
          f"p99 {lp99 * 1e6:7.1f} µs")
    for label, samples in (("Qt move  → read", moves), ("Qt press → read", clicks)):
        med, p99 = quantiles(samples)
        print(f"  latency, {label:22s} median {med * 1e6:7.1f} µs  p99 {p99 * 1e6:7.1f} µs"
              f"   {med / lmed:.1f}x / {p99 / lp99:.1f}x limit")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0, help="of motion")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    loop = QEventLoop(app)
    try:
        loop.run_until_complete(bench(args))
    finally:
        loop.close()
        del loop  # while the QApplication lives (qasync's close touches it again)
    return 0


if __name__ == "__main__":
    sys.exit(main())
