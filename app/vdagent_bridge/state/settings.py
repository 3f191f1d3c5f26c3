"""What the user switched in the tray or the window, kept across restarts; the login autostart.

Settings hold only what the user changed, per VM (``to_guest``, ``to_host``, ``primary``,
``pointer``, ``paused``) and the global pause. At start they override the configuration
file's policy for that VM (the command line overrides both, for that run):
config file → settings → command line. A key the user never touched is absent, so a later
edit of the config file still takes effect for it.

The file is ``settings.json`` in the state directory (it is written by the app, not edited by
people; the TOML config stays the user's). It is written at every change, atomically (a
temporary file beside it, fsync, rename, fsync of the directory), 0600 in a 0700 directory.
Reading never fails the app: a missing file is "nothing changed yet"; a file that does not
parse, has another version or wrong values is moved aside (``settings.json.bad-TIMESTAMP``)
and reported, and the app starts from the config.

Autostart follows the XDG autostart spec: a ``.desktop`` file in
``$XDG_CONFIG_HOME/autostart/``; switching it off removes the file (a file with
``Hidden=true`` counts as off).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..assets import APP_ID
from .files import ensure_private_dir, read_document, set_aside, write_atomic

log = logging.getLogger(__name__)

#: Version of the settings file layout.
SCHEMA_VERSION = 1

#: The per-VM switches that persist, all booleans.
VM_KEYS = ("to_guest", "to_host", "primary", "pointer", "paused")

#: Name of the autostart entry: the application id, as the installed launcher's, so that a
#: desktop matches the two up.
AUTOSTART_FILE = f"{APP_ID}.desktop"

#: The autostart entry's name before the app had a reverse-DNS id: still honoured, and
#: removed when the entry is switched on or off.
LEGACY_AUTOSTART_FILE = "vdagent-bridge.desktop"


class SettingsError(Exception):
    """A settings file that cannot be used; the message is one readable line."""


class Settings:
    """The user's switches, saved to ``path`` at every change. See the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.paused = False
        self._vms: dict[str, dict[str, bool]] = {}
        #: A change is not on disk yet (its save failed).
        self.dirty = False
        #: Why the saved settings could not be used (:meth:`load`), for the user; or None.
        self.problem: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Settings:
        """The settings saved at ``path``; empty ones when there are none or they are
        unusable (the file is then moved aside and the problem logged)."""
        settings = cls(path)
        try:
            settings._read()
        except FileNotFoundError:
            pass
        except SettingsError as err:
            try:
                kept = set_aside(settings.path)
            except OSError as move:
                settings.problem = f"{err}; cannot move it aside: {move.strerror}"
            else:
                settings.problem = (f"{err}; starting from the configuration (the bad file is "
                                    f"kept as {kept})")
            log.error("%s", settings.problem)
            settings.paused, settings._vms = False, {}
        return settings

    def _read(self) -> None:
        document = read_document(
            self.path, what="settings file", version=SCHEMA_VERSION, error=SettingsError
        )
        paused = document.get("paused", False)
        vms = document.get("vms", {})
        if not isinstance(paused, bool) or not isinstance(vms, dict):
            raise SettingsError(f"settings file {self.path} has a malformed paused or vms entry")
        parsed: dict[str, dict[str, bool]] = {}
        for name, values in vms.items():
            if not isinstance(values, dict) or not all(
                key in VM_KEYS and isinstance(value, bool) for key, value in values.items()
            ):
                raise SettingsError(f"settings file {self.path}: VM {name!r} has a value that "
                                    f"is not one of {', '.join(VM_KEYS)} = true/false")
            parsed[name] = dict(values)
        self.paused, self._vms = paused, parsed

    # ---------------------------------------------------------------- access

    def vm(self, name: str) -> Mapping[str, bool]:
        """What the user changed for VM ``name`` (a subset of :data:`VM_KEYS`)."""
        return dict(self._vms.get(name, {}))

    def set_vm(self, name: str, **changes: bool) -> None:
        """Record switches of VM ``name`` and save.

        :raises ValueError: a key that is not one of :data:`VM_KEYS`.
        :raises OSError: the file cannot be written (the change is kept in memory).
        """
        unknown = sorted(set(changes) - set(VM_KEYS))
        if unknown:
            raise ValueError(f"unknown VM setting {unknown[0]!r}")
        self._vms.setdefault(name, {}).update(changes)
        self.dirty = True
        self.save()

    def set_paused(self, paused: bool) -> None:
        """Record the global pause and save. :raises OSError: as :meth:`set_vm`."""
        self.paused = paused
        self.dirty = True
        self.save()

    def save(self) -> None:
        """Write the file atomically, 0600. :raises OSError: the disk refused."""
        document = {"schema_version": SCHEMA_VERSION, "paused": self.paused, "vms": self._vms}
        ensure_private_dir(self.path.parent)
        write_atomic(self.path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode())
        self.dirty = False


# -------------------------------------------------------------------- autostart


def autostart_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/autostart`` (``~/.config/autostart`` when it is unset or relative,
    as the XDG base directory spec says)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "autostart"


class Autostart:
    """The XDG autostart entry that starts ``command`` at login."""

    def __init__(self, command: Sequence[str], directory: str | os.PathLike[str] | None = None,
                 ) -> None:
        if not command:
            raise ValueError("the autostart command is empty")
        self.command = list(command)
        self.path = Path(directory if directory is not None else autostart_dir()) / AUTOSTART_FILE

    def enabled(self) -> bool:
        """True when the entry (or its legacy name) exists and is not hidden."""
        return any(_shown(path) for path in (self.path, self._legacy))

    @property
    def _legacy(self) -> Path:
        return self.path.with_name(LEGACY_AUTOSTART_FILE)

    def set_enabled(self, enabled: bool) -> None:
        """Write or remove the entry. :raises OSError: the directory cannot be written."""
        with contextlib.suppress(FileNotFoundError):
            self._legacy.unlink()
        if not enabled:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, self.desktop_entry().encode("utf-8"), mode=0o644)

    def desktop_entry(self) -> str:
        """The ``.desktop`` text (Desktop Entry spec 1.5)."""
        return (
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=vdagent-bridge\n"
            "Comment=Clipboard between this desktop and QEMU VMs (SPICE vdagent host)\n"
            f"Exec={exec_line(self.command)}\n"
            f"Icon={APP_ID}\n"
            "Terminal=false\n"
            "Categories=Utility;\n"
            "X-GNOME-Autostart-enabled=true\n"
        )


def _shown(path: Path) -> bool:
    """The autostart entry at ``path`` exists and is not ``Hidden``."""
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return False
    return not any(line.strip().replace(" ", "") == "Hidden=true" for line in text.splitlines())


def exec_line(command: Sequence[str]) -> str:
    """``command`` quoted for a desktop entry's ``Exec`` key: arguments with reserved
    characters in double quotes (``"``, `````, ``$``, ``\\`` escaped inside), ``%`` doubled,
    and the string-level escaping of backslashes the spec adds on top."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`")
    parts = []
    for arg in command:
        arg = arg.replace("%", "%%")
        if any(c in reserved for c in arg) or not arg:
            inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
            arg = f'"{inner}"'
        parts.append(arg)
    # The Exec value is itself a "string" value, whose backslashes are escaped once more.
    return " ".join(parts).replace("\\", "\\\\")
