"""Clipboard bookkeeping of the host session: ownership, grab serials, pending requests.

Pure data and rules, no IO and no clock (deadlines are numbers the caller's clock produced).

Grab serials (CLIPBOARD_GRAB_SERIAL, docs/protocol.md §6.2 and docs/guest-agent.md §5)
----------------------------------------------------------------
The Linux daemon keeps one counter per selection. Its own GRAB carries the counter, then the
counter goes up. A host GRAB is accepted when its serial equals the counter (the counter goes
up) or the counter minus one (a tie: the host wins); anything else is dropped silently. Only
host caps with request=1 zero the counters.

We keep :attr:`SelectionState.serial` equal to that counter:

- a host grab carries ``serial`` and increments it, exactly as the daemon expects;
- a guest grab carrying ``s >= serial`` is accepted and sets ``serial = s + 1`` (it also
  resynchronises us if guest grabs were lost while no host was connected);
- a guest grab carrying ``s < serial`` crossed one of ours and lost; the daemon, seeing our
  grab as a tie (``counter - 1``), has let ours win too. Both sides agree on the host.

Crossing grabs after a guest grab at S: the guest sends S+1 while we send S+1 (our serial is
S+1 after accepting S); the daemon counts S+2 and accepts ours as a tie, we drop its S+1 as
lower than our S+2: the host owns it on both sides. If two guest grabs cross one of ours, the
second carries a serial we accept and the daemon drops ours: the guest owns it on both sides.
The same outcome, reached by the same rules, is what "crossing grabs resolved the same way on
both sides" means.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from .constants import ClipboardType, Selection

_U32 = 0xFFFFFFFF


class Owner(enum.Enum):
    """Who holds a selection, as far as this conversation knows."""

    NONE = "none"
    HOST = "host"
    GUEST = "guest"


@dataclass(slots=True)
class SelectionState:
    """One selection's ownership, offered types and serial counter."""

    owner: Owner = Owner.NONE
    types: tuple[ClipboardType | int, ...] = ()
    #: The serial the next GRAB of either side carries (= the daemon's counter).
    serial: int = 0
    #: When a guest RELEASE is deferred (the guest lacks NO_RELEASE_ON_REGRAB), the time it
    #: takes effect unless a new guest GRAB arrives first.
    release_at: float | None = None

    def take_host_serial(self) -> int:
        """The serial for a host GRAB; advances the counter as the daemon will."""
        serial = self.serial
        self.serial = (serial + 1) & _U32
        return serial

    def accept_guest_serial(self, serial: int) -> bool:
        """Apply the guest's GRAB serial; False means the grab lost a race and is dropped."""
        if serial < self.serial:
            return False
        self.serial = (serial + 1) & _U32
        return True


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A clipboard request waiting for its answer."""

    selection: Selection | int
    type: ClipboardType | int
    deadline: float


@dataclass(slots=True)
class ClipboardBook:
    """All clipboard state of one conversation."""

    selections: dict[Selection, SelectionState] = field(
        default_factory=lambda: {s: SelectionState() for s in Selection}
    )
    #: Requests we sent to the guest, oldest first.
    to_guest: list[PendingRequest] = field(default_factory=list)
    #: Requests the guest sent us, oldest first.
    from_guest: list[PendingRequest] = field(default_factory=list)

    def reset_serials(self) -> None:
        """Zero every counter, as the daemon does on host caps with request=1."""
        for state in self.selections.values():
            state.serial = 0

    def take_to_guest(
        self, selection: int, data_type: int
    ) -> PendingRequest | None:
        """Remove and return the request an answer for (selection, type) completes.

        An answer of the requested type completes the oldest such request; a NONE answer
        (the agent's "no data") completes the oldest request on that selection.
        """
        for index, req in enumerate(self.to_guest):
            if req.selection == selection and req.type == data_type:
                return self.to_guest.pop(index)
        if data_type == ClipboardType.NONE:
            for index, req in enumerate(self.to_guest):
                if req.selection == selection:
                    return self.to_guest.pop(index)
        return None

    def take_from_guest(self, selection: int, data_type: int) -> PendingRequest | None:
        """Remove and return the oldest guest request for (selection, type)."""
        for index, req in enumerate(self.from_guest):
            if req.selection == selection and req.type == data_type:
                return self.from_guest.pop(index)
        return None

    def next_deadline(self) -> float | None:
        times = [r.deadline for r in self.to_guest]
        times += [r.deadline for r in self.from_guest]
        times += [s.release_at for s in self.selections.values() if s.release_at is not None]
        return min(times) if times else None

    # -- snapshot ----------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """JSON-ready state; deadlines are stored relative to ``now``."""

        def rel(t: float | None) -> float | None:
            return None if t is None else max(t - now, 0.0)

        return {
            "selections": {
                str(int(sel)): {
                    "owner": st.owner.value,
                    "types": [int(t) for t in st.types],
                    "serial": st.serial,
                    "release_in": rel(st.release_at),
                }
                for sel, st in self.selections.items()
            },
            "to_guest": [
                [int(r.selection), int(r.type), rel(r.deadline)] for r in self.to_guest
            ],
            "from_guest": [
                [int(r.selection), int(r.type), rel(r.deadline)] for r in self.from_guest
            ],
        }

    @classmethod
    def restore(cls, state: dict[str, Any], now: float) -> ClipboardBook:
        """Rebuild from :meth:`snapshot`, deadlines rebased on ``now``.

        :raises KeyError, ValueError, TypeError: on a malformed state (the session wraps them).
        """

        def absolute(t: object) -> float | None:
            if t is None:
                return None
            delay = float(t)  # type: ignore[arg-type]
            if not math.isfinite(delay):  # NaN never expires: a request pending forever
                raise ValueError(f"deadline {delay} is not a finite number")
            return now + delay

        book = cls()
        for key, st in state["selections"].items():
            sel = Selection(int(key))
            serial = int(st["serial"])
            if not 0 <= serial <= _U32:
                raise ValueError("serial out of range")
            book.selections[sel] = SelectionState(
                owner=Owner(st["owner"]),
                types=tuple(_clip_type(t) for t in st["types"]),
                serial=serial,
                release_at=absolute(st["release_in"]),
            )
        for name in ("to_guest", "from_guest"):
            requests = [
                PendingRequest(
                    _selection(sel), _clip_type(t), absolute(d) or now
                )
                for sel, t, d in state[name]
            ]
            setattr(book, name, requests)
        return book


def _clip_type(value: object) -> ClipboardType | int:
    if not isinstance(value, int):
        raise TypeError(f"clipboard type must be an integer, not {value!r}")
    number = int(value)
    try:
        return ClipboardType(number)
    except ValueError:
        return number


def _selection(value: object) -> Selection:
    if not isinstance(value, int):
        raise TypeError(f"selection must be an integer, not {value!r}")
    return Selection(value)
