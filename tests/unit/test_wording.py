"""What the app says about a VM (ui/wording.py) and its file queue (runtime/filequeue.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from vdagent_bridge.runtime import Endpoint, FileProgress, FileSendError, Runstate, Site
from vdagent_bridge.runtime.filequeue import FileQueue, progress_text
from vdagent_bridge.sites import LibvirtSite
from vdagent_bridge.ui.model import Level
from vdagent_bridge.ui.wording import level_of, runstate_notice, vm_detail

AGENT = Endpoint("unix", path="/run/vm-agent.sock")
C, M, W, F, IDLE = (Runstate.CONNECTED, Runstate.MIGRATING, Runstate.WAITING, Runstate.FAILED,
                 Runstate.IDLE)


@pytest.mark.parametrize(("previous", "state", "migrated", "reconnecting", "expected"), [
    (Runstate.CONNECTING, C, False, False, ("connected to the demo", Level.INFO)),
    (M, C, True, False, (f"migration done: continuing on {AGENT}", Level.INFO)),
    (M, C, False, False, (f"the migration did not complete: staying on {AGENT}",
                          Level.WARNING)),
    (C, W, False, False, ("disconnected; reconnecting when the agent port is back",
                          Level.WARNING)),
    (M, W, False, False, ("disconnected; reconnecting when the agent port is back",
                          Level.WARNING)),
    (C, W, False, True, None),  # the user asked for it
    (Runstate.CONNECTING, W, False, False, None),  # still trying: no news
    (Runstate.CONNECTING, F, False, False, ("permission denied", Level.ERROR)),
    (C, M, False, False, None),
    (C, IDLE, False, False, None),
])
def test_runstate_notices(previous: Runstate, state: Runstate, migrated: bool,
                          reconnecting: bool, expected: tuple[str, Level] | None) -> None:
    assert runstate_notice(state, previous, migrated=migrated, where="the demo", site=Site(AGENT),
                           failure="permission denied", reconnecting=reconnecting) == expected


def test_the_status_line_says_where_or_why_not(tmp_path: Path) -> None:
    here = Endpoint("unix", path=str(tmp_path / "agent.sock"))
    site = Site(here)
    kw: dict[str, object] = {"where": str(here), "failure": "cannot connect"}
    assert vm_detail(C, site=site, follows_migrations=True, **kw) == \
        f"{here} (following migrations)"  # type: ignore[arg-type]
    assert vm_detail(W, site=site, follows_migrations=False, **kw) == \
        f"no agent socket at {here.path} (is the VM running?)"  # type: ignore[arg-type]
    (tmp_path / "agent.sock").touch()
    assert vm_detail(W, site=site, follows_migrations=False, **kw) == \
        f"trying {here}"  # type: ignore[arg-type]
    assert vm_detail(M, site=site, follows_migrations=True, **kw) == \
        f"from {here}"  # type: ignore[arg-type]
    assert vm_detail(F, site=site, follows_migrations=True, **kw) == \
        "cannot connect"  # type: ignore[arg-type]
    domain = LibvirtSite("qemu:///system", "win11")
    assert vm_detail(W, site=domain, follows_migrations=True, **kw) == \
        "trying win11 on qemu:///system"  # type: ignore[arg-type]
    assert vm_detail(W, site=domain, follows_migrations=True, waiting="the VM was forced off",
                     **kw) == "the VM was forced off; retrying"  # type: ignore[arg-type]


def test_a_disconnect_with_a_known_cause_says_it() -> None:
    assert runstate_notice(W, C, migrated=False, where="x", site=Site(AGENT), failure=None,
                           reconnecting=False, waiting="the VM shut down") == (
        "disconnected: the VM shut down; reconnecting when it is back", Level.WARNING)


def test_levels_of_log_levels() -> None:
    assert [level_of(n) for n in (logging.INFO, logging.WARNING, logging.ERROR)] == \
        [Level.INFO, Level.WARNING, Level.ERROR]


def test_progress_in_words() -> None:
    assert progress_text(FileProgress("a.txt", 512, 1024, 2, 3)) == \
        "Sending a.txt (2 of 3): 50% of 1.0 KiB"
    assert progress_text(FileProgress("empty", 0, 0, 1, 1)) == "Sending empty: 100% of 0 bytes"


def test_batches_go_one_after_another_and_a_cancel_forgets_the_waiting_ones() -> None:
    async def scenario() -> None:
        sent: list[list[str]] = []
        words: list[tuple[str, int]] = []
        lines: list[str] = []
        release = asyncio.Event()

        async def send(paths: Sequence[Path],
                       progress: Callable[[FileProgress], None]) -> None:
            sent.append([p.name for p in paths])
            progress(FileProgress(paths[0].name, 0, 10, 1, len(paths)))
            if paths[0].name == "bad":
                raise FileSendError("the guest has no space left for bad")
            await release.wait()

        queue = FileQueue("vm", send, progress=lines.append,
                          outcome=lambda text, level: words.append((text, level)))
        queue.add([Path("a"), Path("b")])
        queue.add([Path("bad")])
        queue.add([Path("c")])
        await asyncio.sleep(0)
        assert sent == [["a", "b"]] and queue.busy
        release.set()
        await asyncio.sleep(0.01)
        assert sent == [["a", "b"], ["bad"], ["c"]]
        assert words[:2] == [("sent 2 files to the guest", logging.INFO),
                             ("file transfer failed: the guest has no space left for bad",
                              logging.ERROR)]
        release.clear()
        queue.add([Path("d")])
        queue.add([Path("e")])
        await asyncio.sleep(0)
        queue.cancel()
        await asyncio.sleep(0.01)
        assert sent[-1] == ["d"] and ("sending d cancelled", logging.WARNING) in words
        assert lines[-1] == "" and not queue.busy
        await queue.close()
        queue.add([Path("f")])  # closed: nothing more
        assert sent[-1] == ["d"]

    asyncio.run(scenario())
