"""Clipboard latency through the whole app: the Wayland backend (headless sway, Qt's
data-control) against X11 (Xvfb), in one run, through the real guest agent.

    .venv/bin/python benchmarks/wayland_clipboard.py [--runs 5]

For each desktop the app runs as a session starts it, connected to the real spice-vdagentd
and spice-vdagent (tests/system/agent_stack.py). Two figures per size (1 KiB and 1 MiB):

- **host → guest**: from the host application owning its copy (``wl-copy`` / ``xclip``) to
  the first guest paste (``xclip -o`` in the guest) that returns it;
- **guest → host**: from the guest's xclip owning its copy to the first host paste
  (``wl-paste`` / ``xclip -o``) that returns it.

Both sides are found by polling with a new paste process each time, the same way on both
desktops, so the ratio is fair even though each figure includes a process start. Median of
``--runs``. Target (issue 14): the Wayland path within 1.2x of X11.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "wayland"), str(ROOT / "tests" / "system"), str(ROOT)]

from agent_stack import AgentStack, GuestCommandError  # noqa: E402
from compositors import Compositor, Sway  # noqa: E402
from session import SessionApp, WaylandHost  # noqa: E402
from tests.xvfb import private_xvfb  # noqa: E402

SIZES = {"1 KiB": 1024, "1 MiB": 1024 * 1024}


class X11Desktop(Compositor):
    """An Xvfb standing in as the desktop: the same interface the app helpers use."""

    kind = "xvfb"

    def client_env(self, **extra: str) -> dict[str, str]:
        env = super().client_env(**extra)
        env.pop("WAYLAND_DISPLAY", None)
        env["XDG_SESSION_TYPE"] = "x11"
        return env


class X11Host:
    """xclip on the X11 desktop, in WaylandHost's shape."""

    def __init__(self, desktop: X11Desktop, workdir: Path) -> None:
        self.desktop = desktop
        self.dir = workdir
        self.serving: list[subprocess.Popen[bytes]] = []

    def copy(self, data: bytes) -> None:
        log = self.dir / f"xclip-{len(self.serving)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["xclip", "-selection", "clipboard", "-i", "-quiet"],
                                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                    env=self.desktop.client_env())
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
        self.serving.append(proc)
        while b"Waiting for selection requests" not in log.read_bytes():
            time.sleep(0.001)

    def paste(self) -> bytes | None:
        result = subprocess.run(["xclip", "-selection", "clipboard", "-o"], capture_output=True,
                                env=self.desktop.client_env(), timeout=10)
        return result.stdout if result.returncode == 0 else None

    def close(self) -> None:
        for proc in self.serving:
            proc.terminate()
            proc.wait(5)


def first(read: Callable[[], bytes | None], expected: bytes, timeout: float = 20) -> float:
    """Seconds until ``read`` returns ``expected``, polled back to back."""
    start = time.perf_counter()
    while read() != expected:
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the copy did not cross")
    return time.perf_counter() - start


def guest_read(stack: AgentStack) -> Callable[[], bytes | None]:
    def read() -> bytes | None:
        try:
            return stack.guest_paste(timeout=10)
        except GuestCommandError:
            return None
    return read


def measure(host: WaylandHost | X11Host, stack: AgentStack, runs: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, size in SIZES.items():
        to_guest, to_host = [], []
        for run in range(runs):
            data = bytes(65 + (i + run) % 26 for i in range(size))
            host.copy(data)
            to_guest.append(first(guest_read(stack), data))
            back = data[::-1]
            stack.guest_copy(back)
            to_host.append(first(host.paste, back))
        figures[f"host → guest, {label}"] = statistics.median(to_guest)
        figures[f"guest → host, {label}"] = statistics.median(to_host)
    return figures


def run_wayland(work: Path, runs: int) -> dict[str, float]:
    sway = Sway(work / "sway")
    (work / "sway").mkdir()
    sway.start()
    stack = AgentStack().start()
    app = host = None
    try:
        app = SessionApp(sway, stack, work / "wl-app", [])
        assert "clipboard backend: wayland-data-control" in app.log()
        sway.focus_nothing()
        host = WaylandHost(sway, work / "wl-host")
        return measure(host, stack, runs)
    finally:
        for part in (host, app):
            if part is not None:
                part.close()
        stack.close()
        sway.close()


def run_x11(work: Path, runs: int) -> dict[str, float]:
    (work / "x11").mkdir()
    with private_xvfb(work / "x11", "1280x800x24") as display:
        desktop = X11Desktop(work / "x11")
        desktop.x_display = display
        stack = AgentStack().start()
        app = host = None
        try:
            app = SessionApp(desktop, stack, work / "x11-app", [])
            assert "clipboard backend: x11" in app.log()
            host = X11Host(desktop, work / "x11")
            return measure(host, stack, runs)
        finally:
            for part in (host, app):
                if part is not None:
                    part.close()
            stack.close()
            desktop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vdb-bench-wl-") as tmp:
        work = Path(tmp)
        x11 = run_x11(work, args.runs)
        wayland = run_wayland(work, args.runs)
    print(f"{'figure':<22} {'X11 (Xvfb)':>12} {'Wayland (sway)':>15} {'ratio':>7}")
    worst = 0.0
    for name, reference in x11.items():
        ratio = wayland[name] / reference
        worst = max(worst, ratio)
        print(f"{name:<22} {reference * 1000:>9.1f} ms {wayland[name] * 1000:>12.1f} ms "
              f"{ratio:>6.2f}x")
    print(f"worst ratio {worst:.2f}x (target: at most 1.2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
