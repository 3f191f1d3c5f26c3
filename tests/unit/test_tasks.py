"""Stopping tasks for sure (runtime/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from vdagent_bridge.runtime import tasks
from vdagent_bridge.runtime.tasks import TimedOut, cancel_and_wait, within


def test_within_returns_the_result_or_times_out_and_cancels() -> None:
    async def scenario() -> None:
        assert await within(asyncio.sleep(0, "done"), 1) == "done"
        slow = asyncio.ensure_future(asyncio.sleep(10))
        with pytest.raises(TimedOut):
            await within(slow, 0.01)
        assert slow.cancelled()

    asyncio.run(scenario())


def test_within_passes_a_cancellation_on() -> None:
    async def scenario() -> None:
        waiter = asyncio.ensure_future(within(asyncio.sleep(10), 5))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())


def test_a_task_that_swallows_its_cancel_is_cancelled_again_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As asyncio.wait_for does on 3.10 and 3.11 when the inner future completes at the
    # moment of the cancel (CPython gh-86296).
    monkeypatch.setattr(tasks, "RECANCEL_INTERVAL", 0.01)
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 3:
                    raise

    async def scenario() -> None:
        task = asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), 2)
        assert task.cancelled() and cancels == 3
        await cancel_and_wait(None)
        failed = asyncio.ensure_future(asyncio.sleep(0, None))
        await failed
        await cancel_and_wait(failed)  # done already: nothing to do

    asyncio.run(scenario())
