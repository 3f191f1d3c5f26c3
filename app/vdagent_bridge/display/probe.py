"""Ask the Wayland compositor which globals it offers: a short-lived connection of our own.

Why a connection and not the environment: which clipboard protocols a compositor offers
depends on its version, not on ``XDG_CURRENT_DESKTOP`` (KWin dropped the wlr data-control
protocol in Plasma 6.5; sway gained ext in 1.11). The probe connects with pywayland, binds
nothing, reads the registry's ``global`` events up to a ``wl_display.sync`` and disconnects,
all within ``timeout`` (the display fd is polled: a stalled compositor cannot hang the start).
Its answer goes to :func:`vdagent_bridge.display.choice.choose`.
"""

from __future__ import annotations

import select
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .choice import Globals

if TYPE_CHECKING:
    from pywayland.client.display import Display

#: How long the compositor is given to list its globals (it answers in ~1 ms).
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The globals found, or why there are none (one line)."""

    globals: Globals | None
    problem: str | None = None


def probe_globals(environ: Mapping[str, str], timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """The globals of the compositor ``environ``'s ``WAYLAND_DISPLAY`` names; never raises."""
    name = environ.get("WAYLAND_DISPLAY")
    if not name:
        return ProbeResult(None, "WAYLAND_DISPLAY is unset")
    try:
        from pywayland.client.display import Display
    except ImportError:
        return ProbeResult(None, "pywayland is not installed (pip install pywayland)")
    display = Display(_absolute(name, environ))
    try:
        display.connect()
    except (ValueError, RuntimeError, OSError) as err:
        return ProbeResult(None, f"cannot connect to {name}: {err}")
    try:
        return _collect(display, timeout)
    finally:
        display.disconnect()


def _absolute(name: str, environ: Mapping[str, str]) -> str:
    """libwayland resolves a relative name against *this process's* ``XDG_RUNTIME_DIR``;
    resolve it against ``environ``'s, the one the caller describes."""
    if name.startswith("/") or not environ.get("XDG_RUNTIME_DIR"):
        return name
    return f"{environ['XDG_RUNTIME_DIR'].rstrip('/')}/{name}"


def _collect(display: Display, timeout: float) -> ProbeResult:
    found: dict[str, int] = {}
    done: list[bool] = []
    registry = display.get_registry()
    registry.dispatcher["global"] = (
        lambda _registry, _name, interface, version: found.__setitem__(interface, version))
    callback = display.sync()
    callback.dispatcher["done"] = lambda *_args: done.append(True)
    fd = display.get_fd()
    deadline = time.monotonic() + timeout
    try:
        display.flush()
        while not done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ProbeResult(None, f"the compositor did not answer in {timeout:g} s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                display.read()
                display.dispatch(block=False)
    except RuntimeError as err:  # pywayland's report of a protocol or connection error
        return ProbeResult(None, f"the Wayland connection failed: {err}")
    return ProbeResult(Globals(found))
