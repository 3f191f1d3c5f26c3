"""Events the host session reports, one frozen dataclass each.

They say what happened in the conversation, not what bytes arrived: a guest GRAB that lost a
serial race is :class:`ClipboardGrabIgnored`, not a grab; a request nobody answered in time is
:class:`ClipboardRequestFailed`. The UI and the bridges act on these alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .caps import Caps
from .constants import ClipboardType, FileXferStatus, MessageType, ReplyError, Selection
from .messages import Message


@dataclass(frozen=True, slots=True)
class CapabilitiesReceived:
    """The guest announced its caps. ``negotiated`` is what both sides share now.

    ``guest_restarted`` is True when the guest asked for caps (request=1) in a conversation
    that had already exchanged them: its agent restarted, so the session re-announced, reset
    the serials, forgot what the guest owned and re-grabbed what the host owns.
    """

    caps: Caps
    negotiated: Caps
    request: bool
    guest_restarted: bool = False


@dataclass(frozen=True, slots=True)
class CapabilitiesTimedOut:
    """The guest did not answer our caps announce in time.

    Either no agent is listening yet, or the guest never noticed that the previous connection
    went (it reconnected before the guest drained the old bytes), so its parser is still in the
    middle of an old message and took our announce as message data. The runtime answers by
    dropping the connection for long enough for the guest to see it go.
    """

    waited: float


@dataclass(frozen=True, slots=True)
class ClipboardGrabbed:
    """The guest owns ``selection`` now and offers ``types``; the host clipboard should
    offer them too and fetch the data on demand with ``request_clipboard``."""

    selection: Selection | int
    types: tuple[ClipboardType | int, ...]
    serial: int | None


@dataclass(frozen=True, slots=True)
class ClipboardGrabIgnored:
    """A guest GRAB was dropped: it crossed a host grab and its serial is lower than ours (or
    its selection is unusable). The agent resolves the same race the same way; if a later guest
    grab follows, that one carries a serial we accept, and the guest owns the selection on both
    sides (the daemon then drops our grab)."""

    selection: Selection | int
    serial: int | None
    expected: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ClipboardReleased:
    """The guest no longer owns ``selection`` (it released it, or it forgot it because its
    agent restarted or we re-announced)."""

    selection: Selection | int


@dataclass(frozen=True, slots=True)
class ClipboardRequested:
    """The guest wants the host's data for ``selection`` in ``type``. Answer with
    ``send_clipboard_data`` (or ``refuse_clipboard_request``) before the deadline, after which
    the session answers with empty data itself."""

    selection: Selection | int
    type: ClipboardType | int


@dataclass(frozen=True, slots=True)
class ClipboardReceived:
    """The guest's answer to our request. Text is already converted to LF line endings.

    ``data`` is a bytearray when the answer was large enough to be received into its own
    buffer (no copy to bytes); either way it belongs to the receiver."""

    selection: Selection | int
    type: ClipboardType | int
    data: bytes | bytearray


class FailureReason(enum.Enum):
    """Why a clipboard request ended without data."""

    NO_DATA = "the guest has no data of that type"  # the agent's NONE reply, or empty data
    TIMEOUT = "the guest did not answer in time"
    NOT_OWNER = "the guest does not own that selection"
    EMPTY = "the guest sent no bytes: its data is empty or larger than our MAX_CLIPBOARD"
    CONNECTION_RESET = "the guest agent restarted or the connection was reset"


@dataclass(frozen=True, slots=True)
class ClipboardRequestFailed:
    """A request of ours ended without data."""

    selection: Selection | int
    type: ClipboardType | int
    reason: FailureReason


@dataclass(frozen=True, slots=True)
class GuestRequestExpired:
    """The host did not answer a guest request in time; the session sent empty data."""

    selection: Selection | int
    type: ClipboardType | int


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """The agent acknowledged a message (MONITORS_CONFIG: the guest applied the layout)."""

    type: MessageType | int
    error: ReplyError | int

    @property
    def ok(self) -> bool:
        return self.error == ReplyError.SUCCESS


@dataclass(frozen=True, slots=True)
class FileTransferReady:
    """The guest accepted transfer ``id``: feed it with ``send_file_data``."""

    id: int


@dataclass(frozen=True, slots=True)
class FileTransferFinished:
    """Transfer ``id`` is over: SUCCESS, CANCELLED or an error, ``detail`` says it in words."""

    id: int
    status: FileXferStatus | int
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == FileXferStatus.SUCCESS


@dataclass(frozen=True, slots=True)
class MessageIgnored:
    """A well-formed message that has no place in the conversation (wrong direction,
    unknown type, unsolicited data). Kept so it can be logged and counted."""

    message: Message
    reason: str


Event = (
    CapabilitiesReceived
    | CapabilitiesTimedOut
    | ClipboardGrabbed
    | ClipboardGrabIgnored
    | ClipboardReleased
    | ClipboardRequested
    | ClipboardReceived
    | ClipboardRequestFailed
    | GuestRequestExpired
    | ReplyReceived
    | FileTransferReady
    | FileTransferFinished
    | MessageIgnored
)
