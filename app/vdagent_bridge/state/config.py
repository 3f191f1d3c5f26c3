"""The configuration file: which VMs to bridge, and how. TOML, in the platformdirs config dir.

Example (``~/.config/vdagent-bridge/config.toml``)::

    [defaults]
    clipboard = "both"        # both | to-guest | to-host | off
    primary = false           # PRIMARY (select to copy, middle-click to paste) stays home
    pointer = true
    max_to_guest = "64MiB"    # a size: bytes, or with KiB / MiB / GiB
    max_to_host = "64MiB"

    [[vm]]
    name = "win11"
    clipboard = "to-guest"
    display = "1920x1080"     # the guest display, for the pointer surface (else its screen)

    [[vm.site]]               # one per QEMU that may run the VM (migration destinations)
    agent = "unix:/run/user/1000/win11-agent.sock"
    qmp = "unix:/run/user/1000/win11-qmp.sock"

    [[vm]]
    name = "fedora"

    [[vm.site]]               # one per libvirt host that may run the domain
    libvirt = "qemu:///system"
    domain = "fedora40"       # optional: the domain's name where it differs from the VM's

Every mistake is reported as one line naming the file and the key
(``config.toml: vm[0].site[0].agent: …``), never as a traceback; unknown keys are mistakes too,
so a typo does not silently fall back to a default.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sites import Endpoint, EndpointError, LibvirtSite, Site, VmSite

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: ``clipboard`` values: which directions the clipboard crosses.
DIRECTIONS = ("both", "to-guest", "to-host", "off")

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_DISPLAY = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")


class ConfigError(Exception):
    """A configuration mistake; the message is one readable line."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How one VM is bridged."""

    clipboard: str = "both"
    primary: bool = False
    pointer: bool = True
    max_to_guest: int = 64 << 20
    max_to_host: int = 64 << 20
    #: The guest display's size (width, height), for mapping the pointer surface until the
    #: app has sent the guest a MONITORS_CONFIG of its own; None: ask the guest's screen.
    display: tuple[int, int] | None = None

    @property
    def to_guest(self) -> bool:
        return self.clipboard in ("both", "to-guest")

    @property
    def to_host(self) -> bool:
        return self.clipboard in ("both", "to-host")


@dataclass(frozen=True, slots=True)
class VmConfig:
    """One VM: its name, the QEMU processes that may run it, and its policy."""

    name: str
    sites: tuple[VmSite, ...]
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    defaults: Policy = field(default_factory=Policy)
    vms: tuple[VmConfig, ...] = ()


def parse_size(value: object, where: str) -> int:
    """A size in bytes from an integer or a string like ``"64MiB"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        number = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ConfigError(f"{where}: expected a size such as 65536 or \"64MiB\", not {value!r}")
    if not 0 < number <= 1 << 31:
        raise ConfigError(f"{where}: {number} bytes is out of range (1 byte to 2 GiB)")
    return number


def parse_display(value: object, where: str) -> tuple[int, int]:
    """A display size from ``"1920x1080"`` (what the guest agent accepts: 1 to 16384 a side)."""
    match = _DISPLAY.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{where}: expected a size such as \"1920x1080\", not {value!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise ConfigError(f"{where}: {width}x{height} is out of range (1 to 16384 a side)")
    return width, height


def _policy(table: dict[str, Any], base: Policy, where: str) -> Policy:
    values: dict[str, Any] = {}
    for key in sorted(_POLICY_KEYS):
        if key not in table:
            continue
        value = table[key]
        if key == "clipboard":
            if value not in DIRECTIONS:
                raise ConfigError(
                    f"{where}.clipboard: expected one of {', '.join(DIRECTIONS)}, not {value!r}"
                )
        elif key in ("primary", "pointer"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, not {value!r}")
        elif key == "display":
            value = parse_display(value, f"{where}.display")
        else:
            value = parse_size(value, f"{where}.{key}")
        values[key] = value
    return Policy(**{**_fields(base), **values})


def _fields(policy: Policy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in Policy.__slots__}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known})")


def _endpoint(value: object, where: str) -> Endpoint:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string such as \"unix:/path\", not {value!r}")
    try:
        return Endpoint.parse(value)
    except EndpointError as err:
        raise ConfigError(f"{where}: {err}") from err


def _site(site: object, vm: str, here: str) -> VmSite:
    """One ``[[vm.site]]``: ``agent`` (+ ``qmp``), or ``libvirt`` (+ ``domain``)."""
    if not isinstance(site, dict):
        raise ConfigError(f"{here}: expected a table")
    if "libvirt" in site:
        _check_keys(site, {"libvirt", "domain"}, here)
        uri, domain = site["libvirt"], site.get("domain", vm)
        if not isinstance(uri, str):
            raise ConfigError(f"{here}.libvirt: expected a URI such as \"qemu:///system\", "
                              f"not {uri!r}")
        if not isinstance(domain, str):
            raise ConfigError(f"{here}.domain: expected a domain name, not {domain!r}")
        try:
            return LibvirtSite.parse(uri, domain)
        except EndpointError as err:
            raise ConfigError(f"{here}: {err}") from err
    _check_keys(site, {"agent", "qmp"}, here)
    if "agent" not in site:
        raise ConfigError(f"{here}: needs agent = \"unix:PATH\" or \"tcp:HOST:PORT\", or "
                          f"libvirt = \"URI\"")
    agent = _endpoint(site["agent"], f"{here}.agent")
    qmp = _endpoint(site["qmp"], f"{here}.qmp") if "qmp" in site else None
    return Site(agent, qmp)


_POLICY_KEYS = {"clipboard", "primary", "pointer", "max_to_guest", "max_to_host", "display"}


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a parsed TOML document.

    :raises ConfigError: the first mistake, as one line.
    """
    _check_keys(data, {"defaults", "vm"}, source)
    defaults_table = data.get("defaults", {})
    if not isinstance(defaults_table, dict):
        raise ConfigError(f"{source}: defaults: expected a table")
    _check_keys(defaults_table, _POLICY_KEYS, f"{source}: defaults")
    defaults = _policy(defaults_table, Policy(), f"{source}: defaults")
    vm_tables = data.get("vm", [])
    if not isinstance(vm_tables, list):
        raise ConfigError(f"{source}: vm: expected [[vm]] tables")
    vms: list[VmConfig] = []
    names: set[str] = set()
    for i, table in enumerate(vm_tables):
        where = f"{source}: vm[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        _check_keys(table, _POLICY_KEYS | {"name", "site"}, where)
        name = table.get("name")
        if not isinstance(name, str) or not _VM_NAME.match(name):
            raise ConfigError(f"{where}.name: expected a name of letters, digits, '.', '_', "
                              f"'-' or spaces (1-64), not {name!r}")
        if name in names:
            raise ConfigError(f"{where}.name: {name!r} is already used by another VM")
        names.add(name)
        site_tables = table.get("site", [])
        if not isinstance(site_tables, list) or not site_tables:
            raise ConfigError(f"{where}: needs at least one [[vm.site]] with an agent endpoint "
                              f"or a libvirt connection")
        sites = [_site(site, name, f"{where}.site[{j}]") for j, site in enumerate(site_tables)]
        if len({type(site) for site in sites}) > 1:
            raise ConfigError(f"{where}: its sites are either agent endpoints or libvirt "
                              f"connections, not both")
        vms.append(VmConfig(name, tuple(sites), _policy(table, defaults, where)))
    return Config(defaults, tuple(vms))


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. A missing file is an empty configuration.

    :raises ConfigError: unreadable, not TOML, or invalid — one line naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return parse_config(data, path.name)
