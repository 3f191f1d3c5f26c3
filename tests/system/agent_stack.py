"""Run the REAL Linux SPICE guest agent without a VM, for system tests.

Why: the engine must interoperate with the real ``spice-vdagentd`` /
``spice-vdagent`` (0.22.1 on Debian 12), not only with our own idea of the
protocol.  Booting a VM is slow; the agent does not need one.  The shape is::

    test (host side) --UNIX socket--> relay --pty--> spice-vdagentd
                                       --udscs--> spice-vdagent --X11--> Xvfb

Each :class:`AgentStack` lives in its own temporary directory with its own
Xvfb display, private D-Bus session bus, relay, fake-uinput FIFO, daemon and
session agent, so several stacks can run at once.  It tracks every PID it
starts and stops only those (reverse order, SIGTERM then SIGKILL).

Plain stdlib on purpose: no engine imports (the fixture must not share bugs
with the code under test) and no Qt.

See docs/test-rigs.md §1 for the traps this works around
(raw pty held open by the relay, FIFO for the fake uinput, readiness only
once the session agent reported its resolution, xclip staying alive to serve
the selection).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import select
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
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

RELAY_SCRIPT = Path(__file__).with_name("relay.py")
FAKE_WM_SCRIPT = Path(__file__).with_name("fake_wm.py")

REQUIRED_BINARIES: tuple[str, ...] = (
    "Xvfb",
    "dbus-daemon",
    "spice-vdagentd",
    "spice-vdagent",
    "xclip",
    "xdpyinfo",
)
"""Programs the stack cannot run without (Debian: spice-vdagent xvfb xclip
x11-utils dbus-daemon)."""

_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin")

# input_event constants (linux/input-event-codes.h)
EV_SYN = 0x00
EV_KEY = 0x01
EV_REL = 0x02
EV_ABS = 0x03
SYN_REPORT = 0
ABS_X = 0x00
ABS_Y = 0x01
REL_WHEEL = 0x08
BTN_LEFT = 0x110
BTN_RIGHT = 0x111
BTN_MIDDLE = 0x112
BTN_SIDE = 0x113
BTN_EXTRA = 0x114

INPUT_EVENT = struct.Struct("<qqHHi")
"""``struct input_event`` on 64-bit Linux: tv_sec, tv_usec, type, code, value."""

READY_LINE = "opening vdagent virtio channel"
LOST_CLIENT_LINE = "lost spice client"

_SELECTIONS = ("clipboard", "primary", "secondary")
_LOG_NAMES = ("daemon", "agent", "relay", "xvfb", "dbus", "fake-wm")


class StackError(RuntimeError):
    """The stack failed to start, a component died, or a wait timed out."""


class GuestCommandError(RuntimeError):
    """A guest-side command (xclip, xdpyinfo) failed; carries its stderr."""

    def __init__(self, message: str, returncode: int | None, stderr: bytes) -> None:
        super().__init__(f"{message} (rc={returncode}): {stderr.decode(errors='replace').strip()}")
        self.returncode = returncode
        self.stderr = stderr


class InputEvent(NamedTuple):
    """One decoded fake-uinput record (timestamps are always 0 and dropped)."""

    type: int
    code: int
    value: int


def find_binary(name: str) -> str | None:
    """Locate ``name`` on PATH plus the sbin dirs (spice-vdagentd lives in /usr/sbin,
    which is not on a normal user's PATH)."""
    path = os.environ.get("PATH", "")
    extended = os.pathsep.join([path, *_EXTRA_PATH]) if path else os.pathsep.join(_EXTRA_PATH)
    return shutil.which(name, path=extended)


def missing_binaries(names: Sequence[str] = REQUIRED_BINARIES) -> list[str]:
    """Names from ``names`` that cannot be found (empty list: all present)."""
    return [name for name in names if find_binary(name) is None]


def _short_tempdir(prefix: str) -> str:
    """A temp dir whose paths fit in sockaddr_un (108 bytes incl. the socket name)."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = "/tmp"
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def _popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child (bytes I/O) in its own process group.

    Own group: a terminal Ctrl-C does not hit it half-way through a test
    (teardown stops it).  Not a new *session*: a session leader that opens
    the pty slave (the daemon) would acquire it as controlling terminal.
    """
    if sys.version_info >= (3, 11):
        return cast(
            "subprocess.Popen[bytes]", subprocess.Popen(list(argv), process_group=0, **kwargs)
        )
    return cast(  # pragma: no cover - older Pythons
        "subprocess.Popen[bytes]", subprocess.Popen(list(argv), preexec_fn=os.setpgrp, **kwargs)
    )


class _Proc:
    """A started child, its name and its log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path | None) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL.  Only this PID."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    self.popen.kill()
                except ProcessLookupError:
                    pass
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
        return self.popen.poll()


class AgentStack:
    """Xvfb + private D-Bus + relay + spice-vdagentd + spice-vdagent, in one temp dir.

    Use as a context manager (``with AgentStack() as stack:``) or call
    :meth:`start` / :meth:`close`.  The host side connects to
    :attr:`socket_path`; the relay holds the daemon's first caps request=1
    until the first host connects.
    """

    def __init__(
        self,
        *,
        screen: str = "1024x768x24",
        hold: bool = True,
        whole_chunks: bool = True,
        start_timeout: float = 20.0,
        stop_timeout: float = 3.0,
        keep_dir: bool | None = None,
        fake_wm: bool = True,
    ) -> None:
        """``hold``/``whole_chunks`` are passed to the relay (see relay.py).

        ``fake_wm`` announces an EWMH window manager on the display so the
        session agent does not spend 1 s waiting for one (see fake_wm.py);
        if that helper fails the stack still starts, 1 s slower.

        ``keep_dir`` keeps the temp dir (logs) after :meth:`close`; default
        from the env var ``VDAGENT_STACK_KEEP`` (set to 1 to debug).
        """
        self.screen = screen
        self.hold = hold
        self.whole_chunks = whole_chunks
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        if keep_dir is None:
            keep_dir = os.environ.get("VDAGENT_STACK_KEEP", "") not in ("", "0")
        self.keep_dir = keep_dir
        self.fake_wm = fake_wm

        self.dir: Path = Path(_short_tempdir("vdstack-"))
        self.socket_path: str = str(self.dir / "host.sock")
        self.pty_link: str = str(self.dir / "vport")
        self.uinput_path: str = str(self.dir / "uinput")
        self.vdagentd_socket: str = str(self.dir / "vdagentd.sock")
        self.bus_path: str = str(self.dir / "bus")
        self.bus_address: str = f"unix:path={self.bus_path}"
        self.runtime_dir: Path = self.dir / "runtime"
        self.xfer_dir: str = str(self.dir / "xfer")
        self.display: str = ""

        self._procs: list[_Proc] = []  # in start order
        self._agent: _Proc | None = None
        self._daemon: _Proc | None = None
        self._guest_cmds: list[subprocess.Popen[bytes]] = []
        self._guest_lock = threading.Lock()
        self._xclip_serial = 0

        self._uinput_fd: int | None = None
        self._uinput_thread: threading.Thread | None = None
        self._uinput_stop = threading.Event()
        self._uinput_cond = threading.Condition()
        self._uinput_events: list[InputEvent] = []

        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ paths
    def log_path(self, which: str) -> Path:
        """Log file of a component: daemon, agent, relay, xvfb, dbus or fake-wm."""
        if which not in _LOG_NAMES:
            raise ValueError(f"unknown log {which!r}; one of {_LOG_NAMES}")
        return self.dir / f"{which}.log"

    def log_text(self, which: str = "daemon") -> str:
        """Whole current text of a component's log ('' if not created yet)."""
        try:
            return self.log_path(which).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def daemon_log_text(self) -> str:
        """spice-vdagentd's stdout+stderr (G_MESSAGES_DEBUG=all, -d -d)."""
        return self.log_text("daemon")

    def agent_log_text(self) -> str:
        """spice-vdagent's stdout+stderr (all session agents, appended)."""
        return self.log_text("agent")

    def relay_log_text(self) -> str:
        """The relay's log: one ``host connected n=N`` line per host connection."""
        return self.log_text("relay")

    def relay_connections(self) -> int:
        """How many host connections the relay has accepted so far."""
        return len(re.findall(r"host connected n=\d+", self.relay_log_text()))

    @property
    def daemon_pid(self) -> int | None:
        return self._daemon.pid if self._daemon else None

    @property
    def agent_pid(self) -> int | None:
        return self._agent.pid if self._agent else None

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the long-running components started so far, by name."""
        return {p.name: p.pid for p in self._procs}

    # ------------------------------------------------------------------ env
    def guest_env(self) -> dict[str, str]:
        """Environment for programs running "in the guest session".

        Everything that could make a child reach outside the temp dir (the
        user's X display, session bus, config/cache dirs, dconf) is replaced.
        """
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XAUTHORITY")
            and not k.startswith("XDG_")
        }
        env.update(
            DISPLAY=self.display,
            DBUS_SESSION_BUS_ADDRESS=self.bus_address,
            XDG_RUNTIME_DIR=str(self.runtime_dir),
            XDG_CONFIG_HOME=str(self.dir / "config"),
            XDG_CACHE_HOME=str(self.dir / "cache"),
            XDG_DATA_HOME=str(self.dir / "data"),
            XDG_SESSION_TYPE="x11",
            GDK_BACKEND="x11",
            GSETTINGS_BACKEND="memory",
            NO_AT_BRIDGE="1",
            LC_ALL="C.UTF-8",
        )
        return env

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> AgentStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> AgentStack:
        """Start everything and wait until the daemon has opened the port.

        On any failure everything already started is stopped again and a
        :class:`StackError` with the log tails is raised.
        """
        if self._started:
            raise StackError("AgentStack already started")
        self._started = True
        deadline = time.monotonic() + self.start_timeout
        try:
            missing = missing_binaries()
            if missing:
                raise StackError(f"missing programs: {', '.join(missing)}")
            self.runtime_dir.mkdir(mode=0o700)
            os.chmod(self.runtime_dir, 0o700)
            for sub in ("config", "cache", "data", "xfer"):
                (self.dir / sub).mkdir()
            self._start_xvfb(deadline)
            if self.fake_wm:
                self._start_fake_wm(deadline)
            self._start_dbus(deadline)
            self._start_relay(deadline)
            self._start_uinput_reader()
            self._start_daemon(deadline)
            self._start_agent()
            self.wait_for_log(re.escape(READY_LINE), timeout=max(0.1, deadline - time.monotonic()))
        except BaseException as exc:
            report = self.describe()
            self.close()
            if isinstance(exc, StackError):
                raise StackError(f"{exc}\n{report}") from None
            raise
        return self

    def close(self) -> None:
        """Stop only what this stack started (reverse order) and clean its dir."""
        if self._closed:
            return
        self._closed = True
        with self._guest_lock:
            guest_cmds = list(self._guest_cmds)
            self._guest_cmds.clear()
        for popen in guest_cmds:
            _Proc("guest-cmd", popen, None).stop(self.stop_timeout)
        for proc in reversed(self._procs):
            proc.stop(self.stop_timeout)
        self._stop_uinput_reader()
        for proc in self._procs:
            try:
                proc.popen.wait(0)
            except subprocess.TimeoutExpired:
                pass
        if self.keep_dir:
            sys.stderr.write(f"AgentStack: keeping {self.dir}\n")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self, lines: int = 40) -> str:
        """Process states and log tails, for error messages and failed tests."""
        out = [f"AgentStack dir={self.dir} display={self.display or '?'}"]
        for proc in self._procs:
            rc = proc.popen.poll()
            out.append(
                f"  {proc.name} pid={proc.pid} " + ("running" if rc is None else f"exited rc={rc}")
            )
        for which in _LOG_NAMES:
            text = self.log_text(which)
            if text:
                tail = text.splitlines()[-lines:]
                out.append(f"--- {which}.log (last {len(tail)} lines) ---")
                out.extend(tail)
        return "\n".join(out)

    # ------------------------------------------------------------------ starting
    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: str | None = None,
        pass_fds: Sequence[int] = (),
        track: bool = True,
    ) -> _Proc:
        log_path = self.log_path(log) if log else None
        out: IO[bytes] | int
        if log_path is not None:
            out = open(log_path, "ab", buffering=0)
        else:
            out = subprocess.DEVNULL
        try:
            popen = _popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env if env is not None else self.guest_env(),
                cwd=str(self.dir),
                pass_fds=tuple(pass_fds),
                close_fds=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        proc = _Proc(name, popen, log_path)
        if track:
            self._procs.append(proc)
        return proc

    def _wait(
        self, what: str, cond: Callable[[], bool], deadline: float, proc: _Proc | None
    ) -> None:
        delay = 0.002
        while not cond():
            if proc is not None and not proc.alive():
                raise StackError(
                    f"{proc.name} exited (rc={proc.popen.poll()}) while waiting for {what}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _start_xvfb(self, deadline: float) -> None:
        rfd, wfd = os.pipe()
        try:
            proc = self._spawn(
                "Xvfb",
                [
                    find_binary("Xvfb") or "Xvfb",
                    "-displayfd",
                    str(wfd),
                    "-screen",
                    "0",
                    self.screen,
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                log="xvfb",
                pass_fds=(wfd,),
                env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
            )
            os.close(wfd)
            wfd = -1
            buf = b""
            while not buf.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StackError("timed out waiting for Xvfb's display number")
                ready, _, _ = select.select([rfd], [], [], remaining)
                if not ready:
                    continue
                data = os.read(rfd, 64)
                if not data:
                    raise StackError(
                        f"Xvfb exited (rc={proc.popen.poll()}) before printing its display"
                    )
                buf += data
            self.display = ":" + buf.decode().strip()
        finally:
            os.close(rfd)
            if wfd >= 0:
                os.close(wfd)

    def _start_fake_wm(self, deadline: float) -> None:
        """Best effort: a failure only costs the session agent 1 s at start."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = self._spawn(
            "fake-wm",
            [sys.executable, "-u", str(FAKE_WM_SCRIPT), self.display],
            log="fake-wm",
            env=env,
        )
        try:
            wm_deadline = min(deadline, time.monotonic() + 5.0)
            self._wait(
                "the fake window manager",
                lambda: "fake-wm ready" in self.log_text("fake-wm"),
                wm_deadline,
                proc,
            )
        except StackError:
            proc.stop(self.stop_timeout)
            self._procs.remove(proc)

    def _start_dbus(self, deadline: float) -> None:
        proc = self._spawn(
            "dbus-daemon",
            [
                find_binary("dbus-daemon") or "dbus-daemon",
                "--session",
                "--nofork",
                "--nopidfile",
                "--nosyslog",
                f"--address={self.bus_address}",
            ],
            log="dbus",
        )

        def connectable() -> bool:
            if not os.path.exists(self.bus_path):
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(self.bus_path)
                except OSError:
                    return False
            return True

        self._wait("the D-Bus socket", connectable, deadline, proc)

    def _start_relay(self, deadline: float) -> None:
        argv = [
            sys.executable,
            "-u",
            str(RELAY_SCRIPT),
            "--socket",
            self.socket_path,
            "--pty-link",
            self.pty_link,
            "--hold" if self.hold else "--no-hold",
            "--whole-chunks" if self.whole_chunks else "--raw",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = self._spawn("relay", argv, log="relay", env=env)
        self._wait("the relay", lambda: "relay ready" in self.relay_log_text(), deadline, proc)

    def _start_daemon(self, deadline: float) -> None:
        env = self.guest_env()
        env["G_MESSAGES_DEBUG"] = "all"
        self._daemon = self._spawn(
            "spice-vdagentd",
            [
                find_binary("spice-vdagentd") or "spice-vdagentd",
                "-x",
                "-d",
                "-d",
                "-X",
                "-f",
                "-u",
                self.uinput_path,
                "-s",
                self.pty_link,
                "-S",
                self.vdagentd_socket,
            ],
            env=env,
            log="daemon",
        )
        # Only check the file: a probe connection would look like a session
        # agent to the daemon (and -X allows just one).
        self._wait(
            "the daemon's session socket",
            lambda: os.path.exists(self.vdagentd_socket),
            deadline,
            self._daemon,
        )

    def _start_agent(self) -> None:
        env = self.guest_env()
        env["G_MESSAGES_DEBUG"] = "all"
        self._agent = self._spawn(
            "spice-vdagent",
            [
                find_binary("spice-vdagent") or "spice-vdagent",
                "-x",
                "-d",
                "-S",
                self.vdagentd_socket,
                "-s",
                self.pty_link,
                "-f",
                self.xfer_dir,
                "-o",
                "0",
            ],
            env=env,
            log="agent",
        )

    # ------------------------------------------------------------------ uinput
    def _start_uinput_reader(self) -> None:
        """The daemon (-f) writes raw input_event records and re-opens the path
        whenever the guest resolution changes: a FIFO we hold O_RDWR (so its
        O_WRONLY open never blocks and never sees a missing reader) and drain
        continuously."""
        os.mkfifo(self.uinput_path, 0o600)
        fd = os.open(self.uinput_path, os.O_RDWR | os.O_NONBLOCK)
        self._uinput_fd = fd
        self._uinput_thread = threading.Thread(
            target=self._uinput_loop, args=(fd,), name=f"uinput-reader-{self.dir.name}", daemon=True
        )
        self._uinput_thread.start()

    def _uinput_loop(self, fd: int) -> None:
        pending = b""
        size = INPUT_EVENT.size
        while not self._uinput_stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            pending += data
            whole = len(pending) - len(pending) % size
            if not whole:
                continue
            events = [
                InputEvent(etype, code, value)
                for _sec, _usec, etype, code, value in INPUT_EVENT.iter_unpack(pending[:whole])
            ]
            pending = pending[whole:]
            with self._uinput_cond:
                self._uinput_events.extend(events)
                self._uinput_cond.notify_all()

    def _stop_uinput_reader(self) -> None:
        self._uinput_stop.set()
        if self._uinput_thread is not None:
            self._uinput_thread.join(2.0)
            self._uinput_thread = None
        if self._uinput_fd is not None:
            os.close(self._uinput_fd)
            self._uinput_fd = None

    def uinput_events(self) -> list[InputEvent]:
        """All (type, code, value) records the daemon has written so far."""
        with self._uinput_cond:
            return list(self._uinput_events)

    def uinput_reports(self, count: int, timeout: float = 15.0) -> list[list[InputEvent]]:
        """Wait for ``count`` uinput reports (records up to and including a SYN_REPORT) and
        return exactly those: what the guest's input stack reads as one event each."""
        events = self.wait_uinput(
            lambda ev: sum(e.type == EV_SYN for e in ev) >= count, timeout=timeout
        )
        reports: list[list[InputEvent]] = [[]]
        for event in events:
            reports[-1].append(event)
            if event.type == EV_SYN:
                reports.append([])
        return [r for r in reports if r][:count]

    def clear_uinput_events(self) -> None:
        """Forget the records seen so far (the daemon's button state is kept)."""
        with self._uinput_cond:
            self._uinput_events.clear()

    def wait_uinput(
        self, predicate: Callable[[list[InputEvent]], bool], timeout: float = 5.0
    ) -> list[InputEvent]:
        """Wait until ``predicate(all_records_so_far)`` is true; return the records.

        Raises :class:`StackError` (with the records seen) on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._uinput_cond:
            while True:
                events = list(self._uinput_events)
                if predicate(events):
                    return events
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StackError(
                        f"uinput predicate not met within {timeout}s; records: {events}"
                    )
                self._uinput_cond.wait(min(remaining, 0.1))

    # ------------------------------------------------------------------ logs
    def wait_for_log(
        self, pattern: str, timeout: float = 5.0, which: str = "daemon", start: int = 0
    ) -> re.Match[str]:
        """Wait until ``pattern`` (a regex, MULTILINE) matches the log text from
        character offset ``start`` on; return the match (offsets relative to
        the whole log).  Use ``len(stack.log_text(which))`` before an action as
        ``start`` to only see lines it caused.  Fails fast if the daemon died.
        """
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            text = self.log_text(which)
            match = regex.search(text, start)
            if match:
                return match
            self.check_alive()
            if time.monotonic() > deadline:
                tail = "\n".join(text[start:].splitlines()[-30:])
                raise StackError(f"{pattern!r} not in {which}.log within {timeout}s; tail:\n{tail}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def count_log(self, pattern: str, which: str = "daemon") -> int:
        """How many times ``pattern`` matches a component's log so far."""
        return len(re.findall(pattern, self.log_text(which), re.MULTILINE))

    def check_alive(self) -> None:
        """Raise :class:`StackError` if a core component has exited."""
        for proc in self._procs:
            if proc.name == "spice-vdagent" and proc is not self._agent:
                continue
            if not proc.alive():
                raise StackError(
                    f"{proc.name} (pid {proc.pid}) exited rc={proc.popen.poll()}\n{self.describe()}"
                )

    # ------------------------------------------------------------------ session agent
    def restart_session_agent(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Stop the session agent and start a new one.

        The daemon then sends a 1-byte RELEASE for guest-owned selections,
        closes the port, and once the new agent reported its resolution
        reopens it and sends caps request=1 (held by the relay if no host is
        connected).  With ``wait`` returns once the daemon logged the reopen.
        """
        before = self.count_log(re.escape(READY_LINE))
        if self._agent is not None:
            self._agent.stop(self.stop_timeout)
        self._start_agent()
        if wait:
            deadline = time.monotonic() + timeout
            self._wait(
                "the daemon to reopen the port",
                lambda: self.count_log(re.escape(READY_LINE)) > before,
                deadline,
                self._daemon,
            )

    # ------------------------------------------------------------------ guest X actions
    @staticmethod
    def _selection(selection: str) -> str:
        if selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {_SELECTIONS}, not {selection!r}")
        return selection

    def _guest_popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        popen = _popen(argv, env=self.guest_env(), cwd=str(self.dir), **kwargs)
        with self._guest_lock:
            self._guest_cmds = [p for p in self._guest_cmds if p.poll() is None]
            self._guest_cmds.append(popen)
        return popen

    def guest_copy(
        self,
        data: bytes,
        selection: str = "clipboard",
        target: str = "UTF8_STRING",
        timeout: float = 5.0,
    ) -> int:
        """Copy ``data`` in the guest: ``xclip -selection S -t T -i``.

        xclip runs in the foreground (``-quiet``) so we track its real PID; it
        keeps serving the selection until another owner takes it (then it
        exits by itself) or the stack closes.  Returns once xclip owns the
        selection; returns its PID.
        """
        self._xclip_serial += 1
        out_path = self.dir / f"xclip-in-{self._xclip_serial}.log"
        with open(out_path, "wb") as out:
            popen = self._guest_popen(
                [
                    find_binary("xclip") or "xclip",
                    "-selection",
                    self._selection(selection),
                    "-t",
                    target,
                    "-i",
                    "-quiet",
                ],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert popen.stdin is not None
        try:
            popen.stdin.write(data)
        finally:
            popen.stdin.close()
        deadline = time.monotonic() + timeout
        delay = 0.002
        while b"Waiting for selection requests" not in out_path.read_bytes():
            if popen.poll() is not None:
                raise GuestCommandError("xclip -i exited", popen.returncode, out_path.read_bytes())
            if time.monotonic() > deadline:
                raise GuestCommandError(
                    "xclip -i did not take the selection in time", None, out_path.read_bytes()
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return popen.pid

    def guest_paste_async(
        self, selection: str = "clipboard", target: str = "UTF8_STRING", timeout: float = 5.0
    ) -> concurrent.futures.Future[bytes]:
        """Start ``xclip -o`` in the guest and return a future for its output.

        Needed when the host owns the selection: the paste blocks until the
        test answers the agent's CLIPBOARD_REQUEST on the host side.  The
        future fails with :class:`GuestCommandError` on error or timeout.
        """
        popen = self._guest_popen(
            [
                find_binary("xclip") or "xclip",
                "-selection",
                self._selection(selection),
                "-t",
                target,
                "-o",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()

        def run() -> None:
            try:
                out, err = popen.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                out, err = popen.communicate()
                future.set_exception(
                    GuestCommandError(f"xclip -o timed out after {timeout}s", None, err)
                )
                return
            except BaseException as exc:  # pragma: no cover - defensive
                future.set_exception(exc)
                return
            if popen.returncode != 0:
                future.set_exception(GuestCommandError("xclip -o failed", popen.returncode, err))
            else:
                future.set_result(out)

        threading.Thread(target=run, name="guest-paste", daemon=True).start()
        return future

    def guest_paste(
        self, selection: str = "clipboard", target: str = "UTF8_STRING", timeout: float = 5.0
    ) -> bytes:
        """Paste in the guest (``xclip -o``) and return the bytes."""
        return self.guest_paste_async(selection, target, timeout).result(timeout + 5.0)

    def guest_targets(self, selection: str = "clipboard", timeout: float = 5.0) -> list[str]:
        """The TARGETS the current owner of ``selection`` offers in the guest."""
        out = self.guest_paste(selection, "TARGETS", timeout)
        return [line for line in out.decode(errors="replace").splitlines() if line]

    def guest_run(
        self, argv: Sequence[str], timeout: float = 10.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Run any command on the guest display (e.g. xdotool, import) and wait."""
        popen = self._guest_popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            out, err = popen.communicate()
            raise GuestCommandError(f"{argv[0]} timed out after {timeout}s", None, err) from None
        return subprocess.CompletedProcess(list(argv), popen.returncode, out, err)

    def guest_screen_size(self, timeout: float = 5.0) -> tuple[int, int]:
        """Current (width, height) of the guest X screen (xdpyinfo on a new
        connection, so it reflects RandR resizes done by MONITORS_CONFIG)."""
        result = self.guest_run([find_binary("xdpyinfo") or "xdpyinfo"], timeout)
        if result.returncode != 0:
            raise GuestCommandError("xdpyinfo failed", result.returncode, result.stderr)
        match = re.search(rb"dimensions:\s+(\d+)x(\d+) pixels", result.stdout)
        if not match:
            raise GuestCommandError(
                "no dimensions in xdpyinfo output", result.returncode, result.stdout
            )
        return int(match.group(1)), int(match.group(2))

    def wait_screen_size(self, size: tuple[int, int], timeout: float = 5.0) -> tuple[int, int]:
        """Poll :meth:`guest_screen_size` until it equals ``size``."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.guest_screen_size(timeout)
            if current == size:
                return current
            if time.monotonic() > deadline:
                raise StackError(f"guest screen is {current}, expected {size}")
            time.sleep(0.05)
