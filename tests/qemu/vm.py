"""Run real QEMU guests with the real SPICE agent inside, and live-migrate them.

Shape of one :class:`Vm` (see docs/test-rigs.md §2)::

    app under test --agent.sock--> QEMU virtserialport com.redhat.spice.0 --> spice-vdagentd
                   --qmp.sock----> QEMU monitor (the app's own)
    this fixture   --qmp-test.sock-> QEMU monitor (migration, status)
                   --cmd.sock-----> virtserialport org.vdagent-bridge.cmd --> guest shell loop

The guest (kernel + initramfs from guest_image.py) runs Xvfb, spice-vdagentd and the GTK
session agent; :meth:`Vm.cmd` runs shell commands in it over the command channel (framing in
guest_init.sh).  A destination VM is started with ``incoming=True`` and then filled by
:func:`migrate`.

Each Vm lives in its own temp dir, tracks the one QEMU process it starts and stops only that.
Plain stdlib (a ~100-line synchronous QMP client instead of qemu.qmp's asyncio one): no engine
imports, so the fixture cannot share bugs with the code under test.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

from guest_image import AGENT_PORT_NAME, CMD_PORT_NAME, GuestImage, find_program

QEMU = "qemu-system-x86_64"
KERNEL_CMDLINE = "console=ttyS0 panic=-1 quiet mitigations=off"
"""``mitigations=off``: a throw-away test guest; the speculation mitigations only cost time
under TCG."""
READY_LINE = "opening vdagent virtio channel"
LOST_CLIENT_LINE = "lost spice client"
INPUT_EVENT = struct.Struct("<qqHHi")
"""``struct input_event`` on x86-64: tv_sec, tv_usec, type, code, value."""

_SELECTIONS = ("clipboard", "primary", "secondary")
_TARGET_RE = re.compile(r"^[A-Za-z0-9_./+-]+$")
_LOG_FILES = {"daemon": "/tmp/vdagentd.log", "agent": "/tmp/vdagent.log", "xvfb": "/tmp/xvfb.log"}


_LIVE: set[Vm] = set()
"""VMs started by this process and not closed yet (closed at exit as a last resort)."""


@atexit.register
def _close_leftovers() -> None:
    """A test process that dies between start() and close() must not leave QEMUs running."""
    for vm in list(_LIVE):
        vm.close()


class VmError(RuntimeError):
    """QEMU failed to start, died, or a wait on the guest timed out."""


class QmpError(RuntimeError):
    """A QMP command returned an error (``.error`` holds QEMU's error object)."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        super().__init__(f"QMP {command}: {error.get('class')}: {error.get('desc')}")
        self.error = error


class GuestCommandError(RuntimeError):
    """A guest command failed (non-zero status with ``check=True``)."""

    def __init__(self, script: str, result: CommandResult) -> None:
        err = result.stderr.decode(errors="replace").strip()
        super().__init__(f"guest command {script!r} failed (rc={result.rc}): {err[-2000:]}")
        self.result = result


class CommandResult(NamedTuple):
    """What :meth:`Vm.cmd` returns; unpacks as ``rc, stdout, stderr``."""

    rc: int
    stdout: bytes
    stderr: bytes


class InputEvent(NamedTuple):
    """One fake-uinput record written by the guest daemon (timestamps dropped: always 0)."""

    type: int
    code: int
    value: int


def missing_programs() -> list[str]:
    """Host programs the VM tests need to *run* (building needs guest_image's list too)."""
    return [name for name in (QEMU,) if find_program(name) is None]


def _short_tempdir(prefix: str) -> Path:
    """A temp dir whose paths fit in sockaddr_un (108 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _popen_own_group(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child in its own process group: a terminal Ctrl-C does not kill it mid-test
    (teardown stops it)."""
    if sys.version_info >= (3, 11):
        return cast(
            "subprocess.Popen[bytes]", subprocess.Popen(list(argv), process_group=0, **kwargs)
        )
    return cast(  # pragma: no cover - older Pythons
        "subprocess.Popen[bytes]", subprocess.Popen(list(argv), preexec_fn=os.setpgrp, **kwargs)
    )


def _sleep_backoff(delay: float) -> float:
    time.sleep(delay)
    return min(delay * 2, 0.05)


# --------------------------------------------------------------------------- QMP
class QmpClient:
    """A minimal synchronous QMP client on a UNIX socket.

    Responses are matched by ``id``; events read on the way are kept in :attr:`events`
    (all of them, in order) for :meth:`wait_event`.  One thread at a time.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._buf = bytearray()
        self._lock = threading.RLock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            greeting = self._read_message(time.monotonic() + timeout)
            if "QMP" not in greeting:
                raise VmError(f"QMP {path}: unexpected greeting {greeting}")
            self.greeting = greeting
            self.execute("qmp_capabilities")
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> QmpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while True:
            newline = self._buf.find(b"\n")
            if newline >= 0:
                line = bytes(self._buf[:newline])
                del self._buf[: newline + 1]
                if line.strip():
                    return cast("dict[str, Any]", json.loads(line))
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"QMP {self.path}: no message in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"QMP {self.path}: connection closed")
            self._buf += data

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Run a command and return its ``return`` value; raises :class:`QmpError`."""
        with self._lock:
            msg_id = f"t{next(self._ids)}"
            msg: dict[str, Any] = {"execute": command, "id": msg_id}
            if arguments:
                msg["arguments"] = arguments
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while True:
                reply = self._read_message(deadline)
                if "event" in reply:
                    self.events.append(reply)
                elif reply.get("id") == msg_id:
                    if "error" in reply:
                        raise QmpError(command, reply["error"])
                    return reply.get("return")

    def poll_events(self, timeout: float = 0.0) -> None:
        """Read the events that arrived, waiting up to ``timeout`` s for the first one."""
        with self._lock:
            deadline = time.monotonic() + max(timeout, 0.001)
            try:
                while True:
                    msg = self._read_message(deadline)
                    if "event" in msg:
                        self.events.append(msg)
                    deadline = time.monotonic() + 0.001  # then only what is already there
            except TimeoutError:
                return

    def wait_event(
        self,
        name: str,
        timeout: float = 10.0,
        match: Callable[[dict[str, Any]], bool] | None = None,
        start: int = 0,
    ) -> dict[str, Any]:
        """First event ``name`` (index >= ``start`` in :attr:`events`) for which ``match``
        is true, reading more events until ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for event in self.events[seen:]:
                if event.get("event") == name and (match is None or match(event)):
                    return event
            seen = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = [e.get("event") for e in self.events]
                raise TimeoutError(f"QMP {self.path}: no {name} event; events so far: {names}")
            self.poll_events(remaining)

    def event_names(self) -> list[str]:
        """Names (MIGRATION events with their status) of every event seen so far."""
        out = []
        for event in self.events:
            name = str(event.get("event"))
            if name == "MIGRATION":
                name += f"({event.get('data', {}).get('status')})"
            out.append(name)
        return out


# --------------------------------------------------------------------------- command channel
class CommandChannel:
    """Host side of the guest command channel (framing documented in guest_init.sh).

    Thread-safe: one request at a time.  A response whose id is not the awaited one (left
    over from a request the host gave up on) is skipped.
    """

    _HEADER = re.compile(rb"\nVDBRSP (\d+) (-?\d+) (\d+) (\d+)\n")

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def connect(self) -> None:
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5.0)
            sock.connect(self.path)
            self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def run(self, script: str, stdin: bytes, timeout: float, wait: float) -> CommandResult:
        """Send ``script`` (killed in the guest after ``timeout`` s) and wait ``wait`` s."""
        with self._lock:
            self.connect()
            assert self.sock is not None
            req_id = next(self._ids)
            body = script.encode()
            guest_timeout = max(1, math.ceil(timeout))
            header = f"VDBREQ {req_id} {len(body)} {len(stdin)} {guest_timeout}\n".encode()
            deadline = time.monotonic() + wait
            self.sock.settimeout(wait)
            self.sock.sendall(header + body + stdin)
            while True:
                match = self._HEADER.search(self._buf)
                if match:
                    got_id, rc = int(match.group(1)), int(match.group(2))
                    out_len, err_len = int(match.group(3)), int(match.group(4))
                    end = match.end() + out_len + err_len
                    if len(self._buf) >= end:
                        out = bytes(self._buf[match.end() : match.end() + out_len])
                        err = bytes(self._buf[match.end() + out_len : end])
                        del self._buf[:end]
                        if got_id == req_id:
                            return CommandResult(rc, out, err)
                        continue  # stale answer to an abandoned request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"guest command {script[:200]!r}: no answer in {wait:.1f} s")
                self.sock.settimeout(remaining)
                data = self.sock.recv(1 << 20)
                if not data:
                    raise EOFError("guest command channel closed (QEMU gone?)")
                self._buf += data


# --------------------------------------------------------------------------- guest shell
class GuestShell:
    """The test guest's shell, over its command channel (guest_init.sh): logs, the X
    clipboard with xclip, fake-uinput records. A subclass says how the command channel is
    reached (:meth:`_run_command`) and names itself (:attr:`name`, :meth:`describe`)."""

    name: str

    def _run_command(self, script: str, stdin: bytes, timeout: float) -> CommandResult:
        raise NotImplementedError

    def describe(self, lines: int = 60, fetch_guest_logs: bool = True) -> str:
        return self.name

    def cmd(
        self,
        script: str,
        timeout: float = 10.0,
        *,
        stdin: bytes = b"",
        check: bool = False,
    ) -> CommandResult:
        """Run ``script`` with ``sh`` in the guest (``DISPLAY=:0``, cwd /root) and return
        ``(rc, stdout, stderr)``.  The guest kills it after ``timeout`` s (rc 137); the host
        gives up 5 s later (TimeoutError).  ``check`` raises :class:`GuestCommandError` on a
        non-zero status."""
        result = self._run_command(script, stdin, timeout)
        if check and result.rc != 0:
            raise GuestCommandError(script, result)
        return result

    def wait_log(
        self, pattern: str, timeout: float = 10.0, which: str = "daemon", count: int = 1
    ) -> None:
        """Wait (polling inside the guest: one round trip) until the log has ``count`` lines
        matching the fixed string ``pattern``."""
        path = _LOG_FILES[which]
        quoted = "'" + pattern.replace("'", "'\\''") + "'"
        polls = max(1, int(timeout / 0.05))
        script = (
            f'n=0; until [ "$(grep -cF -- {quoted} {path} 2>/dev/null)" -ge {count} ] '
            f"2>/dev/null; do n=$((n+1)); [ $n -ge {polls} ] && exit 3; sleep 0.05; done"
        )
        result = self.cmd(script, timeout=timeout + 2.0)
        if result.rc != 0:
            raise VmError(
                f"{self.name}: {which} log has not {count}x {pattern!r} after {timeout} s\n"
                + self.describe()
            )

    def wait_agent_owns(self, selection: str = "clipboard", timeout: float = 10.0) -> None:
        """Wait (polling inside the guest) until the session agent owns ``selection``: a host
        grab has reached the guest's X server.

        Why: the protocol has no answer to a GRAB, and a paste in the guest that starts
        before the agent took the selection asks the previous owner (or none) and never
        reaches the host. A freshly booted guest's agent takes a while over its first grab
        (GTK sets up its clipboard then). The agent is told apart by its TARGETS: GTK offers
        ``text/plain;charset=utf-8`` for text, which xclip (the tests' other owner) never
        does."""
        args = self._xclip_args(selection, "TARGETS")
        polls = max(1, int(timeout / 0.05))
        script = (
            f"n=0; until xclip {args} -o 2>/dev/null | grep -qxF 'text/plain;charset=utf-8'; "
            f"do n=$((n+1)); [ $n -ge {polls} ] && exit 3; sleep 0.05; done"
        )
        if self.cmd(script, timeout=timeout + 2.0).rc != 0:
            raise VmError(f"{self.name}: the session agent does not own the {selection} "
                          f"selection after {timeout} s\n" + self.describe())

    def guest_log(self, which: str = "daemon", timeout: float = 10.0) -> str:
        """Whole text of a guest log: ``daemon`` (spice-vdagentd), ``agent`` or ``xvfb``."""
        result = self.cmd(f"cat {_LOG_FILES[which]}", timeout=timeout)
        return result.stdout.decode(errors="replace")

    def daemon_log(self, timeout: float = 10.0) -> str:
        """spice-vdagentd's log (``-d -d``, G_MESSAGES_DEBUG=all) since boot."""
        return self.guest_log("daemon", timeout)

    def agent_log(self, timeout: float = 10.0) -> str:
        """The session agent's (spice-vdagent) log since boot."""
        return self.guest_log("agent", timeout)

    def uinput_events(self, timeout: float = 10.0) -> list[InputEvent]:
        """Every fake-uinput record the daemon wrote since boot (mouse input from the host)."""
        data = self.cmd("cat /tmp/uinput.bin", timeout=timeout, check=True).stdout
        usable = len(data) - len(data) % INPUT_EVENT.size
        return [InputEvent(t, c, v) for _s, _u, t, c, v in INPUT_EVENT.iter_unpack(data[:usable])]

    @staticmethod
    def _xclip_args(selection: str, target: str) -> str:
        if selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {_SELECTIONS}, not {selection!r}")
        if not _TARGET_RE.match(target):
            raise ValueError(f"unsafe target {target!r}")
        return f"-selection {selection} -t {target}"

    def guest_copy(
        self,
        data: bytes,
        selection: str = "clipboard",
        target: str = "UTF8_STRING",
        timeout: float = 10.0,
    ) -> None:
        """Copy ``data`` in the guest (``xclip -i``): xclip takes the selection, forks and
        keeps serving it in the background until another owner takes it."""
        self.cmd(f"xclip {self._xclip_args(selection, target)} -i", timeout, stdin=data, check=True)

    def guest_paste(
        self, selection: str = "clipboard", target: str = "UTF8_STRING", timeout: float = 10.0
    ) -> bytes:
        """Paste in the guest (``xclip -o``) and return the bytes.

        If the host owns the selection this blocks until the host answers the agent's
        CLIPBOARD_REQUEST: use :meth:`guest_paste_async` and answer meanwhile."""
        return self.cmd(
            f"xclip {self._xclip_args(selection, target)} -o", timeout, check=True
        ).stdout

    def guest_paste_async(
        self, selection: str = "clipboard", target: str = "UTF8_STRING", timeout: float = 10.0
    ) -> concurrent.futures.Future[bytes]:
        """:meth:`guest_paste` in a thread (other guest commands wait for it)."""
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(self.guest_paste(selection, target, timeout))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name=f"{self.name}-paste", daemon=True).start()
        return future

    def guest_paste_sha256(
        self, selection: str = "clipboard", target: str = "UTF8_STRING", timeout: float = 30.0
    ) -> tuple[str, int]:
        """(sha256 hex, size) of a guest paste, hashed in the guest (for large data)."""
        args = self._xclip_args(selection, target)
        out = self.cmd(
            f"set -e; xclip {args} -o > /tmp/paste.bin; sha256sum /tmp/paste.bin; "
            "stat -c %s /tmp/paste.bin; rm -f /tmp/paste.bin",
            timeout,
            check=True,
        ).stdout.split()
        return out[0].decode(), int(out[2])



# --------------------------------------------------------------------------- VM
class Vm(GuestShell):
    """One QEMU guest with the real SPICE agent inside (see module docstring).

    ``incoming=True`` starts a migration destination (``-incoming unix:…``), which is not
    running until :func:`migrate` fills it.  Use as a context manager or call :meth:`start`
    and :meth:`close`.
    """

    def __init__(
        self,
        image: GuestImage,
        *,
        name: str = "vm",
        incoming: bool = False,
        memory: str = "256M",
        boot_timeout: float = 90.0,
        stop_timeout: float = 5.0,
        keep_dir: bool | None = None,
        extra_args: Sequence[str] = (),
        directory: Path | None = None,
    ) -> None:
        """``keep_dir`` keeps the temp dir (console.log, qemu.log) after :meth:`close`;
        default from the env var ``VDAGENT_VM_KEEP``. ``directory``: the sockets and logs
        go there instead (the caller's, kept: a new QEMU at the same site, as when a VM
        migrates back to a host it ran on); the files of a previous QEMU there are replaced."""
        self.image = image
        self.name = name
        self.incoming = incoming
        self.memory = memory
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout
        if keep_dir is None:
            keep_dir = os.environ.get("VDAGENT_VM_KEEP", "") not in ("", "0")
        self.keep_dir = keep_dir
        self.extra_args = tuple(extra_args)

        self._own_dir = directory is None
        if directory is None:
            self.dir = _short_tempdir(f"vdvm-{name}-")
        else:
            self.dir = Path(directory)
            self.dir.mkdir(parents=True, exist_ok=True)
            for stale in self.dir.iterdir():
                if stale.is_file() or stale.is_socket():
                    stale.unlink()
        self.agent_socket = str(self.dir / "agent.sock")
        """Socket chardev of the spice port: what the app under test connects to."""
        self.qmp_socket = str(self.dir / "qmp.sock")
        """The app's QMP monitor (the fixture keeps to its own, :attr:`test_qmp_socket`)."""
        self.test_qmp_socket = str(self.dir / "qmp-test.sock")
        self.cmd_socket = str(self.dir / "cmd.sock")
        self.migration_socket = str(self.dir / "migrate.sock")
        self.console_log = self.dir / "console.log"
        self.qemu_log = self.dir / "qemu.log"

        self.state = "new"  # new, incoming, running, migrated, closed
        self.boot_seconds: float | None = None
        """Wall time from QEMU start to agent ready (source VMs)."""
        self._popen: subprocess.Popen[bytes] | None = None
        self._qmp: QmpClient | None = None
        self._cmd = CommandChannel(self.cmd_socket)
        self._started_at = 0.0

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Vm:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """PID of this VM's QEMU (the only process it starts)."""
        return self._popen.pid if self._popen else None

    @property
    def qmp(self) -> QmpClient:
        """The fixture's own QMP connection."""
        if self._qmp is None:
            raise VmError(f"{self.name}: not started")
        return self._qmp

    def qemu_argv(self) -> list[str]:
        argv = [
            find_program(QEMU) or QEMU,
            "-name", self.name,
            "-accel", "tcg",
            "-m", self.memory,
            "-smp", "1",
            "-nodefaults",
            "-display", "none",
            "-vga", "none",
            "-no-reboot",
            "-kernel", str(self.image.kernel),
            "-initrd", str(self.image.initrd),
            "-append", KERNEL_CMDLINE,
            "-serial", f"file:{self.console_log}",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=vdagent,path={self.agent_socket},server=on,wait=off",
            "-device",
            f"virtserialport,bus=vser0.0,chardev=vdagent,name={AGENT_PORT_NAME},id=vdaport",
            "-chardev", f"socket,id=vdbcmd,path={self.cmd_socket},server=on,wait=off",
            "-device",
            f"virtserialport,bus=vser0.0,chardev=vdbcmd,name={CMD_PORT_NAME},id=cmdport",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-qmp", f"unix:{self.test_qmp_socket},server=on,wait=off",
        ]  # fmt: skip
        if self.incoming:
            argv += ["-incoming", f"unix:{self.migration_socket}"]
        return argv + list(self.extra_args)

    def start(self, wait: bool = True) -> Vm:
        """Start QEMU; for a source VM also wait (``wait``) until the agent is ready.

        On failure QEMU is stopped and a :class:`VmError` with the logs is raised.
        """
        if self.state != "new":
            raise VmError(f"{self.name}: start() in state {self.state}")
        self._started_at = time.monotonic()
        _LIVE.add(self)
        try:
            with open(self.qemu_log, "wb") as log:
                self._popen = _popen_own_group(
                    self.qemu_argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(self.dir),
                )
            self._qmp = self._connect_qmp(self._started_at + 20.0)
            self._cmd.connect()
            self.state = "incoming" if self.incoming else "running"
            if wait and not self.incoming:
                self.wait_ready()
        except BaseException as exc:
            report = self.describe(fetch_guest_logs=False)
            self.close()
            if isinstance(exc, (VmError, TimeoutError, OSError)):
                raise VmError(f"{self.name} failed to start: {exc}\n{report}") from None
            raise
        return self

    def _connect_qmp(self, deadline: float) -> QmpClient:
        delay = 0.005
        while True:
            self._check_alive("while waiting for its QMP socket")
            if os.path.exists(self.test_qmp_socket):
                try:
                    return QmpClient(self.test_qmp_socket)
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if time.monotonic() > deadline:
                raise VmError(f"{self.name}: QMP socket not up in time")
            delay = _sleep_backoff(delay)

    def _check_alive(self, doing: str) -> None:
        if self._popen is not None and self._popen.poll() is not None:
            raise VmError(f"{self.name}: QEMU exited (rc={self._popen.returncode}) {doing}")

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until the command channel answers and the daemon has opened the spice port
        (its log says ``opening vdagent virtio channel``).  Returns the boot time in s."""
        if timeout is None:
            timeout = max(1.0, self.boot_timeout - (time.monotonic() - self._started_at))
        self.wait_log(READY_LINE, timeout=timeout)
        self.boot_seconds = time.monotonic() - self._started_at
        return self.boot_seconds

    def quit(self, timeout: float | None = None) -> int | None:
        """QMP ``quit`` and wait for QEMU to exit (used on a migrated source)."""
        if self._popen is None or self._popen.poll() is not None:
            return self._popen.returncode if self._popen else None
        try:
            self.qmp.execute("quit")
        except (OSError, EOFError, TimeoutError):
            pass  # QEMU may close the monitor before answering
        try:
            return self._popen.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired as err:
            raise VmError(f"{self.name}: QEMU did not quit") from err

    def close(self) -> None:
        """Stop this VM's QEMU (SIGTERM, then SIGKILL) and remove its temp dir."""
        if self.state == "closed":
            return
        self.state = "closed"
        _LIVE.discard(self)
        self._cmd.close()
        if self._qmp is not None:
            self._qmp.close()
        popen = self._popen
        if popen is not None and popen.poll() is None:
            try:
                popen.send_signal(signal.SIGTERM)
                popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                try:
                    popen.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    pass
            except ProcessLookupError:
                pass
        if self.keep_dir or not self._own_dir:
            if self.keep_dir:
                sys.stderr.write(f"Vm {self.name}: keeping {self.dir}\n")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self, lines: int = 60, fetch_guest_logs: bool = True) -> str:
        """State, QEMU's output, the serial console and (if the guest answers within 3 s) the
        guest's daemon/agent log tails: for failure reports."""
        out = [f"Vm {self.name} dir={self.dir} state={self.state}"]
        if self._popen is not None:
            rc = self._popen.poll()
            out.append(f"  qemu pid={self._popen.pid} " + ("running" if rc is None else f"rc={rc}"))
        for title, path in (("qemu.log", self.qemu_log), ("console.log", self.console_log)):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                out.append(f"--- {title} ---")
                out.extend(text.splitlines()[-lines:])
        if fetch_guest_logs and self.state == "running" and self._alive():
            for which in ("daemon", "agent"):
                try:
                    text = self.guest_log(which, timeout=3.0)
                except (OSError, EOFError, TimeoutError, VmError) as err:
                    out.append(f"--- guest {which} log unavailable: {err} ---")
                    break
                out.append(f"--- guest {which} log (last {lines} lines) ---")
                out.extend(text.splitlines()[-lines:])
        return "\n".join(out)

    def _alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def _run_command(self, script: str, stdin: bytes, timeout: float) -> CommandResult:
        if self.state not in ("running",):
            raise VmError(f"{self.name}: cmd() in state {self.state}")
        try:
            return self._cmd.run(script, stdin, timeout, timeout + 5.0)
        except (TimeoutError, EOFError) as err:
            self._check_alive(f"during guest command {script[:80]!r}")
            raise type(err)(f"{self.name}: {err}") from None

