"""Real libvirt for the tests: session daemons as separate "hosts", and a test guest on them.

Why session daemons of an unprivileged user (docs: libvirt's session mode): each
``libvirtd`` started with its own ``XDG_*`` directories is a separate host to libvirt (its own
socket, domains, ``host_uuid``), so two of them on one machine migrate a real TCG guest
between them. A root ``libvirtd`` is always the privileged one and ignores ``XDG_*``, so the
daemons run as :data:`USER`, created on first use. The tests (as root) reach them through
``qemu+unix:///session?socket=...`` URIs (root passes their 0700 directories).

The guest is the QEMU tests' image (tests/qemu/guest_image.py: the real spice-vdagentd and
session agent), copied where the daemons' user can read it, defined with two unix channels
whose paths libvirt makes: ``com.redhat.spice.0`` (the app under test opens it through
libvirt) and the guest command channel, which this fixture reaches directly (root) at the
path the live XML names, for the guest's logs and its X clipboard.

Everything goes through ``virsh`` (not libvirt-python): the fixture shares no code with the
app under test. Each :class:`SessionDaemon` stops exactly the daemon it started, after
destroying what runs on it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from vm import CMD_PORT_NAME, KERNEL_CMDLINE, CommandChannel, CommandResult, GuestShell, VmError

from tests.external import system_user

USER = "vdbtest"
"""The unprivileged user the session daemons run as."""
LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "virsh"
#: The QEMU user Debian's libvirt is built with.
SYSTEM_QEMU_USER = "libvirt-qemu"
START_TIMEOUT = 20.0


class LibvirtError(RuntimeError):
    """A daemon or virsh failed (the message has virsh's own words)."""


def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """A system user with a group of its own, created if missing."""
    return system_user(name)


def virsh(uri: str, *args: str, timeout: float = 60.0, check: bool = True) -> str:
    """Run ``virsh -c URI args``; its output, or LibvirtError with what virsh said."""
    result = subprocess.run([VIRSH, "-q", "-c", uri, *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise LibvirtError(f"virsh {' '.join(args)}: {result.stderr.strip() or result.stdout}")
    return result.stdout


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. A daemonized libvirtd is not our child: once it exits it may stay
    a zombie until whoever adopted it reaps it, and a zombie has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Daemon:
    """One libvirtd this fixture started (a "host"): stopped by :meth:`stop`, exactly it."""

    uri: str

    def __init__(self, base: Path, name: str, host_uuid: str) -> None:
        self.name = name
        self.dir = base / name
        self.host_uuid = host_uuid
        self.pid: int | None = None

    def start(self) -> Daemon:
        raise NotImplementedError

    def stop(self) -> None:
        """Destroy the domains it runs, then stop the daemon (exactly the one started)."""
        if self.pid is None:
            return
        try:
            for name in virsh(self.uri, "list", "--name", check=False, timeout=20).split():
                virsh(self.uri, "destroy", name, check=False, timeout=20)
        except subprocess.TimeoutExpired:
            pass
        self._terminate()

    def restart(self) -> float:
        """Stop the daemon and start it again, leaving its domains running (what a package
        upgrade's ``systemctl restart libvirtd`` does: QEMU outlives the daemon, and the new
        one takes its domains back from its state files). Returns how long the daemon was
        down, in s."""
        down = time.monotonic()
        self._terminate(timeout=30)
        self.start()
        return time.monotonic() - down

    def _terminate(self, timeout: float = 10) -> None:
        """SIGTERM the daemon and wait for it to exit (SIGKILL after ``timeout`` s)."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def host_path(self, path: str) -> Path:
        """A path the daemon gave (a channel's socket) as the tests see it."""
        return Path(path)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.dir / "libvirtd.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class SessionDaemon(Daemon):
    """One unprivileged libvirtd (``qemu:///session``) with its own directories: one host."""

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"

    def start(self) -> SessionDaemon:
        user = ensure_user()
        config = self.dir / "config" / "libvirt"
        for directory in (self.dir, self.dir / "run", self.dir / "config", config,
                          self.dir / "cache", self.dir / "home"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (config / "libvirtd.conf").write_text(
            f'host_uuid = "{self.host_uuid}"\nlog_outputs = "3:file:{self.dir}/libvirtd.log"\n'
        )
        # No virtlogd to start and stop: QEMU's output goes to a file.
        (config / "qemu.conf").write_text('stdio_handler = "file"\n')
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.dir / "home"),
            "XDG_RUNTIME_DIR": str(self.dir / "run"),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
            "XDG_CACHE_HOME": str(self.dir / "cache"),
            "XDG_DATA_HOME": str(self.dir / "home" / "share"),
        }
        subprocess.run(["runuser", "-u", USER, "--", "env", "-i",
                        *(f"{k}={v}" for k, v in env.items()), LIBVIRTD, "-d"],
                       check=True, capture_output=True, timeout=START_TIMEOUT)
        pid_file = self.dir / "run" / "libvirt" / "libvirtd.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.socket.exists() and pid_file.exists()):
            if time.monotonic() > deadline:
                raise LibvirtError(f"libvirtd {self.name} did not start: {self.log_tail()}")
            time.sleep(0.05)
        self.pid = int(pid_file.read_text().strip())
        virsh(self.uri, "version", timeout=START_TIMEOUT)  # answers: ready
        return self

class SystemDaemon(Daemon):
    """A privileged libvirtd (``qemu:///system``) of the test's own, in a private mount
    namespace: its own ``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``,
    ``/var/cache/libvirt`` and ``/etc/libvirt``, and its client socket in a directory the
    tests see, so it neither meets nor disturbs a system libvirtd the machine may run. QEMU
    runs as root (no ``libvirt-qemu`` user needed) and without cgroups."""

    @property
    def socket(self) -> Path:
        return self.dir / "sock" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    def start(self) -> SystemDaemon:
        # A privileged QEMU driver resolves its built-in default user and group first, even
        # when qemu.conf names others (Debian's libvirt-daemon-system creates them).
        ensure_user(SYSTEM_QEMU_USER)
        d = self.dir
        for sub in ("sock", "lib", "log", "cache", "etc", "etc/qemu"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "etc" / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{d / "sock"}"\nhost_uuid = "{self.host_uuid}"\n'
            f'log_outputs = "3:file:{d}/libvirtd.log"\n')
        (d / "etc" / "qemu.conf").write_text(
            'user = "root"\ngroup = "root"\ncgroup_controllers = [ ]\n'
            'stdio_handler = "file"\n')
        for name in ("libvirt.conf", "libvirt-admin.conf"):
            if Path("/etc/libvirt", name).exists():
                shutil.copyfile(Path("/etc/libvirt", name), d / "etc" / name)
        for mount in ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
                      "/var/cache/libvirt", "/etc/libvirt"):
            Path(mount).mkdir(parents=True, exist_ok=True)
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /run/libvirt; "
            f"mount --bind {d / 'lib'} /var/lib/libvirt; "
            f"mount --bind {d / 'log'} /var/log/libvirt; "
            f"mount --bind {d / 'cache'} /var/cache/libvirt; "
            f"mount --bind {d / 'etc'} /etc/libvirt; "
            f"{LIBVIRTD} -d -p /run/libvirt/libvirtd.pid; "
            f"for i in $(seq 200); do [ -S {self.socket} ] && break; sleep 0.05; done; "
            f"cat /run/libvirt/libvirtd.pid > {d / 'pid'}"
        )
        subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh",
                        "-c", script], check=True, capture_output=True, timeout=START_TIMEOUT)
        self.pid = int((d / "pid").read_text().strip())
        virsh(self.uri, "version", timeout=START_TIMEOUT)
        return self

    #: Where the namespace's directories are, in the tests' view.
    _MOUNTS = {"/var/lib/libvirt": "lib", "/var/log/libvirt": "log",
               "/var/cache/libvirt": "cache", "/etc/libvirt": "etc"}

    def host_path(self, path: str) -> Path:
        for inside, outside in self._MOUNTS.items():
            if path.startswith(inside + "/"):
                return self.dir / outside / path[len(inside) + 1:]
        return Path(path)


