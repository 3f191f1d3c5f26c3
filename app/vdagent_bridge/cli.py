"""Command line of vdagent-bridge.

``vdagent-bridge`` starts the desktop app (:mod:`vdagent_bridge.application`): a tray icon (or
a window where there is no tray) bridging the host clipboard with every VM named on the
command line, or else every VM of the config file, or else the built-in demo guest.

The VMs on the command line, in order: ``--vm NAME`` starts a VM; ``--endpoint URI`` adds a
site (a QEMU that may run it: several are the source and the destinations of a migration);
``--qmp URI`` attaches a QMP monitor to the site before it. An ``--endpoint`` before any
``--vm`` belongs to a VM called ``vm`` (a later first ``--vm`` names it); a ``--vm`` without
``--endpoint`` takes its sites from the config file.

``--console`` keeps the console front end of the engine: with no endpoint (or ``--demo``) a
scripted conversation with the demo guest; with ``--endpoint`` (and ``--qmp``) it keeps one
VM's agent port connected — reconnecting, following live migrations when it has QMP — and
prints what the guest does.

Errors a user can cause (a bad option, a wrong socket path, a bad config file) print one line
and exit non-zero (2), before any window opens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from . import __version__, assets, desktop_files
from .demo import GuestServer
from .display import Override
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
from .runtime import Endpoint, EndpointError, Runstate, Site, VmRuntime
from .sites import LibvirtSite, VmSite
from .state import AppPaths, StateStore, StoreError
from .state.config import DIRECTIONS, Config, ConfigError, VmConfig, load_config

log = logging.getLogger("vdagent_bridge")


@dataclass(slots=True)
class _SiteArg:
    """One site on the command line: ``--endpoint`` (and ``--qmp``), or ``--libvirt``."""

    agent: str | None = None
    qmp: str | None = None
    libvirt: str | None = None


@dataclass(slots=True)
class _Group:
    """One ``--vm`` of the command line and its sites."""

    name: str | None
    sites: list[_SiteArg] = field(default_factory=list)


class _VmAction(argparse.Action):
    """``--vm`` starts a VM, ``--endpoint`` adds a site to it, ``--qmp`` completes the last
    site (order matters)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        groups: list[_Group] = getattr(namespace, "groups", None) or []
        value = str(values)
        if self.dest == "vm":
            if any(group.name == value for group in groups):
                parser.error(f"--vm {value} is given twice")
            if len(groups) == 1 and groups[0].name is None:
                groups[0].name = value  # --endpoint X --vm NAME: NAME is that VM
            else:
                groups.append(_Group(value))
        elif self.dest in ("endpoint", "libvirt"):
            if not groups:
                groups.append(_Group(None))
            site = _SiteArg(agent=value) if self.dest == "endpoint" else _SiteArg(libvirt=value)
            groups[-1].sites.append(site)
        elif not groups or not groups[-1].sites or groups[-1].sites[-1].agent is None:
            parser.error("--qmp must follow the --endpoint of the same QEMU")
        elif groups[-1].sites[-1].qmp is not None:
            parser.error("two --qmp for one --endpoint")
        else:
            groups[-1].sites[-1].qmp = value
        namespace.groups = groups


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
    parser.add_argument("--vm", metavar="NAME", action=_VmAction,
                        help="start a VM (its name, for its settings and saved state; "
                        "default: vm); the --endpoint options after it are its sites, and "
                        "without any it takes its sites from the config file")
    parser.add_argument(
        "--endpoint",
        metavar="URI",
        action=_VmAction,
        help="guest agent port of the current VM: unix:PATH or tcp:HOST:PORT; give it again "
        "for each QEMU that may run the VM (migration destinations)",
    )
    parser.add_argument(
        "--qmp",
        metavar="URI",
        action=_VmAction,
        help="QMP monitor of the QEMU whose --endpoint precedes it, to follow its migrations "
        "(give the VM a -qmp of its own for the bridge)",
    )
    parser.add_argument(
        "--libvirt",
        metavar="URI",
        action=_VmAction,
        help="the current VM is the libvirt domain of its name on this connection "
        "(qemu:///session, qemu:///system, qemu+ssh://host/system); give it again for each "
        "host it may run on (migrations are followed through libvirt's events)",
    )
    parser.add_argument(
        "--list-vms",
        action="store_true",
        help="list the domains of the --libvirt connections (default: qemu:///session, and "
        "qemu:///system where it can be opened), their state and whether they have a usable "
        "agent channel, then exit",
    )
    parser.add_argument("--clipboard", choices=DIRECTIONS, metavar="|".join(DIRECTIONS),
                        help="which way the clipboard crosses, for every VM of this run "
                        "(default: as last switched in the tray, else the config file's)")
    parser.add_argument("--primary", action=argparse.BooleanOptionalAction, default=None,
                        help="bridge the PRIMARY selection too (select to copy, middle-click "
                        "to paste); off unless configured or switched on: privacy")
    parser.add_argument("--pointer", action=argparse.BooleanOptionalAction, default=None,
                        help="send the pointer from the pointer surface to the guest "
                        "(default: on, or as last switched)")
    parser.add_argument("--pointer-surface", action="store_true",
                        help="open each VM's pointer surface at start: a window mapped to the "
                        "guest display (its screen where the VM has QMP); moves, clicks, "
                        "the wheel and dropped files go to the guest")
    parser.add_argument("--clipboard-backend", choices=BACKENDS, default="auto",
                        metavar="|".join(BACKENDS),
                        help="how to reach the host clipboard: auto (default: X11 on an X11 "
                        "session; on Wayland, Qt's Wayland backend with data-control where the "
                        "compositor offers it, else XWayland where that is better), x11 (Qt's "
                        "xcb, XWayland on a Wayland session) or wayland (Qt's Wayland backend)")
    parser.add_argument("--no-tray", dest="tray", action="store_false",
                        help="show a window instead of a tray icon")
    parser.add_argument("--console", action="store_true",
                        help="no GUI: print a demo conversation, or monitor one VM's agent "
                        "port and print what the guest does")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: config.toml in the XDG config dir); "
                        "without --endpoint, --vm NAME takes that VM's sites from it")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where settings and conversation state are kept (default: the "
                        "XDG state dir)")
    parser.add_argument("--export-state", metavar="FILE",
                        help="write the VM's saved conversation to FILE and exit")
    parser.add_argument("--import-state", metavar="FILE",
                        help="take over a conversation exported by another instance: "
                        "continue it on the first endpoint without announcing")
    parser.add_argument("--demo", action="store_true",
                        help="run the built-in demo guest as a VM (the default when no VM is "
                        "configured)")
    desktop = parser.add_mutually_exclusive_group()
    desktop.add_argument("--install-desktop-files", action="store_true",
                         help="add vdagent-bridge to the desktop's applications: write its "
                         ".desktop entry, icons and AppStream metainfo under $XDG_DATA_HOME "
                         "(for a pip or pipx install), then exit")
    desktop.add_argument("--uninstall-desktop-files", action="store_true",
                         help="remove what --install-desktop-files wrote, then exit")
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
        help="quit after N seconds (default: run until quit or interrupted)",
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
    """A scripted conversation with the demo guest through the VM runtime and its commands
    (as the app drives a VM), printed as it happens."""
    with tempfile.TemporaryDirectory(prefix="vdagent-bridge-demo-") as tmp:
        async with GuestServer(Path(tmp) / "guest.sock") as server:
            guest = server.guest
            events: asyncio.Queue[Event] = asyncio.Queue()
            vm = VmRuntime("demo", [Site(Endpoint("unix", path=str(server.path)))],
                           on_event=events.put_nowait)
            task = asyncio.create_task(vm.run(), name="demo-runtime")

            async def wait_for(kind: type) -> Event:
                while True:
                    event = await asyncio.wait_for(events.get(), 5)
                    print("  event:", describe(event))
                    if isinstance(event, kind):
                        return event

            try:
                print("connected to the demo guest; caps exchange:")
                await wait_for(CapabilitiesReceived)

                print("guest copies 'Hello from the guest' -> host fetches it:")
                guest.copy(Selection.CLIPBOARD,
                           {ClipboardType.UTF8_TEXT: b"Hello from the guest"})
                server.flush()
                await wait_for(ClipboardGrabbed)
                vm.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT)
                await wait_for(ClipboardReceived)

                print("host copies 'Hello from the host' -> guest pastes it:")
                vm.grab(Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT,))
                await asyncio.sleep(0.05)
                guest.paste(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT)
                server.flush()
                await wait_for(ClipboardRequested)
                vm.answer(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, b"Hello from the host")
                await asyncio.sleep(0.05)
                print("  guest pasted:", guest.pasted.get(Selection.CLIPBOARD))

                print("host resizes the guest to 800x600 and clicks at (100, 50):")
                vm.send_monitors((MonitorConfig(800, 600),))
                vm.pointer.move(100, 50)
                vm.pointer.set_buttons(MouseButton.LEFT)
                vm.pointer.set_buttons(MouseButton.NONE)
                await asyncio.sleep(0.05)
                print("  guest input events:", guest.uinput_records())

                print("host sends a file 'notes.txt':")
                tid = vm.offer_file("notes.txt", 11)
                await wait_for(FileTransferReady)
                vm.send_file_block(tid, b"hello world")
                await wait_for(FileTransferFinished)
                print("  guest files:", {k: len(v) for k, v in guest.files.items()})
            finally:
                await vm.stop()
                await task
    print("demo done")
    return 0


