"""What the app says about a VM, in words: its notifications and its status line.

Pure functions of what the runtime reports, so the wording is tested as a table and the
composition root only routes.
"""

from __future__ import annotations

import logging
import os

from ..runtime import Runstate
from ..sites import Site, VmSite, describe
from .model import Level


def runstate_notice(
    state: Runstate,
    previous: Runstate,
    *,
    migrated: bool,
    where: str,
    site: VmSite,
    failure: str | None,
    reconnecting: bool,
    waiting: str | None = None,
) -> tuple[str, Level] | None:
    """The notification for a VM going from ``previous`` to ``state`` (None: none).

    ``migrated``: a migration completed since the VM was last shown connected; ``where`` the
    place it is connected to, in words; ``reconnecting``: the user asked for the reconnect,
    so the disconnect is no news; ``waiting``: why the runtime waits to reconnect.
    """
    if state is Runstate.CONNECTED:
        if previous is Runstate.MIGRATING:
            if migrated:
                return f"migration done: continuing on {describe(site)}", Level.INFO
            return (f"the migration did not complete: staying on {describe(site)}",
                    Level.WARNING)
        return f"connected to {where}", Level.INFO
    if state is Runstate.WAITING and previous in (Runstate.CONNECTED, Runstate.MIGRATING):
        if not reconnecting:
            if waiting:
                return f"disconnected: {waiting}; reconnecting when it is back", Level.WARNING
            return "disconnected; reconnecting when the agent port is back", Level.WARNING
        return None
    if state is Runstate.FAILED:
        return failure or "cannot connect", Level.ERROR
    return None


def vm_detail(state: Runstate, *, site: VmSite, where: str, failure: str | None,
              follows_migrations: bool, waiting: str | None = None) -> str:
    """The second line of a VM's status: where it is, or why it is not there (``waiting``:
    why the runtime waits to connect again)."""
    if state is Runstate.FAILED:
        return failure or ""
    if state is Runstate.MIGRATING:
        return f"from {describe(site)}"
    if state in (Runstate.WAITING, Runstate.CONNECTING):
        if isinstance(site, Site) and site.agent.kind == "unix" \
                and not os.path.exists(site.agent.path):
            return f"no agent socket at {site.agent.path} (is the VM running?)"
        if waiting:
            return f"{waiting}; retrying"
        return f"trying {describe(site)}"
    if state is Runstate.CONNECTED:
        return where + (" (following migrations)" if follows_migrations else "")
    return ""


def level_of(severity: int) -> Level:
    """A :mod:`logging` level as a notification level."""
    if severity >= logging.ERROR:
        return Level.ERROR
    if severity >= logging.WARNING:
        return Level.WARNING
    return Level.INFO
