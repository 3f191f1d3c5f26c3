"""Qt bridges between the host desktop and the guests' sessions (clipboard, pointer).

Qt lives here and in the UI, never in ``protocol/``, ``runtime/`` or ``state/``. A bridge talks
to a VM through a small structural interface (:class:`ClipboardVm`) that
:class:`~vdagent_bridge.runtime.VmRuntime` satisfies, so it can be tested with a fake.
"""

from __future__ import annotations

from .clipboard import ClipboardBridge, ClipboardVm
from .images import ImageLimits
from .pointer import GuestScreen, PointerBridge, PointerVm, ScreenUnavailable
from .policy import DEFAULT_MAX_BYTES, ClipboardPolicy

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ClipboardBridge",
    "ClipboardPolicy",
    "ClipboardVm",
    "GuestScreen",
    "ImageLimits",
    "PointerBridge",
    "PointerVm",
    "ScreenUnavailable",
]
