"""64 MiB clipboard transfers through the app, each measured against a limit taken in the same run.

Prints, for a 64 MiB clipboard in each direction:

1. through the VM runtime (VmRuntime over a UNIX socket, the asyncio connection, the engine)
   against a minimal guest peer in another process, versus a raw UNIX-socket copy of the same
   64 MiB between the same two processes (the limit; target >= 0.5x);
2. through the REAL guest agent (tests/system AgentStack: relay, spice-vdagentd, spice-vdagent,
   Xvfb, xclip), the app versus a minimal standard-library client doing the same exchange
   (caps, then REQUEST and one 64 MiB chunk back / the REQUEST answered in 2048-byte chunks)
   (the limit; target <= 1.1x the client's time). Skipped with --no-agent or without the
   agent's programs;
3. the peak RSS of a process doing one 64 MiB transfer through the runtime, in a fresh
   subprocess per direction: VmHWM after connecting (baseline) and after the transfer
   (target: peak <= baseline + 3x payload).

Each figure is the best of --runs runs (these machines are shared and noisy).

    python benchmarks/transfer.py [--mib 64] [--runs 3] [--no-agent]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "app"), str(ROOT), str(ROOT / "tests" / "system")]

from vdagent_bridge.protocol import (  # noqa: E402
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardRequested,
    ClipboardType,
    Event,
    Selection,
)
from vdagent_bridge.protocol.caps import HOST_CAPS, LINUX_AGENT_CAPS  # noqa: E402
from vdagent_bridge.protocol.codec import FULL, encode  # noqa: E402
from vdagent_bridge.protocol.framer import frame_message  # noqa: E402
from vdagent_bridge.protocol.messages import (  # noqa: E402
    AnnounceCapabilities,
    ClipboardData,
    ClipboardGrab,
    ClipboardRequest,
    Message,
)
from vdagent_bridge.runtime import Endpoint, Site, VmRuntime  # noqa: E402

MIB = 1 << 20
CB = Selection.CLIPBOARD
TEXT = ClipboardType.UTF8_TEXT
READ = MIB


def agent_bytes(msg: Message) -> bytes:
    """One message as the Linux agent sends it: a single chunk of any size."""
    out = bytearray()
    msg_type, payload = encode(msg, FULL)
    frame_message(out, msg_type, payload, max_chunk=1 << 62)
    return bytes(out)


def wire_size(data_size: int) -> int:
    """Bytes on the wire of a host CLIPBOARD answer of ``data_size`` (FULL format, 2048-byte
    chunks): the message is 20 + 8 + data bytes, plus an 8-byte header per chunk."""
    message = 20 + 8 + data_size
    return message + 8 * -(-message // 2048)


def payload_of(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


# ----- the minimal guest peer (another process) ----------------------------------------------


def peer_main(path: str, ctrl: multiprocessing.connection.Connection, size: int) -> None:
    """A guest that sends what it is told and counts what it receives, as cheaply as Python
    can: it is the far end, not what is measured. Commands come on ``ctrl``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    blobs = {
        "caps": agent_bytes(AnnounceCapabilities(True, LINUX_AGENT_CAPS.to_words())),
        "request": agent_bytes(ClipboardRequest(CB, TEXT)),
        "data": agent_bytes(ClipboardData(CB, TEXT, payload_of(size))),
        "raw": payload_of(size),
    }
    ctrl.send("ready")
    conn: socket.socket | None = None
    state = {"count": 0, "target": -1, "generation": 0}
    lock = threading.Condition()

    def reader(sock: socket.socket, generation: int) -> None:
        buf = bytearray(READ)
        while True:
            try:
                n = sock.recv_into(buf)
            except OSError:
                n = 0
            with lock:
                if state["generation"] != generation:
                    return  # an earlier connection's reader: its end is not news
                if not n:
                    state["count"] = -1
                    lock.notify_all()
                    return
                state["count"] += n
                if state["count"] >= state["target"] >= 0:
                    lock.notify_all()

    while True:
        command, arg = ctrl.recv()
        if command == "accept":  # a new host connection; the agent greets with its caps
            if conn is not None:
                conn.close()
            conn, _ = listener.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)
            with lock:
                state["count"], state["target"] = 0, -1
                state["generation"] += 1
                generation = state["generation"]
            threading.Thread(target=reader, args=(conn, generation), daemon=True).start()
            if arg:
                conn.sendall(blobs["caps"])
            ctrl.send("accepted")
        elif command == "send":
            assert conn is not None
            conn.sendall(blobs[arg])
            ctrl.send("sent")
        elif command == "grab":  # the guest copies: GRAB with its serial counter
            assert conn is not None
            conn.sendall(agent_bytes(ClipboardGrab(CB, (TEXT,), arg)))
            ctrl.send("sent")
        elif command == "expect":  # reply with the time the count reaches arg more bytes
            with lock:
                state["target"] = state["count"] + arg
            ctrl.send("armed")
            with lock:
                while 0 <= state["count"] < state["target"]:
                    lock.wait()
            ctrl.send(time.perf_counter())
        elif command == "quit":
            return


