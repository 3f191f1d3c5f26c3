"""Private files written atomically: the one way the app puts state and settings on disk.

A crash leaves the old file or the new one, never a torn one (temporary file beside the
target, fsync, rename, fsync of the directory), and nothing private is ever readable by
others, not even for an instant (created with its final mode; directories 0700).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` and any missing parents 0700 (``mkdir(parents=True)`` would give
    parents the umask's mode: world-writable under umask 0); tighten it if it was loosened."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        os.chmod(directory, 0o700)


def write_atomic(target: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``target`` with ``data``: temporary file (created with ``mode``), fsync,
    rename, fsync of the directory. Raises OSError if the disk refuses."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_document(
    path: Path, *, what: str, version: int, error: type[Exception]
) -> dict[str, Any]:
    """A JSON object with ``"schema_version": version`` from ``path``.

    :raises FileNotFoundError: no such file.
    :raises error: unreadable, not JSON, not an object, or another version; the message is
        one line naming ``what`` ("state file", "settings file") and the path.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror}") from err
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise error(f"{what} {path} is not valid JSON ({err})") from err
    if not isinstance(document, dict):
        raise error(f"{what} {path} does not hold a {what.split()[0]} object")
    found = document.get("schema_version")
    if found != version:
        raise error(f"{what} {path} has version {found!r}, expected {version}")
    return document


def set_aside(path: Path) -> Path:
    """Move an unusable file to ``NAME.bad-TIMESTAMP`` (kept for inspection); returns the new
    path. :raises OSError: it could not be moved."""
    kept = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, kept)
    return kept
