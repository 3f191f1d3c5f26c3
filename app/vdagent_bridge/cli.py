"""Command line of vdagent-bridge.

This increment ships the protocol engine, the runtime and a console front end for them: with
no endpoint (or ``--demo``) it starts the built-in demo guest on a private UNIX socket and
shows a conversation with it (both clipboard directions, the pointer, a file); with
``--endpoint`` (and ``--qmp``) it keeps a real VM's agent port connected — reconnecting, and
following live migrations when it has QMP — and prints what the guest does (its copies, which
it fetches as text, and everything else it says). The tray application is built on the same
engine and runtime (issue 4).

Errors a user can cause (a bad option, a wrong socket path) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
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
    LocalProtocolError,
    MonitorConfig,
    MouseButton,
    Selection,
)
from .runtime import AgentConnection, Endpoint, EndpointError, Runstate, Site, VmRuntime
from .state import AppPaths, StateStore, StoreError
from .state.config import ConfigError, load_config

log = logging.getLogger("vdagent_bridge")


class _SiteAction(argparse.Action):
    """``--endpoint`` starts a site, ``--qmp`` completes the last one (order matters)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sites: list[list[str | None]] = getattr(namespace, "sites", None) or []
        if self.dest == "endpoint":
            sites.append([str(values), None])
        elif not sites:
            parser.error("--qmp must follow the --endpoint of the same QEMU")
        elif sites[-1][1] is not None:
            parser.error("two --qmp for one --endpoint")
        else:
            sites[-1][1] = str(values)
        namespace.sites = sites


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
    parser.add_argument("--vm", default="vm", metavar="NAME",
                        help="name of the VM (for its saved state; default: vm)")
    parser.add_argument(
        "--endpoint",
        metavar="URI",
        action=_SiteAction,
        help="guest agent port to connect to: unix:PATH or tcp:HOST:PORT; give it again for "
        "each QEMU that may run the VM (migration destinations). Without it the built-in "
        "demo guest is used",
    )
    parser.add_argument(
        "--qmp",
        metavar="URI",
        action=_SiteAction,
        help="QMP monitor of the QEMU whose --endpoint precedes it, to follow its migrations "
        "(give the VM a -qmp of its own for the bridge)",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: config.toml in the XDG config dir); "
                        "without --endpoint, --vm NAME takes that VM's sites from it")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where conversation state is kept (default: the XDG state dir)")
    parser.add_argument("--export-state", metavar="FILE",
                        help="write the VM's saved conversation to FILE and exit")
    parser.add_argument("--import-state", metavar="FILE",
                        help="take over a conversation exported by another instance: "
                        "continue it on the first endpoint without announcing")
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


async def _monitor(
    name: str,
    sites: list[Site],
    store: StateStore,
    session: HostSession | None,
    seconds: float | None,
) -> int:
    """Keep the VM connected (reconnects, migrations), print what the guest does."""
    runtime: VmRuntime

    def on_event(event: Event) -> None:
        print(describe(event), flush=True)
        if isinstance(event, ClipboardGrabbed) and ClipboardType.UTF8_TEXT in event.types:
            runtime.session.request_clipboard(
                Selection(event.selection), ClipboardType.UTF8_TEXT, runtime.now()
            )
            runtime.flush()

    def on_runstate(state: Runstate) -> None:
        print(f"{name}: {state.value}", flush=True)

    runtime = VmRuntime(name, sites, session=session, store=store, takeover=session is not None,
                        on_event=on_event, on_runstate=on_runstate)
    task = asyncio.create_task(runtime.run(), name=f"{name}-runtime")
    try:
        await asyncio.wait_for(asyncio.shield(task), seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        await runtime.stop()
        await task
    if runtime.failure is not None:
        print(f"vdagent-bridge: {runtime.failure}", file=sys.stderr)
        return 1
    return 0


def _sites(pairs: list[list[str | None]]) -> list[Site]:
    """The --endpoint/--qmp pairs as sites; raises EndpointError with a readable message."""
    sites = []
    for agent, qmp in pairs:
        assert agent is not None
        sites.append(Site(Endpoint.parse(agent), Endpoint.parse(qmp) if qmp else None))
    first = sites[0].agent
    if first.kind == "unix" and not os.path.exists(first.path):
        raise EndpointError(f"no agent socket at {first.path} (is the VM running?)")
    return sites


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vdagent-bridge`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    paths = AppPaths.default(state_dir=args.state_dir)
    store = StateStore(paths.vm_state)
    try:
        config = load_config(args.config or paths.config / "config.toml")
    except ConfigError as err:
        print(f"vdagent-bridge: {err}", file=sys.stderr)
        return 2
    if args.export_state:
        try:
            path = store.export(args.vm, args.export_state)
        except (StoreError, OSError) as err:
            print(f"vdagent-bridge: {err}", file=sys.stderr)
            return 2
        print(f"exported the conversation of {args.vm} to {path}")
        return 0
    pairs = getattr(args, "sites", None)
    configured = next((vm for vm in config.vms if vm.name == args.vm), None)
    if not pairs and configured is not None and not args.demo:
        pairs = [[str(s.agent), str(s.qmp) if s.qmp else None] for s in configured.sites]
    if not pairs or args.demo:
        try:
            return asyncio.run(_demo())
        except KeyboardInterrupt:
            return 130
    session = None
    try:
        sites = _sites(pairs)
        if args.import_state:
            loaded = store.import_(args.import_state, args.vm)
            session = HostSession.restore(loaded.session, 0.0)
    except (EndpointError, StoreError, LocalProtocolError) as err:
        print(f"vdagent-bridge: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"vdagent-bridge: {args.import_state}: {err.strerror}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_monitor(args.vm, sites, store, session, args.seconds))
    except KeyboardInterrupt:
        return 130
