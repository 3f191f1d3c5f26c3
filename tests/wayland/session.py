"""The app as a Wayland session starts it, and the host's Wayland applications around it.

:class:`SessionApp` runs ``python -m vdagent_bridge`` with the session's environment as a
desktop's launcher passes it: ``WAYLAND_DISPLAY`` and XWayland's ``DISPLAY`` both set, no
``QT_QPA_PLATFORM``, no ``QT_WAYLAND_USE_DATA_CONTROL``; the app chooses. :class:`WaylandHost`
plays the host's applications with wl-clipboard (``wl-copy``, ``wl-paste``, a background
``wl-paste --watch`` as a clipboard manager runs), a Qt copier for what wl-copy cannot offer
(several MIME types at once: a password manager's copy), and xclip on XWayland.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from agent_stack import AgentStack
from compositors import Compositor

ROOT = Path(__file__).resolve().parents[2]
COPIER = Path(__file__).with_name("copier.py")
TIMEOUT = 20.0
#: How long something that must not cross is given to (wrongly) cross.
SETTLE = 1.0


def png(width: int = 5, height: int = 3) -> bytes:
    """A small valid PNG (RGB), made by hand as an application would copy one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\0" + b"".join(bytes((x * 50, y * 80, 200)) for x in range(width))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def png_size(data: bytes | None) -> tuple[int, int] | None:
    """(width, height) of a PNG, None if ``data`` is not one."""
    if not data or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class SessionApp:
    """``vdagent-bridge --vm guest --endpoint unix:…`` in the compositor's session."""

    def __init__(self, compositor: Compositor, stack: AgentStack, workdir: Path,
                 args: list[str]) -> None:
        workdir.mkdir(parents=True)
        home = workdir / "home"
        home.mkdir(mode=0o700)
        self.env = compositor.client_env(
            HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"), XDG_STATE_HOME=str(home / ".local/state"),
            PYTHONPATH=str(ROOT / "app"))
        self.log_path = workdir / "app.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vdagent_bridge", "--vm", "guest",
                 "--endpoint", f"unix:{stack.socket_path}", "--state-dir",
                 str(workdir / "state"), "--log-level", "info", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        self.wait_log(r"guest: connected to unix:")
        time.sleep(0.3)  # the caps exchange

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, since: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            match = re.search(pattern, self.log()[since:])
            if match is not None:
                return match
            assert self.proc.poll() is None, f"the app exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in the app's log:\n{self.log()}"
            time.sleep(0.05)

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class WaylandHost:
    """The host's applications on the compositor: wl-clipboard, a Qt copier, xclip."""

    def __init__(self, compositor: Compositor, workdir: Path) -> None:
        self.compositor = compositor
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serving: list[subprocess.Popen[bytes]] = []
        self._watches = 0

    def _serve(self, argv: list[str], data: bytes, **extra: str) -> subprocess.Popen[bytes]:
        log = self.dir / f"serve-{len(self.serving)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    env=self.compositor.client_env(**extra))
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
        self.serving.append(proc)
        return proc

    def copy(self, data: bytes, mime: str | None = None, primary: bool = False) -> None:
        """``wl-copy`` in the foreground (tracked; it serves until another copy replaces
        it); returns once the compositor has its selection."""
        argv = ["wl-copy", "--foreground"] + (["--primary"] if primary else [])
        argv += ["--type", mime] if mime else []
        proc = self._serve(argv, data)
        until(lambda: proc.poll() is not None or self.paste(mime, primary) == data,
              "wl-copy's selection", timeout=10)
        assert proc.poll() is None, f"wl-copy exited: {(self.dir / 'serve.log')}"

    def copy_secret(self, text: str) -> None:
        """A password manager's copy (KeePassXC's shape): the text, and the MIME type
        ``x-kde-passwordManagerHint`` = ``secret``, offered together by one client."""
        proc = self._serve([sys.executable, str(COPIER), "x-kde-passwordManagerHint=secret"],
                           text.encode(), QT_QPA_PLATFORM="wayland",
                           QT_WAYLAND_USE_DATA_CONTROL="1")
        until(lambda: proc.poll() is not None or self.paste() == text.encode(),
              "the password manager's selection", timeout=10)
        assert proc.poll() is None, "the copier exited"

    def copy_primary(self, data: bytes) -> None:
        """A PRIMARY selection (text selected in an application). Through the Qt copier:
        KWin 5.27's wl-copy refuses ``--primary`` while no PRIMARY exists yet."""
        proc = self._serve([sys.executable, str(COPIER), "--primary"], data,
                           QT_QPA_PLATFORM="wayland", QT_WAYLAND_USE_DATA_CONTROL="1")
        until(lambda: proc.poll() is not None or self.paste(primary=True) == data,
              "the PRIMARY selection", timeout=10)
        assert proc.poll() is None, "the copier exited"

    def paste(self, mime: str | None = None, primary: bool = False,
              timeout: float = 5) -> bytes | None:
        """What a Wayland application pasting gets (``wl-paste``); None when nothing."""
        argv = ["wl-paste", "--no-newline"] + (["--primary"] if primary else [])
        argv += ["--type", mime] if mime else []
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                    env=self.compositor.client_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return result.stdout if result.returncode == 0 else None

    def watch(self, primary: bool = False) -> Callable[[], list[bytes]]:
        """A background ``wl-paste --watch`` (as a clipboard manager): returns a function
        listing what it saw, each new selection's text."""
        self._watches += 1
        folder = self.dir / f"watch-{self._watches}"
        folder.mkdir()
        argv = ["wl-paste", "--no-newline"] + (["--primary"] if primary else [])
        argv += ["--watch", "sh", "-c", f'cat > "{folder}/$(date +%s%N)"']
        log = self.dir / f"watch-{self._watches}.log"
        with open(log, "wb") as out:
            self.serving.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.compositor.client_env()))

        def seen() -> list[bytes]:
            return [path.read_bytes() for path in sorted(folder.iterdir())]

        return seen

    def x11_copy(self, data: bytes) -> None:
        """An X11 application's copy, under XWayland (xclip keeps serving)."""
        log = self.dir / f"xclip-{len(self.serving)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["xclip", "-selection", "clipboard", "-i", "-quiet"],
                                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                    env=self.compositor.client_env())
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
        self.serving.append(proc)
        until(lambda: b"Waiting for selection requests" in log.read_bytes(), "xclip")

    def close(self) -> None:
        for proc in self.serving:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def environment_of(pid: int) -> dict[str, str]:
    """A running process's environment, as it was started."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                if "=" in item)

