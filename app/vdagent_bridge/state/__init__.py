"""State kept on disk: paths, and the per-VM conversation store. No Qt here."""

from __future__ import annotations

from .paths import AppPaths
from .store import Loaded, StateStore, StoreError

__all__ = ["AppPaths", "Loaded", "StateStore", "StoreError"]
