"""The per-VM state store and the reconnect backoff."""

from __future__ import annotations

import itertools
import json
import os
import random
import stat
from pathlib import Path

import pytest

from tests.helpers import Pair
from vdagent_bridge.protocol import HostSession, Owner, Selection
from vdagent_bridge.runtime.backoff import backoff
from vdagent_bridge.state import AppPaths, StateStore, StoreError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_is_saved_private_and_loaded_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state" / "vms")
    pair = Pair()
    pair.host.grab_clipboard(Selection.PRIMARY, (1,))
    pair.pump()
    path = store.save("vm1", pair.host.snapshot(pair.now))
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    loaded = store.load("vm1")
    assert loaded is not None and loaded.vm == "vm1"
    session = HostSession.restore(loaded.session, 0.0)
    assert session.owner(Selection.PRIMARY) is Owner.HOST


def test_saving_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(3):
        store.save("vm", {"n": i})
    assert [p.name for p in tmp_path.iterdir()] == ["vm.json"]
    loaded = store.load("vm")
    assert loaded is not None and loaded.session == {"n": 2}


def test_a_loose_state_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "vms"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    StateStore(directory).save("vm", {})
    assert mode(directory) == 0o700


def test_missing_state_is_none(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load("nothing") is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({"schema_version": 99, "vm": "vm", "saved_at": 1, "session": {}}).encode(),
        json.dumps({"schema_version": 1, "vm": "other", "saved_at": 1, "session": {}}).encode(),
        json.dumps({"schema_version": 1, "vm": "vm", "saved_at": 1}).encode(),
        json.dumps({"schema_version": 1, "vm": "vm", "saved_at": 1, "session": {},
                    "saved_with": 7}).encode(),
    ],
)
def test_a_corrupted_state_file_is_kept_aside_and_the_vm_starts_fresh(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path)
    store.path("vm").write_bytes(content)
    assert store.load("vm") is None
    kept = [p for p in tmp_path.iterdir() if ".bad-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert not store.path("vm").exists()
    assert any("starting vm fresh" in r.getMessage() for r in caplog.records)


def test_a_truncated_state_file_is_reported(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("vm", HostSession().snapshot(0.0))
    data = store.path("vm").read_bytes()
    store.path("vm").write_bytes(data[: len(data) // 2])
    assert store.load("vm") is None


def test_vm_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "vms")
    for name in ("../evil", "a/b", "..", ".", "ünïcode vm"):
        path = store.save(name, {})
        assert path.parent == tmp_path / "vms"
        loaded = store.load(name)
        assert loaded is not None and loaded.vm == name


def test_export_then_import_hands_a_conversation_to_another_instance(tmp_path: Path) -> None:
    here = StateStore(tmp_path / "here")
    there = StateStore(tmp_path / "there")
    pair = Pair()
    pair.guest.copy(Selection.CLIPBOARD, {1: b"x"})
    pair.pump()
    here.save("vm", pair.host.snapshot(pair.now))
    exported = here.export("vm", tmp_path / "handover.json")
    assert mode(exported) == 0o600
    loaded = there.import_(exported, "vm-dst")
    assert loaded.vm == "vm-dst"
    session = HostSession.restore(loaded.session, 0.0)
    assert session.owner(Selection.CLIPBOARD) is Owner.GUEST
    assert there.load("vm-dst") is not None


def test_the_conversation_a_vm_was_saved_with_is_kept_with_its_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("vm", HostSession().snapshot(0.0), saved_with="c0ffee")
    loaded = store.load("vm")
    assert loaded is not None and loaded.saved_with == "c0ffee"
    store.save("vm", HostSession().snapshot(0.0))  # talked to since: no longer saved with it
    loaded = store.load("vm")
    assert loaded is not None and loaded.saved_with is None


def test_an_exported_conversation_is_not_one_a_saved_vm_continues(tmp_path: Path) -> None:
    here = StateStore(tmp_path / "here")
    here.save("vm", HostSession().snapshot(0.0), saved_with="c0ffee")
    exported = here.export("vm", tmp_path / "handover.json")
    assert StateStore(tmp_path / "there").import_(exported).saved_with is None


def test_export_without_state_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no saved state"):
        StateStore(tmp_path).export("vm", tmp_path / "x.json")


def test_default_paths_use_the_xdg_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg-state")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/tmp/xdg-config")
    paths = AppPaths.default()
    assert paths.state == Path("/tmp/xdg-state/vdagent-bridge")
    assert paths.config == Path("/tmp/xdg-config/vdagent-bridge")
    assert paths.vm_state == paths.state / "vms"
    assert AppPaths.default(state_dir="/elsewhere").state == Path("/elsewhere")


def test_backoff_grows_jittered_up_to_its_cap() -> None:
    delays = list(itertools.islice(backoff(rng=random.Random(1)), 12))
    assert 0.15 <= delays[0] <= 0.25
    assert all(d <= 10.0 for d in delays)
    assert delays[-1] >= 7.5  # reached the cap, give or take the jitter
    assert sorted(delays[:5]) == delays[:5]  # growth dominates the jitter at first


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        next(backoff(initial=0))
    with pytest.raises(ValueError):
        next(backoff(jitter=1.5))