class Peer:
    def __init__(self, size: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="vdbench-")
        self.path = os.path.join(self.dir, "agent.sock")
        ctx = multiprocessing.get_context("spawn")
        self.ctrl, child = ctx.Pipe()
        self.proc = ctx.Process(target=peer_main, args=(self.path, child, size), daemon=True)
        self.proc.start()
        assert self.ctrl.recv() == "ready"

    def call(self, command: str, arg: Any = None) -> Any:
        self.ctrl.send((command, arg))
        return self.ctrl.recv()

    def close(self) -> None:
        self.ctrl.send(("quit", None))
        self.proc.join(5)
        if os.path.exists(self.path):
            os.unlink(self.path)
        os.rmdir(self.dir)


async def recv_async(ctrl: multiprocessing.connection.Connection) -> Any:
    """Wait for the peer's next reply without blocking the event loop."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(ctrl.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(ctrl.fileno())
    return ctrl.recv()


# ----- raw socket copies (the limit) ---------------------------------------------------------


def raw_guest_to_host(peer: Peer, size: int) -> float:
    """The peer sends ``size`` bytes; we read them into a new buffer, as the app must."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MIB)
    peer.ctrl.send(("accept", False))
    client.connect(peer.path)
    assert peer.ctrl.recv() == "accepted"
    start = time.perf_counter()
    peer.ctrl.send(("send", "raw"))
    sink = bytearray(size)
    view = memoryview(sink)
    got = 0
    while got < size:
        got += client.recv_into(view[got:], min(READ, size - got))
    elapsed = time.perf_counter() - start
    assert peer.ctrl.recv() == "sent"
    client.close()
    return elapsed


