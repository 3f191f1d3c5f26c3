"""Command line of vdagent-bridge.

This increment ships the protocol engine and a console front end for it: with no endpoint
(or ``--demo``) it starts the built-in demo guest on a private UNIX socket and shows a
conversation with it (both clipboard directions, the pointer, a file); with ``--endpoint`` it
connects to a real guest agent port, performs the caps exchange and prints what the guest does
(its copies, which it fetches as text, and everything else it says). The tray application is
built on the same engine (issue 4).

Errors a user can cause (a bad option, a wrong socket path) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from . import __version__
from .demo import GuestServer
from .protocol import (
    CapabilitiesReceived,
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardRequested,
    ClipboardType,
    Event,
    FileTransferFinished,
    FileTransferReady,
    HostSession,
    MonitorConfig,
    MouseButton,
    Selection,
)
from .runtime import AgentConnection, Endpoint, EndpointError

log = logging.getLogger("vdagent_bridge")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vdagent-bridge",
        description="Host side of the SPICE vdagent protocol (clipboard, pointer, files).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--endpoint",
        metavar="URI",
        help="guest agent port to connect to: unix:PATH or tcp:HOST:PORT "
        "(without it the built-in demo guest is used)",
    )
    parser.add_argument("--demo", action="store_true", help="run against the built-in demo guest")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity (default: info)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        metavar="N",
        help="with --endpoint: stop after N seconds (default: run until interrupted)",
    )
    return parser


def describe(event: Event) -> str:
    """One line for an engine event."""
    if isinstance(event, CapabilitiesReceived):
        return f"guest caps: {', '.join(event.caps.names())}"
    if isinstance(event, ClipboardReceived):
        preview = event.data[:60].decode("utf-8", "replace")
        name = Selection(event.selection).name
        return f"guest {name} data ({len(event.data)} bytes): {preview!r}"
    return repr(event)


async def _demo() -> int:
    """A scripted conversation with the demo guest, printed as it happens."""
    with tempfile.TemporaryDirectory(prefix="vdagent-bridge-demo-") as tmp:
        async with GuestServer(Path(tmp) / "guest.sock") as server:
            guest = server.guest
            session = HostSession()
            events: asyncio.Queue[Event] = asyncio.Queue()
            conn = AgentConnection(session, events.put_nowait)
            await conn.connect(Endpoint("unix", path=str(server.path)))
            reader = asyncio.create_task(conn.run(), name="demo-reader")

            async def wait_for(kind: type) -> Event:
                while True:
                    event = await asyncio.wait_for(events.get(), 5)
                    print("  event:", describe(event))
                    if isinstance(event, kind):
                        return event

            print("connected to the demo guest; caps exchange:")
            await wait_for(CapabilitiesReceived)

            print("guest copies 'Hello from the guest' -> host fetches it:")
            guest.copy(Selection.CLIPBOARD, {ClipboardType.UTF8_TEXT: b"Hello from the guest"})
            server.flush()
            await wait_for(ClipboardGrabbed)
            session.request_clipboard(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, conn.now())
            conn.flush()
            await wait_for(ClipboardReceived)

            print("host copies 'Hello from the host' -> guest pastes it:")
            session.grab_clipboard(Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT,))
            conn.flush()
            await asyncio.sleep(0.05)
            guest.paste(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT)
            server.flush()
            await wait_for(ClipboardRequested)
            session.send_clipboard_data(
                Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, b"Hello from the host"
            )
            conn.flush()
            await asyncio.sleep(0.05)
            print("  guest pasted:", guest.pasted.get(Selection.CLIPBOARD))

            print("host resizes the guest to 800x600 and clicks at (100, 50):")
            session.send_monitors_config((MonitorConfig(800, 600),))
            session.send_mouse(100, 50, MouseButton.LEFT)
            session.send_mouse(100, 50)
            conn.flush()
            await asyncio.sleep(0.05)
            print("  guest input events:", guest.uinput_records())

            print("host sends a file 'notes.txt':")
            tid = session.start_file_transfer("notes.txt", 11)
            conn.flush()
            await wait_for(FileTransferReady)
            session.send_file_data(tid, b"hello world")
            conn.flush()
            await wait_for(FileTransferFinished)
            print("  guest files:", {k: len(v) for k, v in guest.files.items()})

            await conn.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    print("demo done")
    return 0


async def _monitor(endpoint: Endpoint, seconds: float | None) -> int:
    """Connect to a real agent port, announce, and print what the guest does."""
    session = HostSession()

    conn: AgentConnection

    def on_event(event: Event) -> None:
        print(describe(event), flush=True)
        if isinstance(event, ClipboardGrabbed) and ClipboardType.UTF8_TEXT in event.types:
            session.request_clipboard(Selection(event.selection), ClipboardType.UTF8_TEXT,
                                      conn.now())
            conn.flush()

    conn = AgentConnection(session, on_event)
    try:
        await conn.connect(endpoint)
    except OSError as err:
        print(f"vdagent-bridge: cannot connect to {endpoint}: {err.strerror or err}",
              file=sys.stderr)
        return 2
    print(f"connected to {endpoint}", flush=True)
    try:
        await asyncio.wait_for(conn.run(), seconds)
    except asyncio.TimeoutError:
        pass
    except OSError as err:
        print(f"vdagent-bridge: connection to {endpoint} lost: {err}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vdagent-bridge`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    endpoint = None
    if args.endpoint and not args.demo:
        try:
            endpoint = Endpoint.parse(args.endpoint)
        except EndpointError as err:
            print(f"vdagent-bridge: {err}", file=sys.stderr)
            return 2
    try:
        if endpoint is None:
            return asyncio.run(_demo())
        return asyncio.run(_monitor(endpoint, args.seconds))
    except KeyboardInterrupt:
        return 130
