"""The guest data on its way to the host clipboard: which fetch is current, which of our
requests are still unanswered.

The rules (see bridges/clipboard.py): the most recent guest grab wins, per selection; a newer
grab, a host copy or a policy switched off supersedes a fetch in flight, and its late answers
are dropped. The guest answers our requests in the order they were made, so of several
requests of one kind only the answer that brings their count to zero answers the newest one.
Bookkeeping only: no clipboard I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocol import ClipboardType, Selection

if TYPE_CHECKING:
    from PySide6.QtGui import QImage


@dataclass(slots=True)
class Fetch:
    """A guest's data on its way to the host clipboard."""

    vm: str
    selection: Selection
    pending: set[ClipboardType] = field(default_factory=set)
    text: str | None = None
    image: QImage | None = None
    png: bytes | bytearray | None = None  # the guest's own PNG, handed on as it is
    #: Why something was not brought over, for the user (size, unusable image).
    notices: list[str] = field(default_factory=list)


class FetchBook:
    """The current fetch per selection and the requests still unanswered per VM."""

    def __init__(self) -> None:
        self._fetches: dict[Selection, Fetch] = {}
        self._outstanding: dict[tuple[str, int, int], int] = {}

    def start(self, vm: str, selection: Selection) -> Fetch:
        """A new fetch of ``vm``'s ``selection``: it supersedes the one in flight."""
        fetch = self._fetches[selection] = Fetch(vm, selection)
        return fetch

    def requested(self, fetch: Fetch, kind: ClipboardType) -> None:
        """A request for ``kind`` was sent for ``fetch``."""
        key = (fetch.vm, int(fetch.selection), int(kind))
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        fetch.pending.add(kind)

    def answer(self, vm: str, selection: Selection | int,
               kind: ClipboardType | int) -> Fetch | None:
        """The fetch an answer of ``vm`` completes a part of, or None for a stale answer (a
        newer request of that kind is on its way, or the fetch was superseded)."""
        key = (vm, int(selection), int(kind))
        left = self._outstanding.get(key, 0) - 1
        if left > 0:
            self._outstanding[key] = left
            return None
        self._outstanding.pop(key, None)
        fetch = self._fetches.get(selection) if isinstance(selection, Selection) else None
        if fetch is None or fetch.vm != vm or kind not in fetch.pending:
            return None
        fetch.pending.discard(ClipboardType(kind))
        return fetch

    def current(self, selection: Selection) -> Fetch | None:
        return self._fetches.get(selection)

    def finish(self, fetch: Fetch) -> None:
        """``fetch`` is done (or dropped): no longer current."""
        if self._fetches.get(fetch.selection) is fetch:
            del self._fetches[fetch.selection]

    def drop(self, selection: Selection, vm: str | None = None) -> None:
        """Forget the fetch of ``selection`` (only if it is ``vm``'s, when given)."""
        fetch = self._fetches.get(selection)
        if fetch is not None and (vm is None or fetch.vm == vm):
            del self._fetches[selection]

    def forget_vm(self, vm: str) -> None:
        """A VM was detached: its fetches and requests are forgotten."""
        for selection in list(self._fetches):
            self.drop(selection, vm)
        for key in [k for k in self._outstanding if k[0] == vm]:
            del self._outstanding[key]

    def clear(self) -> None:
        self._fetches.clear()
        self._outstanding.clear()

    def items(self) -> Iterable[tuple[Selection, str]]:
        """(selection, VM) of every fetch in flight."""
        return [(sel, fetch.vm) for sel, fetch in self._fetches.items()]