def framed_host_to_guest(peer: Peer, data: bytes) -> float:
    """The least a Python host can do to put ``data`` on the wire as the protocol requires
    (one CLIPBOARD message in chunks of at most 2048 bytes, each behind its 8-byte header):
    plain ``sendmsg`` of the headers and slices of ``data``, 1 MiB per call, on a blocking
    socket; no engine, no event loop. Not a target: it shows what the chunking itself costs
    against the raw copy, and how much of the runtime's time is the runtime's own."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)
    peer.ctrl.send(("accept", False))
    client.connect(peer.path)
    assert peer.ctrl.recv() == "accepted"
    assert peer.call("expect", wire_size(len(data))) == "armed"
    start = time.perf_counter()
    view = memoryview(data)
    message = struct.pack("<IIQI", 1, 4, 0, 8 + len(data)) + struct.pack("<BxxxI", CB, TEXT)
    first = 2048 - len(message)
    client.sendall(struct.pack("<II", 1, 2048) + message + view[:first])
    full = struct.pack("<II", 1, 2048)
    slices = [slice(pos, pos + 2048) for pos in range(0, 512 * 2048, 2048)]
    for window in range(first, len(data), 512 * 2048):
        body = view[window : window + 512 * 2048]
        count = -(-len(body) // 2048)
        parts: list[bytes | memoryview] = [full] * (2 * count)
        parts[1::2] = map(body.__getitem__, slices[:count])  # the slices made in C
        if len(parts[-1]) != 2048:
            parts[-2] = struct.pack("<II", 1, len(parts[-1]))
        sent = client.sendmsg(parts)
        assert sent == sum(len(part) for part in parts)  # a blocking socket takes it all
    end = peer.ctrl.recv()
    client.close()
    return float(end) - start


def raw_host_to_guest(peer: Peer, data: bytes) -> float:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)
    peer.ctrl.send(("accept", False))
    client.connect(peer.path)
    assert peer.ctrl.recv() == "accepted"
    assert peer.call("expect", len(data)) == "armed"
    start = time.perf_counter()
    client.sendall(data)
    end = peer.ctrl.recv()
    client.close()
    return float(end) - start


# ----- through the runtime -------------------------------------------------------------------


class RuntimeClient:
    """A VmRuntime connected to the peer, with its events in a list."""

    def __init__(self, path: str) -> None:
        self.events: list[Event] = []
        self.vm = VmRuntime("bench", [Site(Endpoint("unix", path=path))],
                            on_event=self.events.append)
        self.task: asyncio.Task[None] | None = None

    async def wait(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise TimeoutError(f"benchmark step timed out; events {self.events[-4:]}")
            await asyncio.sleep(0.0005)

    async def event(self, kind: type, mark: int) -> Event:
        await self.wait(lambda: any(isinstance(e, kind) for e in self.events[mark:]))
        return next(e for e in self.events[mark:] if isinstance(e, kind))

    async def start(self, peer: Peer) -> None:
        peer.ctrl.send(("accept", True))
        self.task = asyncio.create_task(self.vm.run())
        assert await recv_async(peer.ctrl) == "accepted"
        await self.wait(lambda: self.vm.session.clipboard_ready)

    async def stop(self) -> None:
        await self.vm.stop()
        assert self.task is not None
        await self.task


async def runtime_host_to_guest(rt: RuntimeClient, peer: Peer, data: bytes) -> float:
    """One 64 MiB answer to a guest request, from the call to the peer's last read."""
    if rt.vm.session.owner(CB).value != "host":
        rt.vm.session.grab_clipboard(CB, (TEXT,))
        rt.vm.flush()
    mark = len(rt.events)
    peer.ctrl.send(("send", "request"))
    assert await recv_async(peer.ctrl) == "sent"
    await rt.event(ClipboardRequested, mark)
    peer.ctrl.send(("expect", wire_size(len(data))))
    assert await recv_async(peer.ctrl) == "armed"
    start = time.perf_counter()
    assert rt.vm.session.send_clipboard_data(CB, TEXT, data)
    rt.vm.flush()
    end = await recv_async(peer.ctrl)
    rt.events.clear()
    return float(end) - start


async def runtime_guest_to_host(rt: RuntimeClient, peer: Peer, size: int, serial: int) -> float:
    """One 64 MiB guest clipboard, from our request to the event that hands it over."""
    mark = len(rt.events)
    peer.ctrl.send(("grab", serial))
    assert await recv_async(peer.ctrl) == "sent"
    await rt.event(ClipboardGrabbed, mark)
    mark = len(rt.events)
    start = time.perf_counter()
    rt.vm.session.request_clipboard(CB, TEXT, rt.vm.now())
    rt.vm.flush()
    peer.ctrl.send(("send", "data"))  # the agent answers the request (one chunk)
    received = await rt.event(ClipboardReceived, mark)
    elapsed = time.perf_counter() - start
    assert isinstance(received, ClipboardReceived) and len(received.data) == size
    del received
    assert await recv_async(peer.ctrl) == "sent"
    rt.events.clear()
    return elapsed