def domain_xml(name: str, guest_dir: Path, logs: Path, *, agent_channel: bool = True,
               agent_type: str = "unix", memory_mib: int = 256,
               on_reboot: str = "destroy") -> str:
    """The test guest as a libvirt domain (TCG, 256 MiB, kernel + initramfs, no disk).

    ``agent_channel=False`` leaves the agent port out (a VM the bridge cannot serve);
    ``agent_type="spicevmc"`` gives it the SPICE viewer's kind of channel instead;
    ``memory_mib``: its RAM (a 64 MiB clipboard in the guest wants more than 256);
    ``on_reboot="restart"``: a reboot in the guest boots it again in the same QEMU.
    """
    if not agent_channel:
        agent = ""
    elif agent_type == "unix":
        agent = ("<channel type='unix'><source mode='bind'/>"
                 "<target type='virtio' name='com.redhat.spice.0'/></channel>")
    else:  # spicevmc: only with SPICE graphics (the domain is defined, never started)
        agent = (f"<channel type='{agent_type}'>"
                 "<target type='virtio' name='com.redhat.spice.0'/></channel>"
                 "<graphics type='spice' autoport='yes'/>")
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest_dir / 'vmlinuz'}</kernel>
    <initrd>{guest_dir / 'initramfs.cpio.gz'}</initrd>
    <cmdline>{KERNEL_CMDLINE}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>{on_reboot}</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <controller type='virtio-serial' index='0'/>
    <serial type='file'><source path='{logs / (name + '-console.log')}' append='on'/>
      <target port='0'/></serial>
    {agent}
    <channel type='unix'><source mode='bind'/>
      <target type='virtio' name='{CMD_PORT_NAME}'/></channel>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def channel_path(uri: str, domain: str, target: str) -> str | None:
    """The socket libvirt made for a unix channel of a running domain (its live XML)."""
    tree = ET.fromstring(virsh(uri, "dumpxml", domain))
    for channel in tree.iter("channel"):
        name = channel.find("target")
        source = channel.find("source")
        if name is not None and name.get("name") == target and source is not None:
            return source.get("path")
    return None


