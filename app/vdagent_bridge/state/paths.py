"""Where the app keeps its files: the only user of platformdirs.

Everything can be overridden (``--state-dir``, tests), so nothing here runs at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "vdagent-bridge"


@dataclass(frozen=True, slots=True)
class AppPaths:
    """The app's config and state directories."""

    config: Path
    state: Path

    @classmethod
    def default(cls, *, state_dir: str | os.PathLike[str] | None = None) -> AppPaths:
        """The XDG locations (platformdirs), with an optional state directory override."""
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        return cls(
            config=Path(dirs.user_config_dir),
            state=Path(state_dir) if state_dir is not None else Path(dirs.user_state_dir),
        )

    @property
    def vm_state(self) -> Path:
        """Directory of the per-VM conversation files."""
        return self.state / "vms"
