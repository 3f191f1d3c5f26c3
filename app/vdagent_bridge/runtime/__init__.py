"""The asyncio runtime: connections to guest agent ports, the VM runtime, QMP. No Qt here."""

from __future__ import annotations

from ..sites import Endpoint, EndpointError, Site
from .backoff import backoff
from .commands import AgentCommands
from .connection import AgentConnection
from .filesend import FileProgress, FileSendError
from .gate import HIGH_WATER, LOW_WATER, OutputGate
from .pointer import PointerSender
from .qmp import QmpError
from .vm import Runstate, VmRuntime

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "AgentCommands",
    "AgentConnection",
    "Endpoint",
    "EndpointError",
    "FileProgress",
    "FileSendError",
    "OutputGate",
    "PointerSender",
    "QmpError",
    "Runstate",
    "Site",
    "VmRuntime",
    "backoff",
]
