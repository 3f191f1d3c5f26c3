"""The whole app on libvirt domains, as a user runs it: ``--vm NAME --libvirt URI``, on a
host Xvfb (xclip plays the host's applications), the clipboard both ways in text and PNG, on a
session daemon and on a system daemon;
``--list-vms``; and the one-line errors of a VM that cannot be bridged."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import LibvirtGuest, SessionDaemon, channel_path
from hostx import HostX, host_env, xvfb

pytestmark = pytest.mark.libvirt

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
def png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (RGB), made by hand as an application would copy one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(
        b"\0" + b"".join(bytes((x * 60, y * 80, 200)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = png()


def bridge(*args: str, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "app"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "vdagent_bridge", *args], env=environ,
                          capture_output=True, text=True, timeout=timeout)


def until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[str]:
    with xvfb(tmp_path) as display:
        yield display


def bridge_both_ways(guest: LibvirtGuest, uris: list[str], desktop: str, tmp_path: Path,
                     *, connected: Callable[[], None] | None = None) -> None:
    """Run the app on ``guest`` (``--vm NAME --libvirt URI...``) and copy text and a PNG each
    way between the host's applications (xclip) and the guest's; the guest never sees the
    host go. ``connected`` runs once the app is connected (checks of the caller's own), and
    again after the copies."""
    host = HostX(desktop, tmp_path)
    env = host_env(desktop, tmp_path)
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PYTHONPATH=str(ROOT / "app"))
    log = tmp_path / "app.log"
    sites = [arg for uri in uris for arg in ("--libvirt", uri)]
    with open(log, "wb") as out:
        app = subprocess.Popen(
            [sys.executable, "-m", "vdagent_bridge", "--vm", guest.name, *sites,
             "--no-tray", "--state-dir", str(tmp_path / "state"), "--log-level", "info"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        until(lambda: re.search(rf"{guest.name}: connected to {guest.name} on "
                                rf"{re.escape(uris[0])}", log.read_text(errors="replace")),
              "the app connected")
        if connected is not None:
            connected()
        time.sleep(0.5)  # the caps exchange

        guest.guest_copy(b"text copied in the guest")
        until(lambda: host.paste() == b"text copied in the guest", "the host clipboard")
        guest.guest_copy(PNG, target="image/png")
        until(lambda: host.paste(target="image/png") == PNG, "the guest's PNG on the host")

        host.copy(b"text copied on the host")
        until(lambda: guest.guest_paste() == b"text copied on the host", "the guest paste")
        host.copy(PNG, target="image/png")
        until(lambda: guest.guest_paste(target="image/png") == PNG, "the host's PNG in the "
              "guest")
        assert "lost spice client" not in guest.daemon_log()
        if connected is not None:
            connected()
    finally:
        host.close()
        app.terminate()
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(5)
        if app.returncode not in (0, -15):
            print(log.read_text(errors="replace"))


def test_the_app_bridges_a_session_domain_both_ways_text_and_png(
    guest_factory: Callable[..., LibvirtGuest], desktop: str, tmp_path: Path,
) -> None:
    guest = guest_factory("lv-app")
    bridge_both_ways(guest, [host.uri for host in guest.hosts], desktop, tmp_path)


def test_the_app_bridges_a_system_domain_both_ways_text_and_png(
    system_guest_factory: Callable[..., LibvirtGuest], desktop: str, tmp_path: Path,
) -> None:
    """A ``qemu:///system`` domain: QEMU runs as another user (root here) and its channel
    socket is libvirt's, under /var/lib/libvirt; the app reaches the channel only through
    the daemon (virDomainOpenChannel), never by the socket's path (the test's daemon lives in
    its own mount namespace, where that path does not even exist for the app)."""
    guest = system_guest_factory("lv-sys")
    (system,) = guest.hosts
    socket_path = channel_path(system.uri, guest.name, "com.redhat.spice.0")
    assert socket_path is not None and socket_path.startswith("/var/lib/libvirt/qemu/channel/")
    assert not Path(socket_path).exists()  # not in the app's view of the file system
    bridge_both_ways(guest, [system.uri], desktop, tmp_path)


def test_list_vms_names_each_domain_its_state_and_its_agent_channel(
    guest_factory: Callable[..., LibvirtGuest], hosts: list[SessionDaemon],
) -> None:
    running = guest_factory("lv-run")
    guest_factory("lv-none", start=False, agent_channel=False)
    guest_factory("lv-spice", start=False, agent_type="spicevmc")
    result = bridge("--list-vms", "--libvirt", hosts[0].uri)
    assert result.returncode == 0, result.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert lines[running.name][1:] == ["running", "agent channel: unix (usable)", hosts[0].uri]
    assert lines["lv-none"][1:3] == ["shut off", "no com.redhat.spice.0 channel"]
    assert lines["lv-spice"][2].startswith("agent channel: spicevmc (a SPICE viewer")
    # Another host's domains are listed on their own lines; an unreachable one is one line.
    both = bridge("--list-vms", "--libvirt", hosts[0].uri, "--libvirt", hosts[1].uri)
    assert both.returncode == 0 and both.stdout == result.stdout  # b has no domain
    gone = bridge("--list-vms", "--libvirt", "qemu+unix:///session?socket=/nonexistent/sock")
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1
    assert "cannot connect to libvirt at qemu+unix:///session?socket=/nonexistent/sock" \
        in gone.stderr


def test_a_vm_that_cannot_be_bridged_is_one_line_and_status_2(
    guest_factory: Callable[..., LibvirtGuest], hosts: list[SessionDaemon],
) -> None:
    guest_factory("lv-nochannel", start=False, agent_channel=False)
    uri = hosts[0].uri
    cases = {
        "no domain lv-unknown on": ("--console", "--vm", "lv-unknown", "--libvirt", uri),
        "has no com.redhat.spice.0 channel": ("--console", "--vm", "lv-nochannel",
                                              "--libvirt", uri),
        "cannot connect to libvirt at": ("--console", "--vm", "x", "--libvirt",
                                         "qemu+unix:///session?socket=/nonexistent/sock"),
        "libvirt URI 'session': expected driver://": ("--console", "--vm", "x", "--libvirt",
                                                      "session"),
        "its sites are --endpoint or --libvirt, not both": (
            "--console", "--vm", "x", "--libvirt", uri, "--endpoint", "unix:/x"),
    }
    for expected, args in cases.items():
        result = bridge(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_without_libvirt_python_libvirt_says_what_to_install(tmp_path: Path) -> None:
    # A module that fails to import stands for a machine without libvirt-python.
    (tmp_path / "libvirt.py").write_text("raise ImportError('No module named libvirt')\n")
    result = bridge("--console", "--vm", "x", "--libvirt", "qemu:///session",
                    env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'app'}"})
    assert result.returncode == 2
    assert "needs libvirt-python" in result.stderr and "pip install" in result.stderr
    assert result.stderr.count("\n") == 1
