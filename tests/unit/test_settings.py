"""The user's switches on disk, their precedence over the config, and the login autostart."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vdagent_bridge.assets import APP_ID
from vdagent_bridge.state.config import Policy
from vdagent_bridge.state.settings import (
    AUTOSTART_FILE,
    LEGACY_AUTOSTART_FILE,
    Autostart,
    Settings,
    autostart_dir,
    exec_line,
)


def test_changes_are_saved_at_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "settings.json"
    settings = Settings.load(path)
    assert settings.vm("win11") == {} and settings.paused is False
    settings.set_vm("win11", to_host=False)
    settings.set_vm("win11", primary=True)
    settings.set_paused(True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = Settings.load(path)
    assert again.vm("win11") == {"to_host": False, "primary": True}
    assert again.paused is True
    assert again.vm("other") == {}
    assert again.problem is None
    assert not list(path.parent.glob(".*.tmp")), "no temporary file is left behind"


def test_a_loosened_state_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    Settings(directory / "settings.json").set_paused(False)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_only_known_switches_are_accepted(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "settings.json")
    with pytest.raises(ValueError, match="unknown VM setting 'volume'"):
        settings.set_vm("vm", volume=True)
    assert not (tmp_path / "settings.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        json.dumps({"schema_version": 99, "vms": {}}).encode(),
        json.dumps({"schema_version": 1, "paused": "yes"}).encode(),
        json.dumps({"schema_version": 1, "vms": {"a": {"to_host": 1}}}).encode(),
        json.dumps({"schema_version": 1, "vms": {"a": {"volume": True}}}).encode(),
        b"\xff\xfe",
    ],
)
def test_an_unusable_file_is_set_aside_and_the_config_rules(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    settings = Settings.load(path)
    assert settings.paused is False and settings.vm("a") == {}
    assert not path.exists()
    kept = list(tmp_path.glob("settings.json.bad-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert "settings file" in caplog.text
    assert settings.problem is not None and "bad file is kept as" in settings.problem
    settings.set_vm("a", to_guest=False)  # and the app can save again
    assert Settings.load(path).vm("a") == {"to_guest": False}


def test_a_failed_save_keeps_the_change_and_marks_it_unsaved(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = Settings(blocker / "settings.json")  # its directory cannot be created
    with pytest.raises(OSError):
        settings.set_vm("vm", paused=True)
    assert settings.vm("vm") == {"paused": True}
    assert settings.dirty


def test_switches_precedence_config_then_settings_then_command_line() -> None:
    from vdagent_bridge.options import Overrides, switches_for

    policy = Policy(clipboard="to-guest", primary=False, pointer=True)
    assert switches_for(policy, {}, Overrides()) == {
        "to_guest": True, "to_host": False, "primary": False, "pointer": True, "paused": False,
    }
    saved = {"to_host": True, "primary": True, "paused": True}
    assert switches_for(policy, saved, Overrides()) == {
        "to_guest": True, "to_host": True, "primary": True, "pointer": True, "paused": True,
    }
    cli = Overrides(clipboard="to-host", primary=False, pointer=False)
    assert switches_for(policy, saved, cli) == {
        "to_guest": False, "to_host": True, "primary": False, "pointer": False, "paused": True,
    }
    assert switches_for(policy, {}, Overrides(clipboard="off"))["to_guest"] is False


# ---------------------------------------------------------------- autostart


def test_autostart_dir_follows_xdg_config_home(tmp_path: Path) -> None:
    assert autostart_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "autostart"
    home = Path(os.path.expanduser("~"))
    assert autostart_dir({}) == home / ".config" / "autostart"
    assert autostart_dir({"XDG_CONFIG_HOME": "relative"}) == home / ".config" / "autostart"


def test_autostart_entry_is_written_and_removed(tmp_path: Path) -> None:
    entry = Autostart(["/usr/bin/vdagent-bridge", "--config", "/home/me/my vms.toml"],
                      tmp_path / "autostart")
    assert not entry.enabled()
    entry.set_enabled(True)
    path = tmp_path / "autostart" / AUTOSTART_FILE
    assert entry.enabled() and path.is_file()
    text = path.read_text()
    assert text.startswith("[Desktop Entry]\nType=Application\n")
    assert 'Exec=/usr/bin/vdagent-bridge --config "/home/me/my vms.toml"\n' in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    entry.set_enabled(False)
    assert not path.exists() and not entry.enabled()
    entry.set_enabled(False)  # removing twice is fine


def test_the_autostart_entry_is_named_and_iconed_by_the_application_id(tmp_path: Path) -> None:
    entry = Autostart(["vdagent-bridge"], tmp_path)
    entry.set_enabled(True)
    assert entry.path == tmp_path / f"{APP_ID}.desktop"
    assert f"Icon={APP_ID}\n" in entry.path.read_text()


def test_an_autostart_entry_under_the_old_name_counts_and_is_replaced(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_AUTOSTART_FILE
    legacy.write_text("[Desktop Entry]\nType=Application\nExec=vdagent-bridge\n")
    entry = Autostart(["vdagent-bridge"], tmp_path)
    assert entry.enabled()
    entry.set_enabled(True)
    assert not legacy.exists() and entry.path.is_file()
    legacy.write_text("[Desktop Entry]\nType=Application\nExec=vdagent-bridge\n")
    entry.set_enabled(False)
    assert not legacy.exists() and not entry.path.exists() and not entry.enabled()


def test_a_hidden_autostart_entry_counts_as_off(tmp_path: Path) -> None:
    entry = Autostart(["vdagent-bridge"], tmp_path)
    entry.path.write_text("[Desktop Entry]\nType=Application\nExec=x\nHidden=true\n")
    assert not entry.enabled()


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (["vdagent-bridge"], "vdagent-bridge"),
        (["/opt/v b/python", "-m", "vdagent_bridge"], '"/opt/v b/python" -m vdagent_bridge'),
        (["x", "100%"], "x 100%%"),
        (["x", 'say "hi" $HOME'], 'x "say \\\\"hi\\\\" \\\\$HOME"'),
        (["x", "a\\b"], 'x "a\\\\\\\\b"'),
        (["x", ""], 'x ""'),
    ],
)
def test_exec_line_quotes_as_the_desktop_entry_spec_says(command: list[str], line: str) -> None:
    assert exec_line(command) == line
