"""The display system the app runs on: which clipboard backend, and why (no Qt here).

:mod:`.choice` decides (pure, table-tested), :mod:`.probe` asks the compositor.
"""

from __future__ import annotations

from .choice import Backend, BackendError, Choice, Globals, Override, choose
from .probe import ProbeResult, probe_globals

__all__ = ["Backend", "BackendError", "Choice", "Globals", "Override", "ProbeResult", "choose",
           "probe_globals"]