async def interleaved(size: int, data: bytes, runs: int) -> dict[str, list[float]]:
    """Every measurement of part 1, ``runs`` rounds of each in turn: raw copies and the
    framed floor on one peer, the runtime on another that stays connected. Alternating
    spreads the machine's drifts (other tenants, frequency) over all of them alike, where
    measuring one kind after the other would give its drift to whichever ran in it."""
    times: dict[str, list[float]] = {
        "raw_g2h": [], "raw_h2g": [], "framed_h2g": [], "app_h2g": [], "app_g2h": []
    }
    raw_peer, app_peer = Peer(size), Peer(size)
    try:
        rt = RuntimeClient(app_peer.path)
        await rt.start(app_peer)
        for serial in range(runs):
            times["raw_g2h"].append(raw_guest_to_host(raw_peer, size))
            # The guest serial only goes up (a host grab in between raises the expected one).
            times["app_g2h"].append(await runtime_guest_to_host(rt, app_peer, size, 10 * serial))
            times["raw_h2g"].append(raw_host_to_guest(raw_peer, data))
            times["app_h2g"].append(await runtime_host_to_guest(rt, app_peer, data))
            times["framed_h2g"].append(framed_host_to_guest(raw_peer, data))
        await rt.stop()
    finally:
        raw_peer.close()
        app_peer.close()
    return times


# ----- peak RSS (a fresh process per direction) ----------------------------------------------


def status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


async def rss_child(direction: str, size: int) -> dict[str, int]:
    peer = Peer(size)
    try:
        rt = RuntimeClient(peer.path)
        await rt.start(peer)
        if direction == "h2g":
            rt.vm.session.grab_clipboard(CB, (TEXT,))
            rt.vm.flush()
            peer.ctrl.send(("send", "request"))
            assert await recv_async(peer.ctrl) == "sent"
            await rt.event(ClipboardRequested, 0)
            baseline = status("VmHWM")
            data = payload_of(size)  # the host clipboard: part of what the transfer costs
            peer.ctrl.send(("expect", wire_size(size)))
            assert await recv_async(peer.ctrl) == "armed"
            rt.vm.session.send_clipboard_data(CB, TEXT, data)
            rt.vm.flush()
            await recv_async(peer.ctrl)
        else:
            peer.ctrl.send(("grab", 0))
            assert await recv_async(peer.ctrl) == "sent"
            await rt.event(ClipboardGrabbed, 0)
            baseline = status("VmHWM")
            mark = len(rt.events)
            rt.vm.session.request_clipboard(CB, TEXT, rt.vm.now())
            rt.vm.flush()
            peer.ctrl.send(("send", "data"))
            await rt.event(ClipboardReceived, mark)
            assert await recv_async(peer.ctrl) == "sent"
        peak = status("VmHWM")
        await rt.stop()
    finally:
        peer.close()
    return {"baseline": baseline, "peak": peak}


def measure_rss(direction: str, size: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", direction, "--mib", str(size // MIB)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    baseline, peak = (int(v) for v in out.split())
    return {"baseline": baseline, "peak": peak}


# ----- the real agent: the app versus a minimal standard-library client ----------------------


class MinimalClient:
    """What a host needs to exchange a clipboard with the agent, and nothing more: plain
    sockets and struct (no engine code), messages parsed by their headers only."""

    CHUNK = struct.Struct("<II")
    HEADER = struct.Struct("<IIQI")

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MIB)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)
        self.sock.connect(path)
        self.buf = bytearray()

    def send(self, msg_type: int, payload: bytes) -> None:
        """One message; chunks of at most 2048 bytes, the message header in the first."""
        message = memoryview(self.HEADER.pack(1, msg_type, 0, len(payload)) + payload)
        parts = []
        for pos in range(0, len(message), 2048):
            piece = message[pos : pos + 2048]
            parts += [self.CHUNK.pack(1, len(piece)), piece]
        self.sock.sendall(b"".join(parts))

    def _fill(self, count: int) -> None:
        while len(self.buf) < count:
            data = self.sock.recv(max(READ, count - len(self.buf)))
            if not data:
                raise ConnectionError("the agent closed")
            self.buf += data

    def receive(self) -> tuple[int, bytes]:
        """The next message, assuming the agent's one chunk per message."""
        self._fill(8)
        _port, size = self.CHUNK.unpack_from(self.buf)
        self._fill(8 + size)
        _proto, msg_type, _opaque, _size = self.HEADER.unpack_from(self.buf, 8)
        body = bytes(self.buf[28 : 8 + size])
        del self.buf[: 8 + size]
        return msg_type, body

    def receive_type(self, wanted: int) -> bytes:
        while True:
            msg_type, body = self.receive()
            if msg_type == wanted:
                return body

    def hello(self) -> None:
        caps = struct.pack(f"<I{len(HOST_CAPS.words)}I", 1, *HOST_CAPS.words)
        self.send(6, caps)  # ANNOUNCE_CAPABILITIES, request=1
        self.receive_type(6)

    def close(self) -> None:
        self.sock.close()


