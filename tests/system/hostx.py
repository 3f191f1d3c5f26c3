"""The host's desktop in the end-to-end tests: a private Xvfb display, xclip on it playing the
host's applications (copy, paste), and host-side test apps driven by JSON lines. The guest's
side is an :class:`AgentStack`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_stack import find_binary, missing_binaries

from tests.xvfb import private_xvfb

TIMEOUT = 15.0


def require(names: tuple[str, ...]) -> None:
    """Skip (on a developer's machine) or fail (under CI) when a program is missing."""
    missing = missing_binaries(names)
    if not missing:
        return
    message = f"missing programs for this test: {', '.join(missing)}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def xvfb(workdir: Path, screen: str = "800x600x24") -> Iterator[str]:
    """A private Xvfb for the host side, stopped on exit; its display name (``:N``)."""
    require(("Xvfb", "xclip"))
    with private_xvfb(workdir, screen, find_binary("Xvfb")) as display:
        yield display


class HostX:
    """xclip on the host display, standing for the host's applications."""

    def __init__(self, display: str, workdir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("WAYLAND_DISPLAY", "XAUTHORITY")}
        self.env["DISPLAY"] = display
        self.dir = workdir
        self.copies: list[subprocess.Popen[bytes]] = []

    def copy(self, data: bytes, selection: str = "clipboard",
             target: str = "UTF8_STRING") -> None:
        """Copy ``data`` on the host (xclip keeps serving until another owner takes over)."""
        log = self.dir / f"host-xclip-{len(self.copies)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [find_binary("xclip") or "xclip", "-selection", selection, "-t", target,
                 "-i", "-quiet"],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=self.env,
            )
        self.copies.append(popen)
        assert popen.stdin is not None
        popen.stdin.write(data)
        popen.stdin.close()
        deadline = time.monotonic() + TIMEOUT
        while b"Waiting for selection requests" not in log.read_bytes():
            assert popen.poll() is None, log.read_bytes()
            assert time.monotonic() < deadline, "host xclip did not take the selection"
            time.sleep(0.005)

    def paste(self, selection: str = "clipboard", target: str = "UTF8_STRING") -> bytes | None:
        """What a host application pasting gets; None when the selection offers nothing."""
        result = subprocess.run(
            [find_binary("xclip") or "xclip", "-selection", selection, "-t", target, "-o"],
            stdin=subprocess.DEVNULL, capture_output=True, env=self.env, timeout=TIMEOUT,
        )
        return result.stdout if result.returncode == 0 else None

    def close(self) -> None:
        for popen in self.copies:
            if popen.poll() is None:
                popen.terminate()
            try:
                popen.wait(5)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)


def host_env(display: str, workdir: Path) -> dict[str, str]:
    """The environment of a Qt program on the host display: xcb, a private runtime dir, none
    of the developer's own Wayland, X authority or session bus."""
    runtime_dir = workdir / "xdg-runtime"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS")}
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(runtime_dir))
    return env


class ScriptedApp:
    """A host-side test app in its own process (a process has one QApplication, and the unit
    tests of the same pytest run have made theirs, offscreen), given its configuration as
    JSON in argv[1], driven by ``{"cmd": ...}`` lines on stdin, answering with JSON lines on
    stdout (``{"ready": ...}`` first, ``{"reply": CMD, ...}`` per command)."""

    def __init__(self, script: Path, config: dict[str, Any], display: str,
                 workdir: Path) -> None:
        self.display = display
        self.name = script.stem
        self.stderr_path = workdir / f"{self.name}.log"
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                env=host_env(display, workdir),
            )
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-out",
                                        daemon=True)
        self._reader.start()
        self.ready = self.wait(lambda line: bool(line.get("ready")), since=0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(raw))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait(self, predicate: Callable[[dict[str, Any]], bool], since: int,
             timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[since:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name}: no matching line; last lines {self.lines[-8:]}; "
                        f"rc={self.proc.poll()}; stderr:\n{self.stderr()}"
                    )
                self._cond.wait(min(remaining, 0.1))

    def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        since = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        self.proc.stdin.flush()
        return self.wait(lambda line: line.get("reply") == cmd, since)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.wait(10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
