"""Conversation state on disk: one JSON file per VM, written atomically, private to the user.

Why on disk: a live migration may move the VM to another host, where a second instance of the
app takes over the conversation (export here, import there), and a state file tells a restarted
app what the host owned. The file holds the engine snapshot (caps, serials, ownership, pending
requests, partial input, queued output), which may contain clipboard bytes: it is created
0600 in a 0700 directory, never world-readable even for an instant.

Writes are atomic: a temporary file in the same directory, fsync, rename over the old file,
fsync of the directory; a crash leaves either the old or the new state, never a torn one.
Reads never fail the app: a missing file is "no state", and a file that does not parse or has
an unknown version is moved aside (``NAME.bad-TIMESTAMP``, kept for inspection) and reported,
and the VM starts fresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import ensure_private_dir, read_document, set_aside, write_atomic

log = logging.getLogger(__name__)

#: Version of the file layout (not of the engine snapshot inside, which has its own).
SCHEMA_VERSION = 1

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


class StoreError(Exception):
    """A state file that cannot be used; the message is one readable line."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """A VM's state read from disk."""

    vm: str
    saved_at: float
    session: dict[str, Any]
    #: The conversation the VM was saved with (``virsh save``, managed save), kept for its
    #: restore (runtime/restore.py); None when the VM was not saved while we talked to it.
    saved_with: str | None = None


def _file_name(vm: str) -> str:
    """A file name for ``vm`` that cannot escape the directory or collide."""
    if _SAFE_NAME.fullmatch(vm) and vm not in (".", ".."):
        return f"{vm}.json"
    return "%" + vm.encode("utf-8").hex() + ".json"


class StateStore:
    """Per-VM state files under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, vm: str) -> Path:
        return self.directory / _file_name(vm)

    def save(self, vm: str, session: dict[str, Any], *, saved_with: str | None = None) -> Path:
        """Write ``vm``'s state atomically. Raises OSError if the disk refuses."""
        ensure_private_dir(self.directory)
        target = self.path(vm)
        write_atomic(target, _document(vm, session, saved_with))
        return target

    def load(self, vm: str) -> Loaded | None:
        """``vm``'s state, or None when there is none or it was unusable (then moved aside)."""
        path = self.path(vm)
        try:
            return self.read(path, expect_vm=vm)
        except FileNotFoundError:
            return None
        except StoreError as err:
            kept = self._set_aside(path)
            log.error("%s; starting %s fresh (the bad file is kept as %s)", err, vm, kept)
            return None

    def read(self, path: str | os.PathLike[str], *, expect_vm: str | None = None) -> Loaded:
        """Parse a state file (ours, or one exported elsewhere).

        :raises FileNotFoundError: no such file.
        :raises StoreError: unreadable, not JSON, another version or another VM's state.
        """
        document = read_document(
            Path(path), what="state file", version=SCHEMA_VERSION, error=StoreError
        )
        vm = document.get("vm")
        saved_at = document.get("saved_at")
        session = document.get("session")
        if not isinstance(vm, str) or not isinstance(saved_at, (int, float)):
            raise StoreError(f"state file {path} lacks its VM name or time")
        if not isinstance(session, dict):
            raise StoreError(f"state file {path} lacks the session state")
        if expect_vm is not None and vm != expect_vm:
            raise StoreError(f"state file {path} belongs to VM {vm!r}, not {expect_vm!r}")
        saved_with = document.get("saved_with")
        if saved_with is not None and not isinstance(saved_with, str):
            raise StoreError(f"state file {path}: saved_with is not a string")
        return Loaded(vm, float(saved_at), session, saved_with)

    def set_aside(self, vm: str) -> Path:
        """Move ``vm``'s state file aside (kept for inspection); the VM starts fresh."""
        return self._set_aside(self.path(vm))

    def _set_aside(self, path: Path) -> Path:
        try:
            return set_aside(path)
        except OSError as err:
            log.error("cannot move %s aside: %s", path, err.strerror)
            return path

    def delete(self, vm: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(vm))

    def export(self, vm: str, destination: str | os.PathLike[str]) -> Path:
        """Write ``vm``'s current state to ``destination`` (atomically, 0600).

        :raises StoreError: there is no usable state for ``vm``.
        """
        loaded = self.load(vm)
        if loaded is None:
            raise StoreError(f"no saved state for VM {vm!r} in {self.directory}")
        target = Path(destination)
        write_atomic(target, _document(vm, loaded.session))
        return target

    def import_(self, source: str | os.PathLike[str], vm: str | None = None) -> Loaded:
        """Take over a state exported elsewhere, as ``vm`` (default: the VM it names).

        :raises StoreError: the file is unusable; nothing is changed then.
        :raises FileNotFoundError: no such file.
        """
        loaded = self.read(source)
        name = vm or loaded.vm
        self.save(name, loaded.session)
        return Loaded(name, loaded.saved_at, loaded.session)


def _document(vm: str, session: dict[str, Any], saved_with: str | None = None) -> bytes:
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "vm": vm,
        "saved_at": time.time(),
        "session": session,
    }
    if saved_with is not None:
        document["saved_with"] = saved_with
    return json.dumps(document, separators=(",", ":")).encode("utf-8")
