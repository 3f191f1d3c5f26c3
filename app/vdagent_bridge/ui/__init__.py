"""Widgets: the tray icon, the fallback window, the demo guest's window, their icons.

Qt lives here, in ``bridges/`` and in ``application.py`` only. The widgets see the app
through :class:`~vdagent_bridge.ui.model.Controller`, which the composition root implements.
"""

from __future__ import annotations

from .model import Controller, IconState, Level, Toggle, VmStatus

__all__ = ["Controller", "IconState", "Level", "Toggle", "VmStatus"]
