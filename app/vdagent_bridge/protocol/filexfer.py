"""Host → guest file transfer: the START metadata and the agent's status in words.

The flow (docs/protocol.md §7, docs/guest-agent.md §12, vdagent file-xfers.c): the host
sends START {id, GKeyFile text}; the agent answers STATUS CAN_SEND_DATA (or an error); the
host sends DATA pieces until the announced size is reached; the agent answers SUCCESS or
ERROR. The agent loads the key file with length -1, so the text must end with a NUL byte,
and it joins the name to its save directory with ``g_build_filename``, so the name must be a
plain file name: a slash would create directories in the guest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from construct import ConstructError

from .constants import FileXferErrorType, FileXferStatus, GIOErrorCode
from .errors import LocalProtocolError
from .wire import FileXferStatusError, FileXferStatusNotEnoughSpace

#: The key file group vdagent reads (file-xfers.c).
KEYFILE_GROUP = "vdagent-file-xfer"


class TransferState(enum.Enum):
    """Where a transfer stands."""

    WAITING = "waiting"  # START sent, no answer yet
    SENDING = "sending"  # CAN_SEND_DATA received


@dataclass(slots=True)
class Transfer:
    """One outgoing transfer."""

    id: int
    name: str
    size: int
    sent: int = 0
    state: TransferState = TransferState.WAITING


def _escape_value(value: str) -> str:
    """Escape a GKeyFile string value as ``g_key_file_set_string`` does."""
    out = []
    for index, ch in enumerate(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == " " and index == 0:
            out.append("\\s")
        else:
            out.append(ch)
    return "".join(out)


def check_file_name(name: str) -> str:
    """Return ``name`` if the guest can store it as a plain file name.

    :raises LocalProtocolError: empty, ``.``/``..``, or containing ``/`` or NUL.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise LocalProtocolError(f"not a plain file name: {name!r}")
    return name


def start_metadata(
    name: str, size: int, *, number: int | None = None, total: int | None = None
) -> bytes:
    """The NUL-terminated GKeyFile text of FILE_XFER_START."""
    check_file_name(name)
    if size < 0 or size > 0xFFFFFFFFFFFFFFFF:
        raise LocalProtocolError(f"file size out of range: {size}")
    lines = [f"[{KEYFILE_GROUP}]", f"name={_escape_value(name)}", f"size={size}"]
    if number is not None and total is not None:
        lines += [f"file-xfer-nr={number}", f"file-xfer-total={total}"]
    return ("\n".join(lines) + "\n").encode("utf-8") + b"\0"


_STATUS_WORDS = {
    FileXferStatus.CAN_SEND_DATA: "the guest is ready for data",
    FileXferStatus.CANCELLED: "the transfer was cancelled",
    FileXferStatus.ERROR: "the guest agent reported an error",
    FileXferStatus.SUCCESS: "the file was saved in the guest",
    FileXferStatus.NOT_ENOUGH_SPACE: "not enough free space in the guest",
    FileXferStatus.SESSION_LOCKED: "the guest session is locked",
    FileXferStatus.VDAGENT_NOT_CONNECTED: "no user session agent is running in the guest",
    FileXferStatus.DISABLED: "file transfer is disabled in the guest",
}


def describe_status(result: int, detail: bytes) -> str:
    """The agent's STATUS in words, with the detailed error when it sent one."""
    try:
        status = FileXferStatus(result)
    except ValueError:
        return f"unknown transfer status {result}"
    text = _STATUS_WORDS[status]
    try:
        if status is FileXferStatus.ERROR and len(detail) == FileXferStatusError.sizeof():
            err = FileXferStatusError.parse(detail)
            if err.error_type == FileXferErrorType.GLIB_IO:
                try:
                    code = GIOErrorCode(err.error_code).name.lower().replace("_", " ")
                except ValueError:
                    code = f"error code {err.error_code}"
                text += f": {code}"
        elif status is FileXferStatus.NOT_ENOUGH_SPACE and len(detail) == 8:
            free = FileXferStatusNotEnoughSpace.parse(detail).disk_free_space
            text += f" ({free} bytes free)"
    except ConstructError:  # the detail is decoration; a bad one must not hide the status
        pass
    return text
