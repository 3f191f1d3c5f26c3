"""A VM's queue of file batches: one batch after another, each sent by the VM's command API.

The user may drop files on the pointer surface, or pick them in the tray, while a batch is
still on its way: batches wait in order and go one at a time (the guest agent takes several
transfers at once, but the user reads one progress line). Cancelling stops the batch being
sent (the guest deletes the part) and forgets the ones waiting.

Outcomes and progress are told to the owner as plain words (``progress(text)``,
``outcome(text, level)`` with a :mod:`logging` level): the owner decides how to show them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ..sizes import format_size
from .filesend import FileProgress, FileSendError

#: What sends one batch (:meth:`VmRuntime.send_files`).
SendFiles = Callable[[Sequence[Path], Callable[[FileProgress], None]], Awaitable[None]]


def progress_text(progress: FileProgress) -> str:
    """One line for the UI: "Sending notes.txt (2 of 3): 40% of 1.2 MiB"."""
    percent = 100 * progress.sent // progress.size if progress.size else 100
    which = f" ({progress.number} of {progress.total})" if progress.total > 1 else ""
    return f"Sending {progress.name}{which}: {percent}% of {format_size(progress.size)}"


class FileQueue:
    """The batches waiting for one VM, and the task sending them."""

    def __init__(
        self,
        name: str,
        send: SendFiles,
        *,
        progress: Callable[[str], None],
        outcome: Callable[[str, int], None],
    ) -> None:
        self.name = name
        self._send = send
        self._progress = progress
        self._outcome = outcome
        self._batches: list[list[Path]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def add(self, paths: Sequence[Path]) -> None:
        """Queue a batch (sent after those before it)."""
        if not paths or self._closed:
            return
        self._batches.append(list(paths))
        if not self.busy:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.name}-send-files")

    def cancel(self) -> None:
        """Stop the batch being sent and forget the ones waiting."""
        self._batches.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def close(self) -> None:
        """Cancel, and wait until the sender has let go (the guest was told)."""
        self._closed = True
        self.cancel()
        task, self._task = self._task, None
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # our own cancellation, not the sender's

    async def _run(self) -> None:
        try:
            while self._batches and not self._closed:
                batch = self._batches.pop(0)
                what = batch[0].name if len(batch) == 1 else f"{len(batch)} files"
                try:
                    await self._send(batch, lambda p: self._progress(progress_text(p)))
                except FileSendError as err:
                    self._outcome(f"file transfer failed: {err}", logging.ERROR)
                except asyncio.CancelledError:
                    self._outcome(f"sending {what} cancelled", logging.WARNING)
                    raise
                else:
                    self._outcome(f"sent {what} to the guest", logging.INFO)
        finally:
            self._progress("")