async def _monitor(
    name: str,
    sites: list[VmSite],
    store: StateStore,
    session: HostSession | None,
    seconds: float | None,
) -> int:
    """Keep the VM connected (reconnects, migrations), print what the guest does."""
    runtime: VmRuntime

    def on_event(event: Event) -> None:
        print(describe(event), flush=True)
        if isinstance(event, ClipboardGrabbed) and ClipboardType.UTF8_TEXT in event.types:
            runtime.request(Selection(event.selection), ClipboardType.UTF8_TEXT)

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


#: ``--clipboard-backend``'s words.
BACKENDS = tuple(override.value for override in Override)


class UsageError(Exception):
    """A mistake on the command line or in what it names; the message is one line."""


def _sites(name: str, args: list[_SiteArg]) -> list[VmSite]:
    """A VM's sites from the command line; raises EndpointError (or a libvirt error) with a
    readable message."""
    sites: list[VmSite] = []
    for arg in args:
        if arg.libvirt is not None:
            sites.append(LibvirtSite.parse(arg.libvirt, name))
        else:
            assert arg.agent is not None
            sites.append(Site(Endpoint.parse(arg.agent),
                              Endpoint.parse(arg.qmp) if arg.qmp else None))
    if len({type(site) for site in sites}) > 1:
        raise UsageError(f"--vm {name}: its sites are --endpoint or --libvirt, not both")
    check_sites(name, sites)
    return sites


