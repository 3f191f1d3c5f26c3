"""The session snapshot: a conversation as plain JSON-ready data, and back.

Theory of operation
-------------------
A snapshot lets a conversation continue on another connection (a prepared migration
switchover) or in another run of the app (the state store keeps it on disk), so its layout is
a contract of its own: :data:`SNAPSHOT_VERSION` 1, read back by every later build. The
document holds::

    version           1
    host_caps         the words we announced (the guest frames its messages by them)
    guest_caps        the words the guest announced, or null
    caps_exchanged    whether they were exchanged (true exactly when guest_caps is not null)
    clipboard         ClipboardBook.snapshot: ownership, types, serials, pending requests
                      and deferred releases, deadlines relative to the time of the snapshot
    monitors          [[width, height, depth, x, y], ...] or null
    transfers         [[id, name, size, sent, state], ...]
    next_transfer_id  the id the next transfer gets
    max_clipboard     the limit the host asked for, or null
    framing           Deframer.snapshot: the half-received chunk and message
    outgoing          the queued output, base64, as one opaque run of framed bytes

What it leaves out: events not yet drained (a snapshot refuses them), the deadline of an
unanswered announce (a restored session waits for caps without timing them), and the
session's settings (limits, timeouts), which the restoring side passes in.

The file the document comes from is our own, but it is checked all the same, so that a
corrupted one cannot allocate unbounded memory or restore a session that fails later: caps
words and the half-received message against the limits, the host caps, serials and chunk
sizes for range, deadlines for being finite, caps_exchanged against guest_caps. :func:`read`
raises the plain errors of a malformed document (KeyError,
TypeError, ValueError, AttributeError, OverflowError), which ``HostSession.restore`` turns
into one LocalProtocolError; the framing part raises LocalProtocolError itself.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from .caps import Caps
from .clipboard import ClipboardBook
from .clipboard_exchange import ClipboardExchange
from .codec import Limits
from .deframer import Deframer
from .filexfer import Transfer, TransferState
from .messages import MonitorConfig
from .mouse import Pointer
from .negotiation import Negotiation, Phase
from .outbound import Outbound
from .transfers import Transfers

#: Version of the snapshot layout written by :func:`write`.
SNAPSHOT_VERSION = 1

_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Parts:
    """The parts of a session that a snapshot holds."""

    caps: Negotiation
    clipboard: ClipboardExchange
    pointer: Pointer
    transfers: Transfers
    deframer: Deframer
    out: Outbound


def write(parts: Parts, now: float) -> dict[str, Any]:
    """The document of a conversation's parts at ``now`` (see the module docstring)."""
    caps, clipboard, transfers = parts.caps, parts.clipboard, parts.transfers
    guest = caps.guest_caps
    monitors = parts.pointer.monitors
    return {
        "version": SNAPSHOT_VERSION,
        "host_caps": list(caps.host_caps.to_words()),
        "guest_caps": None if guest is None else list(guest.words),
        "caps_exchanged": caps.phase is Phase.EXCHANGED,
        "clipboard": clipboard.book.snapshot(now),
        "monitors": None
        if monitors is None
        else [[m.width, m.height, m.depth, m.x, m.y] for m in monitors],
        "transfers": [
            [t.id, t.name, t.size, t.sent, t.state.value] for t in transfers.active.values()
        ],
        "next_transfer_id": transfers.next_id,
        "max_clipboard": clipboard.limit,
        "framing": parts.deframer.snapshot(),
        "outgoing": base64.b64encode(parts.out.queued_bytes()).decode("ascii"),
    }


def host_caps(state: dict[str, Any]) -> Caps:
    """The host caps of a document, once its version is known to be ours; the session that
    continues the conversation is made with them.

    :raises ValueError: another version. KeyError, TypeError: no usable host caps.
    """
    if state.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported snapshot version {state.get('version')!r}")
    return Caps(tuple(int(w) for w in state["host_caps"]))


def read(state: dict[str, Any], now: float, parts: Parts, limits: Limits) -> None:
    """Fill the parts of a new session (made with :func:`host_caps`) from ``state``, with
    deadlines rebased on ``now``.

    :raises KeyError, TypeError, ValueError, AttributeError, OverflowError: a malformed
        document, or one that breaks ``limits``.
    :raises LocalProtocolError: the framing part is malformed or breaks a limit.
    """
    caps, clipboard, transfers = parts.caps, parts.clipboard, parts.transfers
    host = caps.host_caps.words
    if len(host) > limits.max_caps_words or not all(0 <= w <= _U32_MAX for w in host):
        # They are announced on every fresh connection: they must encode.
        raise ValueError("host caps out of range")
    guest = state["guest_caps"]
    guest_caps = None
    if guest is not None:
        if len(guest) > limits.max_caps_words:
            raise ValueError("too many caps words")
        guest_caps = Caps(tuple(int(w) & _U32_MAX for w in guest))
    caps.restore(guest_caps, bool(state["caps_exchanged"]))
    clipboard.book = ClipboardBook.restore(state["clipboard"], now)
    monitors = state["monitors"]
    parts.pointer.monitors = (
        None if monitors is None else tuple(MonitorConfig(*(int(v) for v in m)) for m in monitors)
    )
    for tid, name, size, sent, tstate in state["transfers"]:
        transfers.active[int(tid)] = Transfer(
            int(tid), str(name), int(size), int(sent), TransferState(tstate)
        )
    transfers.next_id = int(state["next_transfer_id"])
    limit = state.get("max_clipboard")
    clipboard.limit = None if limit is None else max(int(limit), 0)
    outgoing = base64.b64decode(state["outgoing"], validate=True)
    if outgoing:
        parts.out.push(outgoing)
    parts.deframer.restore(state["framing"])
