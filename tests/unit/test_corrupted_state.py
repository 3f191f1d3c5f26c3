"""A state file corrupted on disk, end to end: the engine's restore, the store, the VM runtime
and the CLI. Whatever the file holds: a clear error, a fresh start, the bad file kept.

Regressions of what the fuzz harness (tests/fuzz) found in ``HostSession.restore`` and the
store: an ``Infinity`` (valid JSON for Python) or a missing key escaped ``restore`` as
OverflowError / KeyError instead of LocalProtocolError; a NaN deadline restored a request that
never expires; a deeply nested file made ``StateStore.load`` raise RecursionError; and a file
the store could read but the engine could not restore was overwritten by the next save
instead of being kept.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Pair, quick
from vdagent_bridge.cli import main
from vdagent_bridge.demo import GuestServer
from vdagent_bridge.protocol import HostSession, LocalProtocolError, Selection
from vdagent_bridge.runtime import Endpoint, Runstate, Site, VmRuntime
from vdagent_bridge.state import StateStore


def snapshot() -> dict[str, Any]:
    pair = Pair()
    pair.host.grab_clipboard(Selection.PRIMARY, (1,))
    pair.guest.copy(Selection.CLIPBOARD, {1: b"x"})
    pair.pump()
    pair.host.request_clipboard(Selection.CLIPBOARD, 1, pair.now)
    state: dict[str, Any] = json.loads(json.dumps(pair.host.snapshot(pair.now)))
    return state


def _set(path: tuple[Any, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def apply(state: dict[str, Any]) -> None:
        node: Any = state
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.pop(key)


@pytest.mark.parametrize(
    "corrupt",
    [
        _set(("clipboard", "selections", "0", "serial"), math.inf),
        _set(("framing", "chunk_port"), math.inf),
        _set(("framing", "chunk_left"), -math.inf),
        _set(("next_transfer_id",), math.inf),
        _delete("framing"),
        _set(("clipboard", "to_guest", 0, 2), math.nan),
        _set(("clipboard", "to_guest", 0, 2), math.inf),
        _set(("clipboard", "selections", "1", "release_in"), math.nan),
        _set(("host_caps",), [-1]),
        _set(("host_caps",), [1 << 32]),
        _set(("host_caps",), [0] * 17),
    ],
    ids=["inf-serial", "inf-chunk-port", "inf-chunk-left", "inf-transfer-id", "no-framing",
         "nan-deadline", "inf-deadline", "nan-release", "negative-host-caps",
         "host-caps-over-u32", "too-many-host-caps"],
)
def test_restore_of_a_corrupted_snapshot_is_a_local_protocol_error(
    corrupt: Callable[[dict[str, Any]], None],
) -> None:
    state = snapshot()
    corrupt(state)
    # As the store reads it back: NaN and Infinity are valid JSON to Python.
    state = json.loads(json.dumps(state))
    with pytest.raises(LocalProtocolError):
        HostSession.restore(state, 0.0)


def test_a_deeply_nested_state_file_is_kept_aside(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    content = b"[" * 100_000
    store.path("vm").write_bytes(content)
    assert store.load("vm") is None
    kept = [p for p in tmp_path.iterdir() if ".bad-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == content


def _run_runtime(tmp_path: Path, store: StateStore) -> VmRuntime:
    """A VmRuntime (with ``store``) connected once to the demo guest, then stopped."""

    async def scenario() -> VmRuntime:
        path = tmp_path / "agent.sock"
        async with GuestServer(path) as server:
            vm = VmRuntime("vm", [Site(Endpoint("unix", path=str(path)))], store=store,
                           delays=quick)
            task = asyncio.create_task(vm.run())
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while not vm.session.clipboard_ready:
                assert loop.time() < end, "the runtime did not connect"
                await asyncio.sleep(0.01)
            assert vm.runstate is Runstate.CONNECTED
            assert server.guest.log.count("New client connected") == 1  # fresh
            await vm.stop()
            await asyncio.wait_for(task, 5)
            return vm

    return asyncio.run(scenario())


def _restorable_but_broken() -> bytes:
    """A state whose host caps do not fit a u32: it restored, then the first announce raised
    LocalProtocolError out of connect() and next_event(), ending the VM's runtime task."""
    state = snapshot()
    state["host_caps"] = [-1]
    return json.dumps({"schema_version": 1, "vm": "vm", "saved_at": 1,
                       "session": state}).encode()


@pytest.mark.parametrize(
    "content",
    [
        _restorable_but_broken(),
        b"[" * 100_000,  # the store cannot parse it
        json.dumps({"schema_version": 1, "vm": "vm", "saved_at": 1,
                    "session": {"version": 1}}).encode(),  # the engine cannot restore it
        json.dumps({"schema_version": 1, "vm": "vm", "saved_at": 1,
                    "session": {"version": 999}}).encode(),
    ],
    ids=["host-caps-out-of-range", "nested", "incomplete-session", "unknown-session-version"],
)
def test_the_runtime_starts_fresh_and_keeps_a_bad_state_file(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path / "state")
    store.directory.mkdir(mode=0o700)
    store.path("vm").write_bytes(content)
    _run_runtime(tmp_path, store)
    kept = [p for p in store.directory.iterdir() if ".bad-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert any("fresh" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    # The new conversation was saved in its place, and it loads.
    loaded = store.load("vm")
    assert loaded is not None
    HostSession.restore(loaded.session, 0.0)


def test_the_runtime_starts_fresh_after_a_truncated_state_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save("vm", snapshot())
    data = store.path("vm").read_bytes()
    store.path("vm").write_bytes(data[: len(data) * 2 // 3])
    vm = _run_runtime(tmp_path, store)
    # The saved PRIMARY grab was lost with the file: a fresh session owns nothing.
    assert vm.session.owner(Selection.PRIMARY).value == "none"
    assert len([p for p in store.directory.iterdir() if ".bad-" in p.name]) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,
        b'{"schema_version": 1, "vm": "vm", "saved_at": 1, "session": {"version": 1}}',
        b'{"schema_version": 1, "vm": "vm", "saved_at": 1, "session": {"version": 1, '
        b'"host_caps": [Infinity]}}',
    ],
    ids=["nested", "incomplete-session", "infinity"],
)
def test_cli_import_of_a_corrupted_state_file_is_one_line_exit_2(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "handover.json"
    bad.write_bytes(content)
    sock = tmp_path / "agent.sock"
    sock.touch()  # the endpoint check passes; the import fails before connecting
    code = main(["--endpoint", f"unix:{sock}", "--import-state", str(bad),
                 "--state-dir", str(tmp_path / "state"), "--log-level", "error"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("vdagent-bridge: ") and err.strip().count("\n") == 0
    assert bad.read_bytes() == content  # the file given is never changed
