"""The whole app against a REAL QEMU VM, as a user runs it: ``vdagent-bridge --vm … --endpoint
unix:AGENT --qmp unix:QMP --pointer-surface`` on a host Xvfb. It connects to the agent inside
the guest, and its pointer surface shows the guest's screen through the QMP monitor it also
follows migrations with. The screenshot is looked at by the test (the surface is not the
placeholder: it has the console's black and SeaBIOS's text) and, with
``VDAGENT_SCREENSHOTS=1``, kept for the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from vm import Vm

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "system"))  # the host display helpers

from hostx import require, xvfb  # noqa: E402

pytestmark = pytest.mark.qemu

TIMEOUT = 60.0
SCREENSHOT = ROOT / "docs" / "screenshots" / "pointer-surface-qemu.png"


def wait_log(log: Path, pattern: str, proc: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = log.read_text(errors="replace")
        if (match := re.search(pattern, text)) is not None:
            return match
        assert proc.poll() is None, f"the app exited:\n{text}"
        assert time.monotonic() < deadline, f"no {pattern!r} in the app's log:\n{text}"
        time.sleep(0.1)


def test_the_app_shows_the_guest_screen_of_a_real_vm_on_its_pointer_surface(
    vm_factory: Callable[..., Vm], tmp_path: Path
) -> None:
    require(("Xvfb", "xdotool", "import", "convert"))
    vm = vm_factory(extra_args=["-device", "VGA"])
    home = tmp_path / "home"
    runtime_dir = tmp_path / "runtime"
    for directory in (home, runtime_dir):
        directory.mkdir(mode=0o700)
    with xvfb(tmp_path, screen="1100x800x24") as display:
        env = {k: v for k, v in os.environ.items()
               if k not in ("WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS")}
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(home),
                   XDG_RUNTIME_DIR=str(runtime_dir), XDG_CONFIG_HOME=str(home / ".config"),
                   PYTHONPATH=str(ROOT / "app"))
        log = tmp_path / "app.log"
        with open(log, "wb") as out:
            app = subprocess.Popen(
                [sys.executable, "-m", "vdagent_bridge", "--vm", "debian",
                 "--endpoint", f"unix:{vm.agent_socket}", "--qmp", f"unix:{vm.qmp_socket}",
                 "--pointer-surface", "--no-tray", "--state-dir", str(tmp_path / "state"),
                 "--log-level", "info"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        try:
            wait_log(log, r"debian: connected to unix:", app)
            size = wait_log(log, r"debian: showing the guest screen \((\d+)×(\d+)\)", app)
            width, height = int(size.group(1)), int(size.group(2))
            assert 320 <= width <= 2560 and 200 <= height <= 1600
            window = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--name",
                 "^debian — pointer — vdagent-bridge$"],
                capture_output=True, text=True, env=env, check=True,
            ).stdout.split()[0]
            subprocess.run(["xdotool", "windowmove", "--sync", window, "0", "0"], env=env,
                           check=True)
            time.sleep(1.0)  # a refresh or two after the move
            shot = tmp_path / "surface.png"
            subprocess.run(["import", "-window", window, str(shot)], env=env, check=True)
            # What the surface shows is the guest's text console: mostly black, with text.
            histogram = subprocess.run(
                ["convert", str(shot), "-format", "%c", "histogram:info:-"],
                capture_output=True, text=True, check=True,
            ).stdout
            counts = {line.split(":")[1].split()[0]: int(line.split(":")[0])
                      for line in histogram.splitlines() if ":" in line}
            total = sum(counts.values())
            black = sum(n for colour, n in counts.items()
                        if colour.replace(" ", "") in ("(0,0,0)", "(0,0,0,255)"))
            assert black > total * 0.5, "the surface does not show the guest console"
            assert len(counts) > 2, "no text on the guest console"
            if os.environ.get("VDAGENT_SCREENSHOTS"):
                SCREENSHOT.write_bytes(shot.read_bytes())
        finally:
            app.terminate()
            assert app.wait(15) == 0, log.read_text(errors="replace")
