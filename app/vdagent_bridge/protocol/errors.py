"""The engine's one exception family.

::

    VDAgentError                    root of everything the engine raises on purpose
     ├── LocalProtocolError         we misused the engine (a bug on our side, or a call the
     │    │                         current state does not allow); nothing was sent
     │    └── StateError            .state, .required: the call needs another state
     └── RemoteProtocolError        the guest sent something malformed; the engine has already
          │                         skipped the bad unit, so the caller may log it and go on
          ├── ChunkError            the chunk layer broke (bad port, oversize chunk, a chunk
          │                         running past its message): vdagentd treats these as a
          │                         lost connection and reopens its port
          └── LimitExceeded         .limit, .actual: a size or count the guest controls was
                                    over a configured limit; nothing was buffered for it

No construct, struct or codec exception escapes the ``protocol`` package: the codec wraps them
in RemoteProtocolError (guest bytes) or LocalProtocolError (values we were asked to encode).
"""

from __future__ import annotations


class VDAgentError(Exception):
    """Root of the engine's exceptions."""


class LocalProtocolError(VDAgentError):
    """The caller asked for something the protocol or the engine's state does not allow.

    The engine's state is unchanged and nothing was queued for sending.
    """


class StateError(LocalProtocolError):
    """A call that needs the engine in another state."""

    def __init__(self, message: str, *, state: object, required: object) -> None:
        super().__init__(message)
        self.state = state
        self.required = required


class RemoteProtocolError(VDAgentError):
    """The guest sent bytes that break the protocol.

    Raised by ``next_event()`` after the engine has already dropped the offending chunk or
    message and resynchronised, so calling ``next_event()`` again continues with the bytes that
    follow. ``message_type`` names the message type when the header was readable.
    """

    def __init__(self, message: str, *, message_type: int | None = None) -> None:
        super().__init__(message)
        self.message_type = message_type


class ChunkError(RemoteProtocolError):
    """A chunk that breaks the framing (port, size, or bytes past its message's end)."""


class LimitExceeded(RemoteProtocolError):
    """A size or count that the guest controls went over a configured limit."""

    def __init__(
        self, message: str, *, limit: int, actual: int, message_type: int | None = None
    ) -> None:
        super().__init__(f"{message} ({actual} > limit {limit})", message_type=message_type)
        self.limit = limit
        self.actual = actual


class ChunkLimitExceeded(ChunkError, LimitExceeded):
    """A chunk larger than the largest chunk accepted."""
