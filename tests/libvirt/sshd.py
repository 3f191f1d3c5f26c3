"""A private sshd on localhost for the remote libvirt tests: libvirt's ``ssh`` transport
reaches a session daemon of tests/libvirt/hosts.py as if it were another machine.

Everything is made for the test in its own directory: a host key, the client keys (one
authorised, one that wants a passphrase, also authorised, and a stranger), an
``authorized_keys`` with the authorised ones, and ``/usr/sbin/sshd -D -e -f <its config>``
on a free port of 127.0.0.1 (``PermitRootLogin prohibit-password``: keys only; no PAM, no
password). :meth:`Sshd.stop` stops exactly the sshd it started, and the per-connection
sshd processes it forked.

The client side is the ``ssh`` program libvirt runs itself (``qemu+ssh://``). Two things
about it matter here:

- it reads the user's ``~/.ssh`` (known_hosts, config, agent): the URI's ``command=``
  parameter points at a two-line wrapper that runs ``/usr/bin/ssh -F <the test's
  ssh_config>``, which names the test's known_hosts (holding the test's host key, checked
  strictly), no agent and only the URI's ``keyfile=``. Nothing is written to root's
  ``~/.ssh``. (``no_verify=1`` would have ssh accept the key and store it there.)
- with ``socket=`` libvirt 9.0 runs ``nc -U <socket>`` on the remote side (netcat-openbsd);
  its ``virt-ssh-helper`` would ignore ``socket=`` and go to root's default daemon.

Root as the client of a session daemon run by another user: libvirtd checks no peer uid on
its socket (its 0700 directories keep others out; root passes them), as the local tests'
``qemu+unix://`` URIs show, so the ssh user is root, as a user would write
``qemu+ssh://root@host/...``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "ssh-keygen"
NC = "nc"
INSTALL = "apt-get install openssh-server openssh-client netcat-openbsd"
USER = "root"
PASSPHRASE = "not typed by anyone"
START_TIMEOUT = 10.0


class SshdError(RuntimeError):
    """The test's sshd did not start (the message has its log)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sshd:
    """One sshd on ``127.0.0.1:port`` with keys made for it (see the module docstring)."""

    def __init__(self, base: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sshd", dir=base))
        self.dir.chmod(0o700)
        self.host_key = self.dir / "host_key"
        self.key = self.dir / "client_key"
        """Authorised, no passphrase."""
        self.locked_key = self.dir / "locked_key"
        """Authorised, with a passphrase (no agent holds it): ssh would ask for it."""
        self.stranger_key = self.dir / "stranger_key"
        """Not authorised."""
        self.known_hosts = self.dir / "known_hosts"
        self.ssh_command = self.dir / "ssh"
        """ssh with the test's known_hosts (the ``command=`` of :meth:`uri`)."""
        self.unknown_host_ssh_command = self.dir / "ssh-unknown-host"
        """ssh that has never seen this host's key."""
        self.log = self.dir / "sshd.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._keys()

    def _keys(self) -> None:
        for path, passphrase in ((self.host_key, ""), (self.key, ""),
                                 (self.locked_key, PASSPHRASE), (self.stranger_key, "")):
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C",
                            f"vdagent-bridge test {path.name}", "-f", str(path)],
                           check=True, capture_output=True, timeout=20)
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.key}.pub").read_text()
                              + Path(f"{self.locked_key}.pub").read_text())
        authorized.chmod(0o600)

    # ------------------------------------------------------------------ server

    def start(self, port: int | None = None) -> Sshd:
        """Start sshd on ``port``, or on a free port (another one if that was taken
        meanwhile)."""
        # Debian's sshd wants its privilege separation directory (made by its service
        # otherwise; left in place: it is the system's).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(3 if port is None else 1):
            self.port = free_port() if port is None else port
            config = self.dir / "sshd_config"
            config.write_text("\n".join([
                f"Port {self.port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {self.host_key}",
                "PidFile none",
                f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # The keys are in a directory below /tmp (world-writable), which strict
                # modes refuses for authorized_keys' path.
                "StrictModes no",
                "LogLevel VERBOSE",
                "",
            ]))
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if f"listening on 127.0.0.1 port {self.port}" in self.log_text():
                    self._client_files()
                    return self
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
            self._stop_process()
            if "Address already in use" not in self.log_text():
                break
        raise SshdError(f"sshd did not start: {self.log_text()[-2000:]}")

    def _client_files(self) -> None:
        public = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[localhost]:{self.port} {public[0]} {public[1]}\n")
        (self.dir / "no_known_hosts").write_text("")
        for command, known_hosts, checking in (
                (self.ssh_command, self.known_hosts, "yes"),
                # A host ssh has never seen, checked as ssh does by default: it asks.
                (self.unknown_host_ssh_command, self.dir / "no_known_hosts", "ask")):
            config = command.with_name(f"{command.name}_config")
            config.write_text("\n".join([
                f"UserKnownHostsFile {known_hosts}",
                "GlobalKnownHostsFile /dev/null",
                f"StrictHostKeyChecking {checking}",
                "IdentitiesOnly yes",
                "IdentityAgent none",
                "ConnectTimeout 10",
                "",
            ]))
            command.write_text(f'#!/bin/sh\nexec {SSH} -F {config} "$@"\n')
            command.chmod(0o755)

    def children(self) -> list[int]:
        """The per-connection sshd processes the listener forked (alive now)."""
        if self.process is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def stop(self, *, remove: bool = False) -> None:
        """Stop the listener and the sessions it forked (exactly those); ``remove``: and
        delete the keys and the log."""
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._stop_process()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ client

    def uri(self, libvirt_socket: Path | str, *, keyfile: Path | None = None,
            known_host: bool = True, user: str = USER, **params: str) -> str:
        """``qemu+ssh://root@localhost:PORT/session?socket=...&keyfile=...&command=...``:
        the session daemon at ``libvirt_socket`` through this sshd (``keyfile``: the
        authorised key by default; ``known_host=False``: an ssh that does not know the host
        key; ``params``: more URI parameters)."""
        command = self.ssh_command if known_host else self.unknown_host_ssh_command
        query = {"socket": str(libvirt_socket), "keyfile": str(keyfile or self.key),
                 "command": str(command), **params}
        return (f"qemu+ssh://{user}@localhost:{self.port}/session?"
                + urllib.parse.urlencode(query, safe="/"))

    def accepted(self) -> int:
        """How many logins sshd accepted so far (the bridge did come through ssh)."""
        return self.log_text().count(f"Accepted publickey for {USER} from 127.0.0.1")


def missing_tools() -> list[str]:
    return [name for name in (SSHD, SSH, SSH_KEYGEN, NC)
            if shutil.which(name) is None and not Path(name).exists()]
