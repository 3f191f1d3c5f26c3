"""The whole app on a libvirt domain of a *remote* host: ``qemu+ssh://``, libvirt's own ssh
transport (the ``ssh`` program) through a private sshd on localhost (tests/libvirt/sshd.py)
to a session daemon of tests/libvirt/hosts.py, as another machine would be reached:

    qemu+ssh://root@localhost:PORT/session?socket=<the daemon's libvirt-sock>
        &keyfile=<a key made for the test>&command=<ssh with the test's known_hosts>

The ssh user is root, as in the issue: the session daemon runs as ``vdbtest``, and libvirtd
checks no peer uid on its socket (root passes its 0700 directories), so root is served as
over the local tests' ``qemu+unix://`` URIs. ``command=`` only keeps ssh off root's own
``~/.ssh`` (sshd.py); ``no_tty`` is not in these URIs: the app adds it (the last tests).

The clipboard both ways in text and PNG, as tests/libvirt/test_libvirt_app.py checks
locally; ``--list-vms`` over ssh; an unreachable remote (sshd stopped) and a refused key are
one line and exit status 2; and nothing waits on a terminal: a key that wants a passphrase
and an unknown host key fail at once even when the app has a terminal ssh could ask on
(with ``no_tty=0`` in the URI, the control, ssh does ask there). And the remote host lost
(its sshd gone) and back on the same address: the runtime reconnects by itself.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import LibvirtGuest, SessionDaemon
from hostx import xvfb
from sshd import INSTALL, Sshd, missing_tools
from test_libvirt_lifecycle import clipboard_both_ways
from test_libvirt_runtime import CB, TEXT, TIMEOUT, run

from tests.external import call_failed, require
from tests.libvirt.test_libvirt_app import bridge, bridge_both_ways
from tests.runtime_harness import RuntimeHarness
from vdagent_bridge.runtime import Runstate
from vdagent_bridge.sites import LibvirtSite

pytestmark = pytest.mark.libvirt

ROOT = Path(__file__).resolve().parents[2]
#: A failure over ssh must come at once, not after a prompt's or a connect's timeout.
PROMPT_FREE = 15.0


@pytest.fixture(scope="module")
def sshd(libvirt_base: Path) -> Iterator[Sshd]:
    """The test's sshd (its own keys, a free port), stopped at the module's end."""
    require(missing_tools(), "ssh tests need sshd, ssh and nc", INSTALL)
    server = Sshd(libvirt_base).start()
    try:
        yield server
    finally:
        server.stop(remove=True)


@pytest.fixture(autouse=True)
def _sshd_log_on_failure(request: pytest.FixtureRequest, sshd: Sshd) -> Iterator[None]:
    yield
    if call_failed(request):
        print(f"--- sshd log ({sshd.log}):\n{sshd.log_text()[-4000:]}")


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[str]:
    with xvfb(tmp_path) as display:
        yield display


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The app's stderr, checked to be one line, status 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_the_app_bridges_a_domain_over_ssh_both_ways_text_and_png(
    guest_factory: Callable[..., LibvirtGuest], hosts: list[SessionDaemon], sshd: Sshd,
    desktop: str, tmp_path: Path,
) -> None:
    guest = guest_factory("lv-ssh")
    remote = sshd.uri(hosts[0].socket)
    logins = sshd.accepted()

    def through_sshd() -> None:
        # The start-up check and the runtime each logged in through the test's sshd, and
        # one session to the daemon's socket stays open while the app runs.
        assert sshd.accepted() >= logins + 2, sshd.log_text()[-2000:]
        assert sshd.children(), "no ssh session while the app is connected"

    bridge_both_ways(guest, [remote], desktop, tmp_path, connected=through_sshd)


def test_list_vms_over_ssh_names_the_domain_and_its_channel(
    guest_factory: Callable[..., LibvirtGuest], sshd: Sshd, hosts: list[SessionDaemon],
) -> None:
    running = guest_factory("lv-ssh-run")
    guest_factory("lv-ssh-none", start=False, agent_channel=False)
    remote = sshd.uri(hosts[0].socket)
    result = bridge("--list-vms", "--libvirt", remote)
    assert result.returncode == 0, result.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert lines[running.name][1:] == ["running", "agent channel: unix (usable)", remote]
    assert lines["lv-ssh-none"][1:] == ["shut off", "no com.redhat.spice.0 channel", remote]
    # The same domains as the local URI of the same daemon lists.
    local = bridge("--list-vms", "--libvirt", hosts[0].uri)
    assert [line.split("\t")[:3] for line in local.stdout.splitlines()] == \
        [line.split("\t")[:3] for line in result.stdout.splitlines()]


def test_an_unreachable_or_refusing_remote_is_one_line_and_status_2(
    sshd: Sshd, hosts: list[SessionDaemon], libvirt_base: Path,
) -> None:
    stopped = Sshd(libvirt_base).start()
    stopped.stop()  # nothing listens on its port now
    cases = {
        "Connection refused": stopped.uri(hosts[0].socket),
        "Permission denied (publickey)": sshd.uri(hosts[0].socket,
                                                  keyfile=sshd.stranger_key),
    }
    try:
        for expected, uri in cases.items():
            for args in (("--console", "--vm", "lv-x", "--libvirt", uri),
                         ("--list-vms", "--libvirt", uri)):
                started = time.monotonic()
                line = one_line(bridge(*args, timeout=60))
                assert time.monotonic() - started < PROMPT_FREE, line
                assert f"cannot connect to libvirt at {uri}: " in line, line
                assert expected in line, line
    finally:
        stopped.stop(remove=True)


def on_a_terminal(*args: str, timeout: float) -> tuple[int | None, str, str]:
    """Run the app with a pty as its controlling terminal (where ssh asks for passphrases
    and host keys): its status (None: still running after ``timeout``, then killed), its
    stderr, and what appeared on the terminal."""
    master, slave = pty.openpty()
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "app")}
    environ.pop("DISPLAY", None)  # no ssh-askpass either: the terminal is the only way
    # setsid -c: a new session whose controlling terminal is its stdin, the pty.
    app = subprocess.Popen(["setsid", "-c", sys.executable, "-m", "vdagent_bridge", *args],
                           stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=environ)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while app.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    screen += os.read(master, 4096)
                except OSError:  # EIO: no one has the terminal open any more
                    break
        try:
            status: int | None = app.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = None
            app.kill()
        _, err = app.communicate(timeout=10)
    finally:
        os.close(master)
    return status, err.decode(errors="replace"), screen.decode(errors="replace")


@pytest.mark.parametrize("case", ["a key that wants a passphrase", "an unknown host key"])
def test_ssh_never_asks_on_the_terminal_it_fails_at_once(
    case: str, sshd: Sshd, hosts: list[SessionDaemon],
) -> None:
    if case == "an unknown host key":
        uri = sshd.uri(hosts[0].socket, known_host=False)
        expected, prompt = "Host key verification failed", "continue connecting"
    else:
        uri = sshd.uri(hosts[0].socket, keyfile=sshd.locked_key)
        expected, prompt = "Permission denied (publickey)", "Enter passphrase"
    for args in (("--console", "--vm", "lv-x", "--libvirt", uri),
                 ("--list-vms", "--libvirt", uri)):
        status, err, screen = on_a_terminal(*args, timeout=PROMPT_FREE)
        assert status == 2, (status, err, screen)
        assert prompt not in screen, screen
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"cannot connect to libvirt at {uri}: " in err and expected in err, err
    # The control: where the URI asks for ssh's terminal (no_tty=0), ssh does prompt there
    # and the app waits for an answer that never comes.
    status, err, screen = on_a_terminal("--list-vms", "--libvirt", f"{uri}&no_tty=0",
                                        timeout=5)
    assert status is None and prompt in screen, (status, err, screen)


def test_a_remote_host_lost_and_back_is_noticed_and_reconnected(
    guest_factory: Callable[..., LibvirtGuest], hosts: list[SessionDaemon], sshd: Sshd,
) -> None:
    """The remote host goes away (its sshd and the ssh session stop: the libvirt connection
    closes) and comes back on the same address: the runtime says it lost the connection,
    retries, reconnects afresh (the guest saw the host go with the session) and the clipboard
    works both ways again."""
    guest = guest_factory("lv-remote-back")
    site = LibvirtSite(sshd.uri(hosts[0].socket), guest.name)

    async def scenario() -> None:
        async with RuntimeHarness([site], timeout=TIMEOUT, delay=1.0) as h:
            await h.until(lambda: h.vm.runstate is Runstate.CONNECTED
                          and h.vm.session.clipboard_ready)
            before = h.vm.conversation_id
            port = sshd.port
            await asyncio.to_thread(sshd.stop)
            await h.until(lambda: "lost the connection to libvirt"
                          in (h.vm.waiting_reason or ""))
            await asyncio.sleep(2.0)  # a retry or two while the host is away
            assert h.vm.runstate is Runstate.WAITING
            await asyncio.to_thread(sshd.start, port)
            await h.until(lambda: h.vm.runstate is Runstate.CONNECTED
                          and h.vm.session.clipboard_ready)
            assert h.vm.conversation_id != before
            h.vm.grab(CB, (TEXT,))
            await clipboard_both_ways(h, guest, "the host came back")

    run(scenario)
