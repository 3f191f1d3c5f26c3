"""The asyncio runtime: connections to guest agent ports. No Qt here."""

from __future__ import annotations

from .connection import AgentConnection, Endpoint, EndpointError

__all__ = ["AgentConnection", "Endpoint", "EndpointError"]
