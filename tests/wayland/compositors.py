"""Headless Wayland compositors for the tests: sway 1.7 and KWin 5.27, each with XWayland.

What a test gets from a :class:`Compositor`: the environment of a client of the session
(``WAYLAND_DISPLAY`` as an absolute path, XWayland's ``DISPLAY``, a private
``XDG_RUNTIME_DIR``), keyboard focus put on a Wayland window of the test's own or on nothing,
and the name of what has focus, to check it. Each compositor records every process it
starts and stops exactly those, by PID.

The traps, measured (``/work/shared/wayland.md``):

- sway refuses to run as root: it runs as the user :data:`USER` (created on first use); root's
  clients reach it by the absolute socket path, and ``xhost +si:localuser:root`` (run as that
  user) lets them into XWayland. The headless backend has no input device, so there is no
  keyboard focus until a virtual keyboard (wtype) joins the seat; one ``-s`` of at most 4e6 ms
  (a larger one overflows and the keyboard vanishes).
- ``/usr/bin/kwin_wayland`` carries the file capability cap_sys_resource, which this sandbox
  forbids (exec fails with EPERM): an unmodified copy without it runs. KWin runs in its own
  D-Bus session, and focus goes through its scripting API on that bus (a script's ``print``
  lands in KWin's log). foot dies of SIGFPE under ``--virtual``: the focus window is a plain
  Qt Wayland window (focus_window.py), on both compositors.

Plain stdlib, no engine imports: the rig must not share bugs with the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.external import system_user

#: The user sway runs as when the tests run as root.
USER = "vdbwayland"
START_TIMEOUT = 30.0
FOCUS_WINDOW = Path(__file__).with_name("focus_window.py")
#: The focus window's app_id (Wayland) and title.
FOCUS_APP_ID = "vdb-focus"
#: The X11 window's class.
X11_CLASS = "VdbXTerm"
PROGRAMS = {
    "sway": ("sway", "Xwayland", "swaymsg", "wtype", "xhost", "runuser"),
    "kwin": ("kwin_wayland", "Xwayland", "dbus-run-session", "dbus-send"),
    "mutter": ("mutter", "Xwayland", "dbus-run-session"),
}
COMMON_PROGRAMS = ("wl-copy", "wl-paste", "xclip", "xterm")


class CompositorError(RuntimeError):
    """The compositor did not start, or a focus change did not happen (its log included)."""


def missing_programs(kind: str) -> list[str]:
    return [name for name in (*PROGRAMS[kind], *COMMON_PROGRAMS) if shutil.which(name) is None]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return True
        except OSError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Compositor:
    """What both compositors share: client environment, the focus window, clean-up."""

    kind = ""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.wayland_display = ""
        self.x_display = ""
        self.client_runtime = Path(tempfile.mkdtemp(prefix="vdb-wl-client-"))
        self.client_runtime.chmod(0o700)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.focus_window: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.kind}.log"

    # ------------------------------------------------------------ for clients

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a client of this session: no ``QT_QPA_PLATFORM`` (as a
        session's own), no session bus of the machine's, no other display's authority."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("QT_QPA_PLATFORM", "DBUS_SESSION_BUS_ADDRESS", "XAUTHORITY",
                            "QT_WAYLAND_USE_DATA_CONTROL", "WAYLAND_SOCKET")}
        env.update(WAYLAND_DISPLAY=self.wayland_display, DISPLAY=self.x_display,
                   XDG_RUNTIME_DIR=str(self.client_runtime), XDG_SESSION_TYPE="wayland")
        env.update(extra)
        return env

    def spawn(self, argv: list[str], log_name: str, **extra: str) -> subprocess.Popen[bytes]:
        """Start a client of the session (stopped at :meth:`close`)."""
        with open(self.dir / f"{log_name}.log", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=self.client_env(**extra))
        self.procs.append(proc)
        return proc

    def start_focus_window(self) -> None:
        """A plain Wayland window of the test's own, to hold keyboard focus."""
        self.focus_window = self.spawn([sys.executable, str(FOCUS_WINDOW)], "focus-window",
                                       QT_QPA_PLATFORM="wayland")
        deadline = time.monotonic() + START_TIMEOUT
        while FOCUS_APP_ID not in self.windows():
            if self.focus_window.poll() is not None or time.monotonic() > deadline:
                raise CompositorError(f"the focus window did not map:\n{self.describe()}")
            time.sleep(0.2)

    def start_x11_window(self) -> None:
        """An X11 window (xterm, class :data:`X11_CLASS`) under XWayland."""
        self.spawn(["xterm", "-class", X11_CLASS, "-title", X11_CLASS, "-e", "sleep", "100000"],
                   "xterm")
        deadline = time.monotonic() + START_TIMEOUT
        while X11_CLASS.lower() not in self.windows().lower():
            if time.monotonic() > deadline:
                raise CompositorError(f"the X11 window did not map:\n{self.describe()}")
            time.sleep(0.2)

    # ------------------------------------------------------------ per compositor

    def start(self) -> Compositor:
        """Start the compositor, XWayland and the focus window; returns self."""
        raise NotImplementedError

    def focus_x11_window(self) -> None:
        raise NotImplementedError

    def windows(self) -> str:
        """The mapped windows, one text (app_ids / classes and titles)."""
        raise NotImplementedError

    def focus_nothing(self) -> None:
        raise NotImplementedError

    def focus_wayland_window(self) -> None:
        raise NotImplementedError

    def focused(self) -> str:
        """What has keyboard focus: an app_id or X11 class, or "" for nothing."""
        raise NotImplementedError

    def close(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        shutil.rmtree(self.client_runtime, ignore_errors=True)

    def describe(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"--- {self.kind} log (tail)\n" + "\n".join(text)

    def assert_focus(self, expected: str) -> None:
        deadline = time.monotonic() + 5
        while (now := self.focused()).lower() != expected.lower():
            if time.monotonic() > deadline:
                raise CompositorError(f"focus is on {now!r}, not {expected!r}")
            time.sleep(0.1)


# ---------------------------------------------------------------------------- sway


_SWAY_CONFIG = """\
xwayland force
output HEADLESS-1 resolution 1280x800 position 0 0
default_border normal
focus_on_window_activation focus
exec sh -c 'echo "DISPLAY=$DISPLAY WAYLAND_DISPLAY=$WAYLAND_DISPLAY SWAYSOCK=$SWAYSOCK" > {env}'
"""


class Sway(Compositor):
    """sway 1.7 headless (wlroots' headless backend, pixman), XWayland forced on."""

    kind = "sway"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.swaysock = ""
        self._runuser: subprocess.Popen[bytes] | None = None
        self._sway_pid: int | None = None

    def start(self) -> Sway:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Sway:
        root = os.geteuid() == 0
        account = system_user(USER, home=True) if root else pwd.getpwuid(os.geteuid())
        # sway's own files live in its runtime dir: pytest's tmp dirs are root's (0700).
        runtime = Path(tempfile.mkdtemp(prefix="vdb-sway-"))
        self._runtime = runtime
        env_file = runtime / "sway-env.txt"
        env_file.write_text("")
        config = runtime / "sway.config"
        config.write_text(_SWAY_CONFIG.format(env=env_file))
        for path in (runtime, env_file, config):
            os.chown(path, account.pw_uid, account.pw_gid)
        runtime.chmod(0o700)
        env = [f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}", f"HOME={account.pw_dir}",
               f"XDG_RUNTIME_DIR={runtime}", "WLR_BACKENDS=headless", "WLR_RENDERER=pixman",
               "WLR_HEADLESS_OUTPUTS=1", "WLR_LIBINPUT_NO_DEVICES=1"]
        prefix = ["runuser", "-u", account.pw_name, "--"] if root else []
        with open(self.log_path, "wb") as out:
            self._runuser = subprocess.Popen(
                [*prefix, "env", "-i", *env, "sway", "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not env_file.read_text().strip():
            if self._runuser.poll() is not None or time.monotonic() > deadline:
                raise CompositorError(f"sway did not start:\n{self.describe()}")
            time.sleep(0.1)
        values = dict(part.split("=", 1) for part in env_file.read_text().split())
        self.wayland_display = str(runtime / values["WAYLAND_DISPLAY"])
        self.x_display = values["DISPLAY"]
        self.swaysock = values["SWAYSOCK"]
        self._sway_pid = self._find_sway()
        if root:
            subprocess.run(["runuser", "-u", account.pw_name, "--", "env",
                            f"DISPLAY={self.x_display}", "xhost", "+si:localuser:root"],
                           check=True, capture_output=True, timeout=10)
        # The seat's keyboard (see the module docstring): without one nothing has focus.
        self.spawn(["wtype", "-s", "4000000", "-m", "shift"], "wtype")
        self.start_focus_window()
        return self

    def _find_sway(self) -> int | None:
        assert self._runuser is not None
        pending = [self._runuser.pid]
        while pending:
            pid = pending.pop()
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sway":
                    return pid
            except OSError:
                continue
            pending += _children(pid)
        return None

    def swaymsg(self, *args: str) -> str:
        result = subprocess.run(["swaymsg", "-s", self.swaysock, *args], capture_output=True,
                                text=True, timeout=10)
        if result.returncode != 0:
            raise CompositorError(f"swaymsg {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def _windows(self) -> list[tuple[str, str, bool]]:
        """(app_id or X11 class, title, focused) of every window in sway's tree."""
        found: list[tuple[str, str, bool]] = []

        def walk(node: dict[str, Any]) -> None:
            if node.get("type") in ("con", "floating_con") and node.get("name"):
                props = node.get("window_properties") or {}
                found.append((str(node.get("app_id") or props.get("class") or ""),
                              str(node["name"]), bool(node.get("focused"))))
            for key in ("nodes", "floating_nodes"):
                for child in node.get(key) or []:
                    walk(child)

        walk(json.loads(self.swaymsg("-t", "get_tree")))
        return found

    def windows(self) -> str:
        return " ; ".join(f"{app}|{title}" for app, title, _ in self._windows())

    def focused(self) -> str:
        return next((app or title for app, title, focused in self._windows() if focused), "")

    def focus_nothing(self) -> None:
        # An empty workspace: no window has focus. Windows that mapped there since (a new
        # app's) go back to workspace 1 first.
        self.swaymsg('[title=".*"] move container to workspace number 1')
        self.swaymsg("workspace", "number", "9")
        self.assert_focus("")

    def focus_wayland_window(self) -> None:
        self.swaymsg(f'[app_id="{FOCUS_APP_ID}"] focus')
        self.assert_focus(FOCUS_APP_ID)

    def focus_x11_window(self) -> None:
        self.swaymsg(f'[class="{X11_CLASS}"] focus')
        self.assert_focus(X11_CLASS)

    def close(self) -> None:
        super().close()
        pid, self._sway_pid = self._sway_pid, None  # closing twice is fine
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, 10):
                    os.kill(pid, signal.SIGKILL)
        if self._runuser is not None:
            _stop(self._runuser)
        shutil.rmtree(getattr(self, "_runtime", ""), ignore_errors=True)


# ---------------------------------------------------------------------------- KWin


_KWIN_CHILD = """#!/bin/sh
echo $$ > {env}.pid
env | grep -E '^(DISPLAY|WAYLAND_DISPLAY|DBUS_SESSION_BUS_ADDRESS)=' > {env}.tmp
mv {env}.tmp {env}
exec sleep 100000
"""


class KWin(Compositor):
    """kwin_wayland 5.27 ``--virtual`` (QPainter), with XWayland, in its own D-Bus session."""

    kind = "kwin"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.bus = ""
        self._session: subprocess.Popen[bytes] | None = None
        self._serial = 0

    def start(self) -> KWin:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> KWin:
        binary = self.dir / "bin" / "kwin_wayland"
        binary.parent.mkdir(exist_ok=True)
        shutil.copy(shutil.which("kwin_wayland") or "/usr/bin/kwin_wayland", binary)
        runtime = Path(tempfile.mkdtemp(prefix="vdb-kwin-"))
        runtime.chmod(0o700)
        self._runtime = runtime
        env_file = self.dir / "kwin-env.txt"
        env_file.unlink(missing_ok=True)
        child = self.dir / "kwin-child.sh"
        child.write_text(_KWIN_CHILD.format(env=env_file))
        child.chmod(0o755)
        env = {k: v for k, v in os.environ.items()
               if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
                            "QT_QPA_PLATFORM", "XAUTHORITY")}
        env.update(XDG_RUNTIME_DIR=str(runtime), KWIN_COMPOSE="Q",
                   QT_LOGGING_RULES="kwin_scripting.debug=true;js.debug=true")
        with open(self.log_path, "wb") as out:
            self._session = subprocess.Popen(
                ["dbus-run-session", "--", str(binary), "--virtual", "--xwayland",
                 "--socket", "wayland-vdb", "--width", "1280", "--height", "800",
                 "--no-lockscreen", "--no-global-shortcuts", "--no-kactivities", str(child)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not env_file.exists():
            if self._session.poll() is not None or time.monotonic() > deadline:
                raise CompositorError(f"KWin did not start:\n{self.describe()}")
            time.sleep(0.1)
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
        self.wayland_display = str(runtime / values["WAYLAND_DISPLAY"])
        self.x_display = values["DISPLAY"]
        self.bus = values["DBUS_SESSION_BUS_ADDRESS"]
        self.start_focus_window()
        return self

    def script(self, body: str) -> str:
        """Run a KWin script; what it prints with ``out(...)`` comes back."""
        self._serial += 1
        tag = f"VDBJS{os.getpid()}x{self._serial}"
        path = self.dir / f"script-{self._serial}.js"
        path.write_text(f"function out(s) {{ print('{tag} ' + s); }}\n{body}\n")
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.bus}

        def send(*args: str) -> str:
            return subprocess.run(["dbus-send", "--session", "--print-reply",
                                   "--dest=org.kde.KWin", *args], capture_output=True,
                                  text=True, env=env, timeout=10).stdout

        deadline = time.monotonic() + START_TIMEOUT
        while True:  # KWin's scripting joins the bus a moment after its first client runs
            reply = send("/Scripting", "org.kde.kwin.Scripting.loadScript", f"string:{path}",
                         f"string:s{tag}")
            match = re.search(r"int32 (\d+)", reply)
            if match is not None:
                break
            if time.monotonic() > deadline:
                raise CompositorError(f"KWin refused the script: {reply}\n{self.describe()}")
            time.sleep(0.2)
        # KWin 5.27 names the script's object /<id>; later versions /Scripting/Script<id>.
        for object_path in (f"/{match.group(1)}", f"/Scripting/Script{match.group(1)}"):
            if send(object_path, "org.kde.kwin.Script.run"):
                break
        deadline = time.monotonic() + 5
        found: list[str] = []
        while not found and time.monotonic() < deadline:
            time.sleep(0.1)
            found = re.findall(rf"{tag} (.*)", self.log_path.read_text(errors="replace"))
        send("/Scripting", "org.kde.kwin.Scripting.unloadScript", f"string:s{tag}")
        path.unlink()
        return found[0] if found else ""

    _FIND = ("function find(re){var l=workspace.clientList();for(var i=0;i<l.length;i++){"
             "var c=l[i];if(re.test(String(c.resourceClass))||re.test(String(c.caption)))"
             "return c;}return null;}")

    def windows(self) -> str:
        return self.script("out(workspace.clientList().map(function(c){return "
                           "String(c.resourceClass)+'|'+c.caption}).join(' ; '));")

    def focused(self) -> str:
        return self.script("var a=workspace.activeClient; out(a ? String(a.resourceClass) "
                           ": '');")

    def focus_nothing(self) -> None:
        self.script("workspace.activeClient=null; out('x');")
        self.assert_focus("")

    def focus_wayland_window(self) -> None:
        self.script(f"{self._FIND} var c=find(/^{FOCUS_APP_ID}$/); "
                    "if(c){workspace.activeClient=c;} out(c?'ok':'none');")
        self.assert_focus(FOCUS_APP_ID)

    def focus_x11_window(self) -> None:
        self.script(f"{self._FIND} var c=find(/^{X11_CLASS}$/i); "
                    "if(c){workspace.activeClient=c;} out(c?'ok':'none');")
        self.assert_focus(X11_CLASS)

    def close(self) -> None:
        super().close()
        if self._session is not None:
            # kwin_wayland is dbus-run-session's child; the session, XWayland and the
            # child script end with it.
            for pid in _children(self._session.pid):
                try:
                    if "kwin_wayland" in Path(f"/proc/{pid}/cmdline").read_text():
                        os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            child = self.dir / "kwin-env.txt.pid"
            if child.exists():  # the session's child script, `sleep` by now
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(child.read_text()), signal.SIGTERM)
            try:
                self._session.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._session.pid, signal.SIGKILL)  # the group this test made
                self._session.wait(5)
        shutil.rmtree(getattr(self, "_runtime", ""), ignore_errors=True)


# ---------------------------------------------------------------------------- mutter


class Mutter(Compositor):
    """GNOME's mutter 43 ``--headless --virtual-monitor`` with XWayland, in its own D-Bus
    session. Only what the backend choice needs: its seat has no keyboard (no input device,
    and no virtual-keyboard protocol for clients), so no Wayland client here can own or read
    its clipboard ("This seat has no keyboard", says wl-clipboard); a keyboard would take a
    RemoteDesktop session over mutter's D-Bus API."""

    kind = "mutter"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self._session: subprocess.Popen[bytes] | None = None

    def start(self) -> Mutter:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Mutter:
        runtime = Path(tempfile.mkdtemp(prefix="vdb-mutter-"))
        runtime.chmod(0o700)
        self._runtime = runtime
        env = {k: v for k, v in os.environ.items()
               if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
                            "QT_QPA_PLATFORM", "XAUTHORITY")}
        env["XDG_RUNTIME_DIR"] = str(runtime)
        with open(self.log_path, "wb") as out:
            self._session = subprocess.Popen(
                ["dbus-run-session", "--", "mutter", "--headless", "--virtual-monitor",
                 "1280x800", "--wayland", "--wayland-display", "wayland-vdb"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            match = re.search(r"Using public X11 display (:\d+)",
                              self.log_path.read_text(errors="replace"))
            auth = list(runtime.glob(".mutter-Xwaylandauth.*"))
            if match and auth and (runtime / "wayland-vdb").exists():
                break
            if self._session.poll() is not None or time.monotonic() > deadline:
                raise CompositorError(f"mutter did not start:\n{self.describe()}")
            time.sleep(0.1)
        self.wayland_display = str(runtime / "wayland-vdb")
        self.x_display = match.group(1)
        self._xauthority = str(auth[0])
        return self

    def client_env(self, **extra: str) -> dict[str, str]:
        return super().client_env(XAUTHORITY=self._xauthority, **extra)

    def close(self) -> None:
        super().close()
        if self._session is not None:
            for pid in _children(self._session.pid):
                with contextlib.suppress(OSError):
                    if "mutter" in Path(f"/proc/{pid}/cmdline").read_text():
                        os.kill(pid, signal.SIGTERM)
            try:
                self._session.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._session.pid, signal.SIGKILL)  # the group this test made
                self._session.wait(5)
            self._session = None
        shutil.rmtree(getattr(self, "_runtime", ""), ignore_errors=True)


COMPOSITORS: dict[str, type[Compositor]] = {"sway": Sway, "kwin": KWin}
