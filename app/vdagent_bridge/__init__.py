"""vdagent-bridge: the host side of the SPICE vdagent protocol, as a desktop app."""

from __future__ import annotations

__version__ = "0.1.0"
