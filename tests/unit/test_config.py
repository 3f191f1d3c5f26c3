"""The TOML configuration: what it accepts, and one readable line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdagent_bridge.runtime import Endpoint
from vdagent_bridge.state.config import ConfigError, Policy, load_config, parse_size

EXAMPLE = """
[defaults]
clipboard = "both"
primary = false
max_to_host = "16MiB"

[[vm]]
name = "win11"
clipboard = "to-guest"
primary = true
display = "1920x1080"

[[vm.site]]
agent = "unix:/run/user/1000/win11-agent.sock"
qmp = "unix:/run/user/1000/win11-qmp.sock"

[[vm.site]]
agent = "unix:/run/user/1000/win11-dst-agent.sock"

[[vm]]
name = "debian 12"

[[vm.site]]
agent = "tcp:127.0.0.1:5555"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_configuration_is_understood(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE))
    assert config.defaults == Policy(max_to_host=16 << 20)
    win, deb = config.vms
    assert win.name == "win11"
    assert win.policy.clipboard == "to-guest" and win.policy.primary
    assert win.policy.to_guest and not win.policy.to_host
    assert win.policy.max_to_host == 16 << 20  # inherited from [defaults]
    assert win.policy.display == (1920, 1080)
    assert [s.agent for s in win.sites] == [
        Endpoint("unix", path="/run/user/1000/win11-agent.sock"),
        Endpoint("unix", path="/run/user/1000/win11-dst-agent.sock"),
    ]
    assert win.sites[0].qmp == Endpoint("unix", path="/run/user/1000/win11-qmp.sock")
    assert win.sites[1].qmp is None
    assert deb.sites[0].agent == Endpoint("tcp", host="127.0.0.1", port=5555)
    assert deb.policy == config.defaults
    assert deb.policy.display is None  # the pointer surface asks the guest's screen


def test_a_missing_file_is_an_empty_configuration(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml")
    assert config.vms == () and config.defaults == Policy()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults\n", "not valid TOML"),
        ('[defaults]\nclipboard = "sideways"\n', "defaults.clipboard: expected one of"),
        ("[defaults]\nprimary = 1\n", "defaults.primary: expected true or false"),
        ('[defaults]\nmax_to_guest = "lots"\n', "defaults.max_to_guest: expected a size"),
        ("[defaults]\nmax_to_guest = 0\n", "out of range"),
        ("[defaults]\ncolour = 1\n", "defaults: unknown key 'colour'"),
        ("[[vm]]\n[[vm.site]]\nagent = \"unix:/a\"\n", "vm[0].name: expected a name"),
        ('[[vm]]\nname = "a"\n', "vm[0]: needs at least one [[vm.site]]"),
        ('[[vm]]\nname = "a"\n[[vm.site]]\nqmp = "unix:/q"\n', "vm[0].site[0]: needs agent"),
        ('[[vm]]\nname = "a"\n[[vm.site]]\nagent = "ftp:x"\n',
         "vm[0].site[0].agent: endpoint 'ftp:x'"),
        ('[[vm]]\nname = "a"\n[[vm.site]]\nagent = "unix:/a"\nqmp = 5\n',
         "vm[0].site[0].qmp: expected a string"),
        ('[[vm]]\nname = "a"\n[[vm.site]]\nagent = "unix:/a"\n'
         '[[vm]]\nname = "a"\n[[vm.site]]\nagent = "unix:/b"\n', "vm[1].name: 'a' is already"),
        ('vm = "x"\n', "vm: expected [[vm]] tables"),
        ('[defaults]\ndisplay = "big"\n', 'defaults.display: expected a size such as "1920x1080"'),
        ('[defaults]\ndisplay = "0x600"\n', "defaults.display: 0x600 is out of range"),
        ('[defaults]\ndisplay = [800, 600]\n', "defaults.display: expected a size"),
    ],
)
def test_mistakes_are_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("config.toml") or "config.toml" in str(info.value)


def test_unreadable_and_binary_files_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(directory)


@pytest.mark.parametrize(
    ("value", "size"), [(1, 1), ("10", 10), ("4 KiB", 4096), ("64MiB", 64 << 20), ("1GiB", 1 << 30)]
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value, "x") == size


def test_a_vm_may_give_its_display_size_for_the_pointer_surface(tmp_path: Path) -> None:
    text = ('[[vm]]\nname = "a"\ndisplay = "1920x1080"\n[[vm.site]]\nagent = "unix:/a"\n'
            '[[vm]]\nname = "b"\n[[vm.site]]\nagent = "unix:/b"\n')
    a, b = load_config(write(tmp_path, text)).vms
    assert a.policy.display == (1920, 1080) and b.policy.display is None
    for bad, message in [('"big"', "expected a size such as"), ("1920", "expected a size"),
                         ('"0x600"', "0x600 is out of range"),
                         ('"99999x600"', "99999x600 is out of range")]:
        with pytest.raises(ConfigError, match=f"vm\\[0\\].display: {message}"):
            load_config(write(tmp_path, text.replace('"1920x1080"', bad)))