def client_guest_to_host(stack: Any, data: bytes) -> float:
    client = MinimalClient(stack.socket_path)
    try:
        client.hello()
        stack.guest_copy(data)
        client.receive_type(7)  # CLIPBOARD_GRAB
        start = time.perf_counter()
        client.send(8, struct.pack("<BxxxI", CB, TEXT))  # CLIPBOARD_REQUEST
        body = client.receive_type(4)  # CLIPBOARD: selection, type, data
        elapsed = time.perf_counter() - start
        assert len(body) == 8 + len(data)
        return elapsed
    finally:
        client.close()


def client_host_to_guest(stack: Any, data: bytes) -> float:
    client = MinimalClient(stack.socket_path)
    try:
        client.hello()
        client.send(7, struct.pack("<BxxxII", CB, 0, TEXT))  # GRAB, serial 0 after request=1
        time.sleep(0.1)  # let the session agent take the selection
        paste = stack.guest_paste_async("clipboard", "UTF8_STRING", timeout=120)
        client.receive_type(8)  # CLIPBOARD_REQUEST
        start = time.perf_counter()
        client.send(4, struct.pack("<BxxxI", CB, TEXT) + data)
        pasted = paste.result(120)
        elapsed = time.perf_counter() - start
        assert len(pasted) == len(data)
        return elapsed
    finally:
        client.close()


async def app_guest_to_host(stack: Any, data: bytes) -> float:
    rt = RuntimeClient(stack.socket_path)
    rt.task = asyncio.create_task(rt.vm.run())
    await rt.wait(lambda: rt.vm.session.clipboard_ready)
    mark = len(rt.events)
    await asyncio.to_thread(stack.guest_copy, data)
    await rt.event(ClipboardGrabbed, mark)
    mark = len(rt.events)
    start = time.perf_counter()
    rt.vm.session.request_clipboard(CB, TEXT, rt.vm.now())
    rt.vm.flush()
    received = await rt.event(ClipboardReceived, mark)
    elapsed = time.perf_counter() - start
    assert isinstance(received, ClipboardReceived) and len(received.data) == len(data)
    await rt.stop()
    return elapsed


async def app_host_to_guest(stack: Any, data: bytes) -> float:
    rt = RuntimeClient(stack.socket_path)
    rt.task = asyncio.create_task(rt.vm.run())
    await rt.wait(lambda: rt.vm.session.clipboard_ready)
    rt.vm.session.grab_clipboard(CB, (TEXT,))
    rt.vm.flush()
    await asyncio.sleep(0.1)
    mark = len(rt.events)
    paste = stack.guest_paste_async("clipboard", "UTF8_STRING", timeout=120)
    await rt.event(ClipboardRequested, mark)
    start = time.perf_counter()
    rt.vm.session.send_clipboard_data(CB, TEXT, data)
    rt.vm.flush()
    pasted = await asyncio.wrap_future(paste)
    elapsed = time.perf_counter() - start
    assert len(pasted) == len(data)
    await rt.stop()
    return elapsed