class LibvirtGuest(GuestShell):
    """The test guest as a domain on one of several :class:`Daemon` hosts."""

    def __init__(self, name: str, hosts: list[Daemon], image_dir: Path, logs: Path,
                 **xml_options: object) -> None:
        self.name = name
        self.hosts = hosts
        self.host = hosts[0]
        self._xml = domain_xml(name, image_dir, logs, **xml_options)  # type: ignore[arg-type]
        self._channel: CommandChannel | None = None
        self._channel_host: Daemon | None = None

    # ---------------------------------------------------------------- life

    def define(self, host: Daemon | None = None) -> LibvirtGuest:
        """Define the domain on ``host`` (the first by default), not started."""
        self.host = host or self.hosts[0]
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as xml:
            xml.write(self._xml)
            xml.flush()
            virsh(self.host.uri, "define", xml.name)
        return self

    def start(self, host: Daemon | None = None, *, wait: bool = True) -> LibvirtGuest:
        """Define and start the domain on ``host`` (the first by default); wait for its agent."""
        self.define(host)
        virsh(self.host.uri, "start", self.name)
        if wait:
            self.wait_log("opening vdagent virtio channel", timeout=60)
        return self

    def state(self, host: Daemon | None = None) -> str:
        """``virsh domstate --reason`` on ``host`` (the current one), "" if it has none."""
        return virsh((host or self.host).uri, "domstate", "--reason", self.name,
                     check=False).strip()

    def migrate(self, to: Daemon, *, bandwidth: int = 1000, extra: tuple[str, ...] = (),
                timeout: float = 120.0) -> None:
        """``virsh migrate --live`` to ``to`` (its own console file), then it is the host."""
        xml = virsh(self.host.uri, "dumpxml", "--migratable", self.name)
        xml = re.sub(r"(-console)(-[a-z0-9]+)?\.log", rf"\1-{to.name}.log", xml)
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as file:
            file.write(xml)
            file.flush()
            virsh(self.host.uri, "migrate", "--live", "--bandwidth", str(bandwidth),
                  "--listen-address", "127.0.0.1", "--xml", file.name, *extra, self.name,
                  to.uri, "tcp://127.0.0.1", timeout=timeout)
        self.host = to
        self._drop_channel()

    def save(self, to: Path) -> None:
        """``virsh save``: the guest's state to ``to`` (a file the daemon can write); the
        domain is shut off (saved) after."""
        virsh(self.host.uri, "save", self.name, str(to), timeout=120)
        self._drop_channel()

    def restore(self, source: Path) -> None:
        """``virsh restore``: the domain runs again from ``source``."""
        virsh(self.host.uri, "restore", str(source), timeout=120)

    def managed_save(self) -> None:
        """``virsh managedsave`` (what libvirt-guests does at host shutdown)."""
        virsh(self.host.uri, "managedsave", self.name, timeout=120)
        self._drop_channel()

    def start_saved(self) -> None:
        """``virsh start`` of a managed-saved domain: restored from its image."""
        virsh(self.host.uri, "start", self.name, timeout=120)

    def destroy(self) -> None:
        for host in self.hosts:
            virsh(host.uri, "destroy", self.name, check=False, timeout=30)
            virsh(host.uri, "undefine", "--managed-save", self.name, check=False, timeout=30)
        self._drop_channel()

    # ---------------------------------------------------------------- guest shell

    def _drop_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._channel_host = None

    def _run_command(self, script: str, stdin: bytes, timeout: float) -> CommandResult:
        if self._channel is None or self._channel_host is not self.host:
            self._drop_channel()
            path = channel_path(self.host.uri, self.name, CMD_PORT_NAME)
            if path is None:
                raise VmError(f"{self.name}: no command channel on {self.host.name}")
            self._channel = CommandChannel(str(self.host.host_path(path)))
            self._channel_host = self.host
        return self._channel.run(script, stdin, timeout, timeout + 5.0)

    def describe(self, lines: int = 60, fetch_guest_logs: bool = True) -> str:
        out = [f"domain {self.name} on {self.host.name}: {self.state()}"]
        for host in self.hosts:
            out.append(f"--- libvirtd {host.name} log:\n{host.log_tail(lines)}")
        if fetch_guest_logs:
            try:
                out.append("--- guest daemon log:\n" + self.daemon_log(timeout=3))
            except Exception as err:  # noqa: BLE001 - a report, whatever went wrong
                out.append(f"(guest logs unavailable: {err})")
        return "\n".join(out)


def copy_image(kernel: Path, initrd: Path, into: Path) -> Path:
    """The guest image where the daemons' user can read it (0755 dirs, 0644 files)."""
    into.mkdir(parents=True, exist_ok=True)
    for source in (kernel, initrd):
        shutil.copyfile(source, into / source.name)
        (into / source.name).chmod(0o644)
    into.chmod(0o755)
    return into
