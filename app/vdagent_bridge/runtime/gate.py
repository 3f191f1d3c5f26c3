"""The high-water mark of one conversation's output, shared by its connections.

Producers of bulk output (file data, the read loop answering requests, generated clipboard
data) must not queue without bound for a guest that reads slowly or not at all: they queue
while the backlog is under the high-water mark and otherwise wait until it is down to the
low-water mark (hysteresis, so a producer refills a whole window at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Above this many queued bytes producers wait (:class:`OutputGate`) ...
HIGH_WATER = 1024 * 1024
#: ... until the queue is down to this.
LOW_WATER = 256 * 1024


class OutputGate:
    """The high-water mark of one conversation's output, shared by its connections.

    ``backlog`` says how many bytes wait to be written. Producers check :attr:`writable`
    (at most ``high`` queued) before they queue more, and otherwise ``await``
    :meth:`wait_writable`, which returns once the backlog is down to ``low`` (hysteresis, so
    a producer refills a whole window at a time). Whoever makes the backlog shrink (the
    writer, a reset of the session, a closed connection) calls :meth:`notify`.
    """

    def __init__(
        self, backlog: Callable[[], int], *, high: int = HIGH_WATER, low: int = LOW_WATER
    ) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low ({low}) <= high ({high})")
        self.backlog = backlog
        self.high = high
        self.low = low
        self._changed = asyncio.Event()

    @property
    def writable(self) -> bool:
        """Whether a producer may queue more now."""
        return self.backlog() <= self.high

    def notify(self) -> None:
        """The backlog may have shrunk: wake the waiters to look again."""
        self._changed.set()

    async def wait_writable(self, *, unless: Callable[[], bool] | None = None) -> bool:
        """Return at once if :attr:`writable`, else once the backlog is down to ``low``.

        Waits for as long as that takes (a guest that never reads: until cancelled), or
        until ``unless()`` is true when the gate is notified (a closed connection). Returns
        whether the output drained.
        """
        if self.backlog() <= self.high:
            return True
        while self.backlog() > self.low:
            if unless is not None and unless():
                return False
            self._changed.clear()
            await self._changed.wait()
        return True


