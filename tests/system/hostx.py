"""The host's desktop in the end-to-end tests: a private Xvfb display, and xclip on it playing
the host's applications (copy, paste). The guest's side is an :class:`AgentStack`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_stack import find_binary, missing_binaries

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
    log = workdir / "xvfb.log"
    rfd, wfd = os.pipe()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [find_binary("Xvfb") or "Xvfb", "-displayfd", str(wfd), "-screen", "0",
             screen, "-nolisten", "tcp", "-noreset"],
            pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
        )
    os.close(wfd)
    try:
        number = b""
        deadline = time.monotonic() + TIMEOUT
        while not number.endswith(b"\n"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"host Xvfb did not start: {log.read_text(errors='replace')}")
            chunk = os.read(rfd, 16)
            if not chunk:
                raise RuntimeError(f"host Xvfb exited: {log.read_text(errors='replace')}")
            number += chunk
        yield f":{int(number)}"
    finally:
        os.close(rfd)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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
