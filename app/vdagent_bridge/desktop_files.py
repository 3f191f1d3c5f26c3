"""Install the launcher, icons and metainfo into the user's XDG data directory, and take them out.

A pip or pipx install puts the program in a virtual environment and nothing where the desktop
looks for applications; ``vdagent-bridge --install-desktop-files`` copies the shipped files to
``$XDG_DATA_HOME`` (``~/.local/share`` when unset or relative, as the XDG base directory spec
says)::

    applications/<id>.desktop            Exec= the launcher that ran the install (absolute,
                                         so a pipx venv works without PATH)
    icons/hicolor/scalable/apps/<id>.svg
    icons/hicolor/NxN/apps/<id>.png      one per rendition
    metainfo/<id>.metainfo.xml

``--uninstall-desktop-files`` removes exactly those, and the directories the install created
if they are empty again. Which directories it created cannot be told afterwards (an empty
``icons/hicolor/16x16/apps`` may have been the user's), so the install records them, with the
files, in a manifest (``vdagent-bridge/desktop-files.json`` in the data directory) that the
uninstall removes too. Without a manifest (deleted, or never written) the uninstall removes
the files only. Installing again is harmless: same files, same manifest.

Caches: ``update-desktop-database`` and ``gtk-update-icon-cache`` are run only to refresh a
cache that is already there (a stale cache can hide the new entry); they never create one,
since a cache made by the install would be left behind by the uninstall, and none is needed:
the entry declares no MIME types and icon lookups without a cache read the directory. Their
failures are logged, never fatal.

Files are written atomically (temporary file, rename), 0644. No Qt: this runs without a
display.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import assets
from .state.settings import exec_line

log = logging.getLogger(__name__)

#: Where the install records what it wrote and created, relative to the data directory.
MANIFEST = Path("vdagent-bridge", "desktop-files.json")


class DesktopFilesError(Exception):
    """The files cannot be installed or removed; the message is one readable line."""


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or relative."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base)


def launcher_command() -> list[str]:
    """The command that starts this same installation, for the entry's ``Exec``.

    The program that is running when it is the ``vdagent-bridge`` launcher (the bundle's
    executable, or the script pip/pipx made — by the path it was started with, so a pipx
    symlink in ``~/.local/bin`` stays the link); else the one on PATH; else this Python with
    ``-m vdagent_bridge``.
    """
    if getattr(sys, "frozen", False):
        return [os.path.abspath(sys.executable)]
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "vdagent-bridge" and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    found = shutil.which("vdagent-bridge")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "vdagent_bridge"]


@dataclass(frozen=True, slots=True)
class _File:
    relative: Path
    content: bytes


def _files(command: Sequence[str]) -> list[_File]:
    """What an install writes, relative to the data directory."""
    app_id = assets.APP_ID
    try:
        desktop = assets.desktop_file().read_text("utf-8")
        files = [
            _File(Path("applications", f"{app_id}.desktop"),
                  _with_exec(desktop, command).encode("utf-8")),
            _File(Path("icons", "hicolor", "scalable", "apps", f"{app_id}.svg"),
                  assets.app_icon_svg().read_bytes()),
        ]
        files += [_File(Path("icons", "hicolor", f"{n}x{n}", "apps", f"{app_id}.png"),
                        assets.app_icon_png(n).read_bytes()) for n in assets.APP_ICON_SIZES]
        files.append(_File(Path("metainfo", f"{app_id}.metainfo.xml"),
                           assets.metainfo_file().read_bytes()))
    except (OSError, assets.ResourcesNotFound) as err:
        raise DesktopFilesError(f"the shipped desktop files are missing: {_reason(err)}") from err
    return files


def _with_exec(desktop: str, command: Sequence[str]) -> str:
    """The shipped entry with its ``Exec`` replaced by ``command``."""
    lines = [f"Exec={exec_line(command)}" if line.startswith("Exec=") else line
             for line in desktop.splitlines()]
    return "\n".join(lines) + "\n"


def install(home: Path, command: Sequence[str]) -> list[Path]:
    """Write the desktop files under ``home`` (a data directory); returns the files written.

    :raises DesktopFilesError: a file cannot be written (the message names it).
    """
    files = _files(command)
    manifest = _read_manifest(home)
    created = list(manifest.get("dirs", []))
    targets = [f.relative for f in files] + [MANIFEST]
    for relative in targets:
        for parent in reversed(relative.parents[:-1]):  # outermost first, "." excluded
            if not (home / parent).is_dir() and str(parent) not in created:
                created.append(str(parent))
    written = []
    try:
        home.mkdir(parents=True, exist_ok=True)
        for file in files:
            _write(home / file.relative, file.content)
            written.append(home / file.relative)
        recorded = sorted(set(manifest.get("files", [])) | {str(f.relative) for f in files})
        _write(home / MANIFEST, json.dumps({"files": recorded, "dirs": created},
                                           indent=1).encode("utf-8"))
        written.append(home / MANIFEST)
    except OSError as err:
        raise DesktopFilesError(f"cannot install the desktop files: {_reason(err)}") from err
    _refresh_caches(home)
    return written


def uninstall(home: Path) -> list[Path]:
    """Remove what :func:`install` wrote under ``home``, and the directories it created that
    are empty again; returns the files removed. Removing what is not there is fine.

    :raises DesktopFilesError: a file cannot be removed (the message names it).
    """
    manifest = _read_manifest(home)
    try:
        known = {str(f.relative) for f in _files(["vdagent-bridge"])}
    except DesktopFilesError:
        known = set()  # a broken install can still take out what its manifest lists
    relatives = sorted(known | set(manifest.get("files", []))) + [str(MANIFEST)]
    removed = []
    try:
        for relative in relatives:
            path = home / relative
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path)
        # Deepest first, and only what the install created and is empty now.
        for relative in sorted(manifest.get("dirs", []), key=lambda d: -len(Path(d).parts)):
            with contextlib.suppress(OSError):  # not empty (someone else's files) or gone
                (home / relative).rmdir()
    except OSError as err:
        raise DesktopFilesError(f"cannot remove the desktop files: {_reason(err)}") from err
    _refresh_caches(home)
    return removed


def _read_manifest(home: Path) -> dict[str, list[str]]:
    """The manifest of an earlier install; empty when there is none or it is unusable (then
    only the known files are removed, and no directory)."""
    try:
        data = json.loads((home / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    result = {}
    for key in ("files", "dirs"):
        entries = data.get(key, [])
        safe = [e for e in entries if isinstance(e, str) and _inside(e)] \
            if isinstance(entries, list) else []
        result[key] = safe
    return result


def _inside(relative: str) -> bool:
    """A manifest entry that stays inside the data directory (never ``..`` or absolute)."""
    path = Path(relative)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _refresh_caches(home: Path) -> None:
    """Refresh the desktop-entry and icon caches that exist already (module docstring)."""
    jobs = [
        (home / "applications" / "mimeinfo.cache",
         ["update-desktop-database", "-q", str(home / "applications")]),
        (home / "icons" / "hicolor" / "icon-theme.cache",
         ["gtk-update-icon-cache", "-q", "-f", "-t", str(home / "icons" / "hicolor")]),
    ]
    for cache, command in jobs:
        if not cache.is_file() or shutil.which(command[0]) is None:
            continue
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("%s failed (the desktop may show the old entry until it rescans): %s",
                        command[0], err)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err)
