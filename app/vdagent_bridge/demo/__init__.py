"""The built-in demo guest: a simulated spice-vdagent for demo mode and fast tests."""

from __future__ import annotations

from .guest import SimulatedGuest
from .server import GuestServer

__all__ = ["GuestServer", "SimulatedGuest"]
