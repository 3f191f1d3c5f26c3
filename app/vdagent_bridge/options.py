"""What the desktop app is started with, and how a VM's switches are decided.

:class:`Options` is built by the command line (``cli.py``) from the arguments over the
configuration file; :func:`switches_for` layers a VM's switches: its configured policy, then
what the user last switched in the UI (saved), then the command line (not saved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .display import Choice, Override
from .protocol import HostSession
from .state import AppPaths
from .state.config import Policy, VmConfig


@dataclass(frozen=True, slots=True)
class Overrides:
    """Switches given on the command line: they win over the config and the settings for
    this run (and are not saved)."""

    clipboard: str | None = None
    primary: bool | None = None
    pointer: bool | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """Everything the app is started with; :func:`vdagent_bridge.cli.main` builds it."""

    paths: AppPaths
    #: The VMs to bridge (ignored in demo mode).
    vms: tuple[VmConfig, ...] = ()
    demo: bool = False
    #: The demo VM's policy (the config file's defaults).
    demo_policy: Policy = field(default_factory=Policy)
    #: Use the tray when there is one (``--no-tray`` clears it).
    tray: bool = True
    overrides: Overrides = field(default_factory=Overrides)
    #: Quit after this many seconds (scripts, screenshots); None: run until quit.
    seconds: float | None = None
    #: Open every VM's pointer surface at start (``--pointer-surface``).
    pointer_surface: bool = False
    #: ``--clipboard-backend``.
    clipboard_backend: Override = Override.AUTO
    #: The clipboard backend chosen at start (:func:`vdagent_bridge.startup.choose_backend`);
    #: None where the application was made without one (tests).
    backend: Choice | None = None
    #: The command an autostart entry runs.
    autostart_command: tuple[str, ...] = ("vdagent-bridge",)
    #: Where the autostart entry goes (None: ``$XDG_CONFIG_HOME/autostart``).
    autostart_dir: Path | None = None
    #: A conversation taken over from another instance (``--import-state``): VM name and
    #: session, continued without announcing.
    imported: tuple[str, HostSession] | None = None


def switches_for(policy: Policy, saved: Mapping[str, bool], overrides: Overrides,
                 ) -> dict[str, bool]:
    """A VM's switches: its config policy, then what the user saved, then the command line."""
    switches = {
        "to_guest": policy.to_guest,
        "to_host": policy.to_host,
        "primary": policy.primary,
        "pointer": policy.pointer,
        "paused": False,
    }
    switches.update(saved)
    if overrides.clipboard is not None:
        switches["to_guest"] = overrides.clipboard in ("both", "to-guest")
        switches["to_host"] = overrides.clipboard in ("both", "to-host")
    if overrides.primary is not None:
        switches["primary"] = overrides.primary
    if overrides.pointer is not None:
        switches["pointer"] = overrides.pointer
    return switches
