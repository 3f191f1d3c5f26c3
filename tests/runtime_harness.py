"""An asyncio harness around a VmRuntime, shared by the real-agent and real-QEMU tests.

The guest side is anything with the two guest actions both fixtures offer
(``guest_copy(data)`` and ``guest_paste_async(selection, target, timeout)``): the relayed agent
stack of tests/system and the QEMU guests of tests/qemu.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Protocol

from vdagent_bridge.protocol import (
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardRequested,
    ClipboardType,
    Event,
    Selection,
)
from vdagent_bridge.runtime import Site, VmRuntime
from vdagent_bridge.state import StateStore

TEXT = ClipboardType.UTF8_TEXT
X_SELECTION = {Selection.CLIPBOARD: "clipboard", Selection.PRIMARY: "primary"}


class Guest(Protocol):
    def guest_copy(self, data: bytes) -> object: ...

    def guest_paste_async(
        self, selection: str, target: str, timeout: float
    ) -> concurrent.futures.Future[bytes]: ...


def steady(delay: float) -> Callable[[], Iterator[float]]:
    """A reconnect delay that does not grow (tests want quick retries)."""

    def delays() -> Iterator[float]:
        while True:
            yield delay

    return delays


class RuntimeHarness:
    """A running VmRuntime whose events land in :attr:`events`."""

    def __init__(self, sites: list[Site], *, timeout: float = 10.0, delay: float = 0.05,
                 store: StateStore | None = None) -> None:
        self.timeout = timeout
        self.events: list[Event] = []
        self.vm = VmRuntime("vm", sites, on_event=self.events.append, delays=steady(delay),
                            store=store)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RuntimeHarness:
        self.task = asyncio.create_task(self.vm.run())
        await self.until(lambda: self.vm.session.clipboard_ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.vm.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, self.timeout)

    async def until(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + (self.timeout if timeout is None else timeout)
        while not predicate():
            if loop.time() > end:
                raise AssertionError(f"timed out; last events: {self.events[-8:]!r}")
            await asyncio.sleep(0.01)

    async def event(self, kind: type, since: int, timeout: float | None = None) -> Event:
        await self.until(lambda: any(isinstance(e, kind) for e in self.events[since:]), timeout)
        return next(e for e in self.events[since:] if isinstance(e, kind))

    async def guest_copies(self, guest: Guest, data: bytes) -> None:
        """The guest copies ``data`` to its CLIPBOARD; the host hears the grab."""
        mark = len(self.events)
        await asyncio.to_thread(guest.guest_copy, data)
        await self.event(ClipboardGrabbed, mark)

    async def host_fetches(self, selection: Selection = Selection.CLIPBOARD,
                           timeout: float | None = None) -> bytes:
        """The host asks for the guest's text and returns it."""
        mark = len(self.events)
        self.vm.session.request_clipboard(selection, TEXT, self.vm.now())
        self.vm.flush()
        received = await self.event(ClipboardReceived, mark, timeout)
        assert isinstance(received, ClipboardReceived)
        return received.data

    async def guest_pastes(self, guest: Guest, selection: Selection, data: bytes) -> bytes:
        """The host owns ``selection``: a paste in the guest asks us, we answer ``data``;
        returns what the guest pasted."""
        mark = len(self.events)
        paste = guest.guest_paste_async(X_SELECTION[selection], "UTF8_STRING", self.timeout)
        await self.event(ClipboardRequested, mark)
        assert self.vm.session.send_clipboard_data(selection, TEXT, data)
        self.vm.flush()
        return await asyncio.wrap_future(paste)
