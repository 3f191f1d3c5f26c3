"""The PyInstaller bundle under Xvfb (packaging/check-pyinstaller.sh), on request only.

Building the bundle takes a minute or two and some 180 MB, so it does not run on every test
run: set ``VDAGENT_BRIDGE_PYINSTALLER=1`` (or run the script itself). The script builds the
bundle if there is none, shows its windows with ``--demo``, checks them and the exit status.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.environ.get("VDAGENT_BRIDGE_PYINSTALLER") != "1",
                    reason="slow: set VDAGENT_BRIDGE_PYINSTALLER=1 to build and run the bundle")
@pytest.mark.timeout(900)
def test_the_bundle_shows_its_windows_under_xvfb(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(REPO / "packaging" / "check-pyinstaller.sh"),
                             str(tmp_path)], capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-pyinstaller: OK:" in result.stdout
    assert (tmp_path / "screenshot.png").stat().st_size > 0
    windows = (tmp_path / "windows.txt").read_text()
    assert '"Demo guest — vdagent-bridge"' in windows