# --------------------------------------------------------------------------- migration
@dataclass
class MigrationResult:
    """What QEMU reported for one migration (times in ms, from ``query-migrate``)."""

    status: str
    total_time_ms: int
    downtime_ms: int
    setup_time_ms: int
    wall_seconds: float
    """Host wall time from the ``migrate`` command to the destination's RESUME."""
    source_events: list[str] = field(default_factory=list)
    destination_events: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """The last ``query-migrate`` answer on the source."""


def migrate(
    src: Vm,
    dst: Vm,
    *,
    quit_source: bool = False,
    max_bandwidth: int = 10 << 30,
    timeout: float = 60.0,
) -> MigrationResult:
    """Live-migrate ``src`` into ``dst`` (started with ``incoming=True``) over a UNIX socket.

    Enables the ``events`` capability on both sides, raises ``max-bandwidth`` (QEMU 7.2's
    default is 32 MiB/s), sends ``migrate``, polls ``query-migrate`` until it completes and
    waits for the destination's RESUME.  Afterwards ``dst`` is the running VM and ``src`` is
    ``migrated`` (paused; its connections get no EOF until it quits: ``quit_source``).
    """
    if src.state != "running" or dst.state != "incoming":
        raise VmError(f"migrate: source is {src.state}, destination is {dst.state}")
    events_on = {"capabilities": [{"capability": "events", "state": True}]}
    src.qmp.execute("migrate-set-capabilities", events_on)
    dst.qmp.execute("migrate-set-capabilities", events_on)
    src.qmp.execute("migrate-set-parameters", {"max-bandwidth": max_bandwidth})
    src_mark, dst_mark = len(src.qmp.events), len(dst.qmp.events)
    started = time.monotonic()
    deadline = started + timeout
    src.qmp.execute("migrate", {"uri": f"unix:{dst.migration_socket}"})
    delay = 0.005
    while True:
        info = src.qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed" and info.get("total-time"):
            break
        if status in ("failed", "cancelled"):
            raise VmError(
                f"migration {status}: {info.get('error-desc', info)}\n"
                f"{src.describe(fetch_guest_logs=False)}\n{dst.describe(fetch_guest_logs=False)}"
            )
        if time.monotonic() > deadline:
            raise VmError(f"migration not completed after {timeout} s: {info}")
        delay = _sleep_backoff(delay)
    dst.qmp.wait_event("RESUME", timeout=max(1.0, deadline - time.monotonic()), start=dst_mark)
    wall = time.monotonic() - started
    dst.qmp.wait_event(
        "MIGRATION",
        timeout=max(1.0, deadline - time.monotonic()),
        match=lambda e: e.get("data", {}).get("status") == "completed",
        start=dst_mark,
    )
    src.qmp.poll_events()
    src.state = "migrated"
    dst.state = "running"
    dst.boot_seconds = src.boot_seconds
    result = MigrationResult(
        status=str(status),
        total_time_ms=int(info.get("total-time", 0)),
        downtime_ms=int(info.get("downtime", 0)),
        setup_time_ms=int(info.get("setup-time", 0)),
        wall_seconds=wall,
        source_events=src.qmp.event_names()[src_mark:],
        destination_events=dst.qmp.event_names()[dst_mark:],
        info=info,
    )
    if quit_source:
        src.quit()
    return result
