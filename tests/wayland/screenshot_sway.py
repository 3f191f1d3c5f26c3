"""Screenshots of the app on headless sway (grim): its window, whose first line is the same
note as the tray menu's, beside the demo guest's window. Writes docs/screenshots/wayland-sway.png.

    .venv/bin/python tests/wayland/screenshot_sway.py [OUT.png]

Needs sway, XWayland and grim (tests/run.sh installs them); stops what it starts.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

from compositors import Sway  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs/screenshots/wayland-sway.png")
    with tempfile.TemporaryDirectory(prefix="vdb-shot-") as tmp:
        work = Path(tmp)
        sway = Sway(work).start()
        app = None
        try:
            sway.swaymsg("workspace", "number", "2")  # away from the focus window
            env = sway.client_env(HOME=str(work), PYTHONPATH=str(ROOT / "app"))
            with open(work / "app.log", "wb") as log:
                app = subprocess.Popen(
                    [sys.executable, "-m", "vdagent_bridge", "--demo", "--state-dir",
                     str(work / "state")], env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20
            while "vdagent-bridge" not in sway.windows() or "Demo guest" not in sway.windows():
                assert time.monotonic() < deadline, (work / "app.log").read_text()
                time.sleep(0.2)
            time.sleep(1.5)  # the first frames
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["grim", str(out)], env=sway.client_env(), check=True, timeout=20)
            print(out)
        finally:
            if app is not None:
                app.terminate()
                app.wait(15)
            sway.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
