"""The asyncio runtime: connections to guest agent ports. No Qt here."""

from __future__ import annotations

from .backoff import backoff
from .connection import HIGH_WATER, LOW_WATER, AgentConnection, Endpoint, EndpointError, OutputGate
from .filesend import FileProgress, FileSendError
from .vm import Runstate, Site, VmRuntime

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "AgentConnection",
    "Endpoint",
    "EndpointError",
    "FileProgress",
    "FileSendError",
    "OutputGate",
    "Runstate",
    "Site",
    "VmRuntime",
    "backoff",
]
