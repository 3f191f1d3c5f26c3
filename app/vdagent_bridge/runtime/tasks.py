"""Stopping tasks for sure.

Python 3.10 and 3.11's ``asyncio.wait_for`` loses a cancellation that arrives while the
awaited future completes (CPython gh-86296, fixed in 3.12): the task goes on as if never
cancelled. A follower polling QMP (a ``wait_for`` every 50 ms) was seen here to survive its
cancel for 40 s that way, holding up a migration switchover. So: wait with :func:`asyncio.wait`,
which never swallows a cancellation, and stop tasks with :func:`cancel_and_wait`, which
cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

#: How long :func:`cancel_and_wait` waits between two cancels (long enough for a task to
#: clean up after the first: a second one would interrupt that).
RECANCEL_INTERVAL = 1.0


class TimedOut(Exception):
    """The awaitable did not finish within the timeout (see :func:`within`)."""


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """``await awaitable``, giving up (cancelling it) after ``timeout`` seconds.

    :raises TimedOut: it did not finish in time.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if not done:
        raise TimedOut(f"not done in {timeout:g} s")
    return task.result()


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` and return once it is done (cancelling again while it is not);
    its exception, if it ends with one, is dropped."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_INTERVAL)
    if not task.cancelled():
        task.exception()  # retrieved: not "never retrieved"