def real_agent(size: int, runs: int) -> dict[str, tuple[float, float]] | str:
    """{direction: (app seconds, client seconds)}, best of ``runs``, alternating."""
    try:
        from agent_stack import AgentStack, missing_binaries
    except ImportError as err:
        return f"cannot import the agent fixture: {err}"
    missing = missing_binaries()
    if missing:
        return f"missing programs: {', '.join(missing)}"
    data = payload_of(size)
    data = data.replace(b"\0", b"\1")  # text: xclip and the session agent keep every byte
    results: dict[str, tuple[float, float]] = {}
    with AgentStack() as stack:
        for name, app, client in (
            ("guest -> host", app_guest_to_host, client_guest_to_host),
            ("host -> guest", app_host_to_guest, client_host_to_guest),
        ):
            app_times, client_times = [], []
            for _ in range(runs):
                app_times.append(asyncio.run(app(stack, data)))
                client_times.append(client(stack, data))
            results[name] = (min(app_times), min(client_times))
    return results


# ----- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-agent", action="store_true", help="skip the real-agent part")
    parser.add_argument("--rss-child", choices=["h2g", "g2h"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.mib * MIB
    if args.rss_child:
        figures = asyncio.run(rss_child(args.rss_child, size))
        print(figures["baseline"], figures["peak"])
        return 0

    def mibs(seconds: float) -> str:
        return f"{size / MIB / seconds:7.0f} MiB/s ({seconds * 1000:7.1f} ms)"

    ok = True
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, payload {args.mib} MiB, "
          f"best of {args.runs}")
    print("\n1. through the runtime (minimal guest peer in another process) vs raw socket copy"
          " (rounds alternate; best, and median in brackets)")
    data = payload_of(size)
    times = asyncio.run(interleaved(size, data, args.runs))
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, raw, app in (("guest -> host", "raw_g2h", "app_g2h"),
                           ("host -> guest", "raw_h2g", "app_h2g")):
        ratio = best[raw] / best[app]
        ok &= ratio >= 0.5
        print(f"  {name}: raw socket {mibs(best[raw])}; runtime {mibs(best[app])}; "
              f"ratio {ratio:4.2f}x of raw [{median[raw] / median[app]:4.2f}x] (target >= 0.5)")
    floor = best["framed_h2g"]
    print(f"  host -> guest floor: 2048-byte chunks by plain sendmsg {mibs(floor)}: "
          f"{best['raw_h2g'] / floor:4.2f}x of raw "
          f"[{median['raw_h2g'] / median['framed_h2g']:4.2f}x]; the runtime is "
          f"{floor / best['app_h2g']:4.2f}x of it "
          f"[{median['framed_h2g'] / median['app_h2g']:4.2f}x] (no target: what chunking costs)")

    print("\n2. through the real agent: the app vs a minimal standard-library client")
    if args.no_agent:
        print("  skipped (--no-agent)")
    else:
        results = real_agent(size, args.runs)
        if isinstance(results, str):
            print(f"  skipped: {results}")
        else:
            for name, (app, client) in results.items():
                ratio = app / client
                ok &= ratio <= 1.1
                print(f"  {name}: client {mibs(client)}; app {mibs(app)}; "
                      f"ratio {ratio:4.2f}x the client's time (target <= 1.1)")

    print("\n3. peak RSS of one transfer through the runtime (fresh process each)")
    for direction, name in (("h2g", "host -> guest"), ("g2h", "guest -> host")):
        rss = measure_rss(direction, size)
        grown = rss["peak"] - rss["baseline"]
        ratio = grown / size
        ok &= ratio <= 3
        print(f"  {name}: baseline {rss['baseline'] / MIB:6.1f} MiB, peak "
              f"{rss['peak'] / MIB:6.1f} MiB: +{grown / MIB:6.1f} MiB = {ratio:4.2f}x payload "
              "(target <= 3)")
    print("\nall targets met" if ok else "\nTARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