def check_sites(name: str, sites: Sequence[VmSite]) -> None:
    """What can be checked before starting: the first agent socket exists; libvirt-python is
    there, every libvirt host answers, and the domain is on one with a usable channel.

    :raises EndpointError, LibvirtError, LibvirtUnavailable: one line each.
    """
    first = sites[0]
    if isinstance(first, Site):
        if first.agent.kind == "unix" and not os.path.exists(first.agent.path):
            raise EndpointError(f"no agent socket at {first.agent.path} (is the VM running?)")
        return
    from .runtime.libvirt import discovery

    discovery.check_sites(name, [site for site in sites if isinstance(site, LibvirtSite)])


def _list_vms(uris: list[str]) -> int:
    """``--list-vms``: one line per domain of each host, then exit (2 if a host given with
    --libvirt cannot be reached)."""
    from .runtime.libvirt import api, discovery

    status = 0
    for uri in uris or list(discovery.DEFAULT_URIS):
        try:
            domains = discovery.list_domains(uri)
        except api.LibvirtError as err:
            if uris or uri == discovery.DEFAULT_URIS[0]:
                print(f"vdagent-bridge: {err.strerror}", file=sys.stderr)
                status = 2 if uris else status
            continue
        for domain in domains:
            print(domain.line())
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vdagent-bridge`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.install_desktop_files or args.uninstall_desktop_files:
        return _desktop_files(install=args.install_desktop_files)
    from .runtime.libvirt.api import LibvirtError, LibvirtUnavailable

    try:
        return _run(args)
    except (UsageError, ConfigError, EndpointError, StoreError, LocalProtocolError,
            LibvirtUnavailable) as err:
        print(f"vdagent-bridge: {err}", file=sys.stderr)
        return 2
    except LibvirtError as err:
        print(f"vdagent-bridge: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _desktop_files(install: bool) -> int:
    """``--install-desktop-files`` / ``--uninstall-desktop-files``: say what was written or
    removed, or what went wrong in one line (status 1)."""
    home = desktop_files.data_home()
    try:
        if install:
            paths = desktop_files.install(home, desktop_files.launcher_command())
        else:
            paths = desktop_files.uninstall(home)
    except desktop_files.DesktopFilesError as err:
        print(f"vdagent-bridge: {err}", file=sys.stderr)
        return 1
    verb = "wrote" if install else "removed"
    for path in paths:
        print(f"{verb} {path}")
    if not paths:
        print(f"no desktop files of vdagent-bridge under {home}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.state_dir is not None and os.path.exists(args.state_dir) \
            and not os.path.isdir(args.state_dir):
        raise UsageError(f"--state-dir {args.state_dir}: not a directory")
    paths = AppPaths.default(state_dir=args.state_dir)
    store = StateStore(paths.vm_state)
    if args.config is not None and not os.path.isfile(args.config):
        raise UsageError(f"--config {args.config}: no such file")
    config = load_config(args.config or paths.config / "config.toml")
    groups: list[_Group] = getattr(args, "groups", None) or []
    if args.list_vms:
        if any(site.agent is not None for group in groups for site in group.sites):
            raise UsageError("--list-vms lists libvirt domains: give it --libvirt URIs only")
        return _list_vms([str(site.libvirt) for group in groups for site in group.sites])
    if args.export_state:
        if len(groups) > 1:
            raise UsageError("--export-state exports one VM: give one --vm")
        name = groups[0].name if groups and groups[0].name else "vm"
        try:
            path = store.export(name, args.export_state)
        except OSError as err:
            raise UsageError(f"{args.export_state}: {err.strerror or err}") from err
        print(f"exported the conversation of {name} to {path}")
        return 0
    if args.console:
        return _console(args, groups, config, store)
    return _gui(args, groups, config, paths, store)


def _import(store: StateStore, source: str, name: str) -> HostSession:
    """The conversation exported by another instance, saved as ``name``'s."""
    try:
        loaded = store.import_(source, name)
    except OSError as err:
        raise UsageError(f"{source}: {err.strerror or err}") from err
    return HostSession.restore(loaded.session, 0.0)


def _console(args: argparse.Namespace, groups: list[_Group], config: Config,
             store: StateStore) -> int:
    """The console front end (``--console``): one VM, or the scripted demo."""
    if len(groups) > 1:
        raise UsageError("--console follows one VM: give one --vm")
    name = groups[0].name if groups and groups[0].name else "vm"
    configured = next((vm for vm in config.vms if vm.name == name), None)
    if args.demo or not (groups and groups[0].sites or configured is not None):
        return asyncio.run(_demo())
    if groups and groups[0].sites:
        sites = _sites(name, groups[0].sites)
    else:
        assert configured is not None
        sites = list(configured.sites)
        check_sites(name, sites)
    session = _import(store, args.import_state, name) if args.import_state else None
    return asyncio.run(_monitor(name, sites, store, session, args.seconds))


def _gui(args: argparse.Namespace, groups: list[_Group], config: Config, paths: AppPaths,
         store: StateStore) -> int:
    """The desktop app: check everything the command line names, then start Qt."""
    if args.demo and groups:
        raise UsageError("--demo runs the demo guest alone: leave out --vm and --endpoint")
    config_name = Path(args.config).name if args.config else "config.toml"
    vms: list[VmConfig] = []
    for group in groups:
        name = group.name or "vm"
        configured = next((vm for vm in config.vms if vm.name == name), None)
        if group.sites:
            policy = configured.policy if configured is not None else config.defaults
            vms.append(VmConfig(name, tuple(_sites(name, group.sites)), policy))
        elif configured is not None:
            vms.append(configured)
        else:
            raise UsageError(f"--vm {name}: no --endpoint for it, and {config_name} has no "
                             f"VM of that name")
    if not groups:
        vms = list(config.vms)
    for vm in vms:  # the command line's were checked as they were read
        if isinstance(vm.sites[0], LibvirtSite) and not any(g.sites for g in groups
                                                          if (g.name or "vm") == vm.name):
            check_sites(vm.name, vm.sites)
    demo = args.demo or not vms
    imported = None
    if args.import_state:
        if demo or len(vms) != 1:
            raise UsageError("--import-state takes over one VM: give one --vm and its "
                             "--endpoint")
        imported = (vms[0].name, _import(store, args.import_state, vms[0].name))

    try:
        assets.resource_dir()  # the icons: without them the app cannot show itself
    except assets.ResourcesNotFound as err:
        print(f"vdagent-bridge: {err}", file=sys.stderr)
        return 1

    # Qt is imported only now: the checks above and --console need no display.
    from .display import BackendError
    from .options import Options, Overrides
    from .startup import display_problem, run_app

    problem = display_problem(os.environ)
    if problem is not None:
        raise UsageError(problem)
    options = Options(
        paths=paths,
        vms=tuple(vms),
        demo=demo,
        demo_policy=config.defaults,
        tray=args.tray,
        overrides=Overrides(args.clipboard, args.primary, args.pointer),
        seconds=args.seconds,
        pointer_surface=args.pointer_surface,
        clipboard_backend=Override(args.clipboard_backend),
        autostart_command=tuple(_autostart_command(args, groups)),
        imported=imported,
    )
    try:
        return run_app(options)
    except BackendError as err:
        raise UsageError(str(err)) from err
    except OSError as err:
        print(f"vdagent-bridge: {err.strerror or err}", file=sys.stderr)
        return 1


def _autostart_command(args: argparse.Namespace, groups: list[_Group]) -> list[str]:
    """The command that starts this same setup at login: the program, then the options
    that choose what it bridges and how (not the one-shot ones)."""
    program = shutil.which("vdagent-bridge")
    command = [program] if program else [sys.executable, "-m", "vdagent_bridge"]
    if args.config:
        command += ["--config", os.path.abspath(args.config)]
    if args.state_dir:
        command += ["--state-dir", os.path.abspath(args.state_dir)]
    for group in groups:
        if group.name is not None:
            command += ["--vm", group.name]
        for site in group.sites:
            if site.libvirt is not None:
                command += ["--libvirt", site.libvirt]
            else:
                command += ["--endpoint", str(site.agent)] + (["--qmp", site.qmp]
                                                              if site.qmp else [])
    if args.demo:
        command.append("--demo")
    if args.clipboard:
        command += ["--clipboard", args.clipboard]
    if args.primary is not None:
        command.append("--primary" if args.primary else "--no-primary")
    if args.pointer is not None:
        command.append("--pointer" if args.pointer else "--no-pointer")
    if args.pointer_surface:
        command.append("--pointer-surface")
    if not args.tray:
        command.append("--no-tray")
    if args.clipboard_backend != "auto":
        command += ["--clipboard-backend", args.clipboard_backend]
    return command
