"""The asyncio runtime: connections to guest agent ports. No Qt here."""

from __future__ import annotations

from .backoff import backoff
from .connection import AgentConnection, Endpoint, EndpointError
from .vm import Runstate, Site, VmRuntime

__all__ = [
    "AgentConnection",
    "Endpoint",
    "EndpointError",
    "Runstate",
    "Site",
    "VmRuntime",
    "backoff",
]
