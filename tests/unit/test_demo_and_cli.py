"""The demo guest's socket server, the asyncio connection around the engine, and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vdagent_bridge.cli import main
from vdagent_bridge.demo import GuestServer
from vdagent_bridge.protocol import (
    CapabilitiesReceived,
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardType,
    Event,
    HostSession,
    Selection,
)
from vdagent_bridge.runtime import AgentConnection, Endpoint, EndpointError

ROOT = Path(__file__).resolve().parents[2]


async def _wait_for(queue: asyncio.Queue[Event], kind: type) -> Event:
    while True:
        event = await asyncio.wait_for(queue.get(), 5)
        if isinstance(event, kind):
            return event


def test_guest_server_socket_is_private_and_serves_a_conversation(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with GuestServer(tmp_path / "run" / "guest.sock") as server:
            mode = os.stat(server.path).st_mode
            assert stat.S_IMODE(mode) == 0o600
            assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o700
            events: asyncio.Queue[Event] = asyncio.Queue()
            session = HostSession()
            conn = AgentConnection(session, events.put_nowait)
            await conn.connect(Endpoint.parse(f"unix:{server.path}"))
            reader = asyncio.create_task(conn.run())
            await _wait_for(events, CapabilitiesReceived)
            server.guest.copy(Selection.CLIPBOARD, {ClipboardType.UTF8_TEXT: b"over a socket"})
            server.flush()
            await _wait_for(events, ClipboardGrabbed)
            session.request_clipboard(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, conn.now())
            conn.flush()
            received = await _wait_for(events, ClipboardReceived)
            assert received == ClipboardReceived(
                Selection.CLIPBOARD, ClipboardType.UTF8_TEXT, b"over a socket"
            )
            await conn.close()
            await asyncio.wait_for(reader, 5)

    asyncio.run(scenario())


def test_a_new_host_connection_takes_over_without_a_new_announce(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with GuestServer(tmp_path / "guest.sock") as server:
            events: asyncio.Queue[Event] = asyncio.Queue()
            session = HostSession()
            first = AgentConnection(session, events.put_nowait)
            await first.connect(Endpoint("unix", path=str(server.path)))
            task = asyncio.create_task(first.run())
            await _wait_for(events, CapabilitiesReceived)
            await first.close()
            await asyncio.wait_for(task, 5)

            second = AgentConnection(session, events.put_nowait)
            await second.connect(Endpoint("unix", path=str(server.path)), fresh=False)
            task = asyncio.create_task(second.run())
            session.grab_clipboard(Selection.CLIPBOARD, (ClipboardType.UTF8_TEXT,))
            second.flush()
            for _ in range(50):
                if server.guest.selections[Selection.CLIPBOARD].holder.value == "host":
                    break
                await asyncio.sleep(0.02)
            assert server.guest.selections[Selection.CLIPBOARD].holder.value == "host"
            assert server.guest.log.count("New client connected") == 1
            assert server.connections == 2
            await second.close()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_close_drops_connections_accepted_just_before_it(tmp_path: Path) -> None:
    """A host that connects while the server closes is dropped, not left connected to a
    guest nobody serves: whether close() comes before asyncio accepts the connection, after
    it but before the serving task runs, or later."""

    async def scenario() -> None:
        server = GuestServer(tmp_path / "guest.sock")
        await server.start()
        clients = []
        for turns in range(24):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(server.path))
            clients.append(client)
            for _ in range(turns % 4):  # let the loop get this far with it
                await asyncio.sleep(0)
        await asyncio.wait_for(server.close(), 5)
        for index, client in enumerate(clients):
            client.settimeout(2)
            with client, contextlib.suppress(ConnectionResetError):
                while client.recv(65536):
                    pass  # what the guest said before it went away, then EOF
            assert client.fileno() == -1, f"client {index}"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/vm.sock", Endpoint("unix", path="/run/vm.sock")),
        ("tcp:localhost:5555", Endpoint("tcp", host="localhost", port=5555)),
        ("tcp:[::1]:5555", Endpoint("tcp", host="::1", port=5555)),
    ],
)
def test_endpoints_parse(text: str, expected: Endpoint) -> None:
    assert Endpoint.parse(text) == expected


@pytest.mark.parametrize("text", ["", "unix:", "/path", "tcp:host", "tcp:host:0", "tcp:h:99999",
                                  "ftp:x"])
def test_bad_endpoints_are_one_readable_line(text: str) -> None:
    with pytest.raises(EndpointError) as info:
        Endpoint.parse(text)
    assert "\n" not in str(info.value)


def test_cli_demo_runs_both_directions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--console", "--demo", "--log-level", "warning"]) == 0
    out = capsys.readouterr().out
    assert "Hello from the guest" in out
    assert "b'Hello from the host'" in out
    assert "'notes.txt': 11" in out
    assert "demo done" in out


@pytest.mark.parametrize(
    "args",
    [["--endpoint", "unix:/nonexistent/agent.sock"], ["--endpoint", "bogus"], ["--nope"]],
)
def test_cli_errors_are_one_line_and_nonzero(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vdagent_bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "app")},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


class _ServerThread:
    """A GuestServer on its own event loop in a thread (the CLI runs its own loop)."""

    def __init__(self, path: Path) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.server = GuestServer(path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> GuestServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_cli_keeps_a_vm_connected_and_exports_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = tmp_path / "agent.sock"
    state = tmp_path / "state"
    exported = tmp_path / "handover.json"
    with _ServerThread(sock) as server:
        assert main(["--console", "--vm", "vm1", "--endpoint", f"unix:{sock}", "--seconds", "1",
                     "--state-dir", str(state), "--log-level", "warning"]) == 0
        out = capsys.readouterr().out
        assert "vm1: connected" in out
        assert "guest caps: MOUSE_STATE" in out
        assert main(["--vm", "vm1", "--export-state", str(exported),
                     "--state-dir", str(state)]) == 0
        assert stat.S_IMODE(os.stat(exported).st_mode) == 0o600

        # Another instance takes the conversation over, on the same guest: no new announce.
        assert main(["--console", "--vm", "vm2", "--endpoint", f"unix:{sock}", "--seconds", "1",
                     "--import-state", str(exported), "--state-dir", str(state),
                     "--log-level", "warning"]) == 0
        assert server.guest.log.count("New client connected") == 1
        assert server.connections == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qmp", "unix:/q"], "--qmp must follow the --endpoint"),
        (["--endpoint", "unix:/a", "--qmp", "unix:/q", "--qmp", "unix:/r"], "two --qmp"),
    ],
)
def test_cli_usage_errors_exit_2_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--export-state", "/tmp/x.json", "--state-dir", "/nonexistent-dir"], "no saved state"),
        (["--endpoint", "unix:/nonexistent/agent.sock"], "is the VM running?"),
    ],
)
def test_cli_bad_paths_return_2_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_cli_takes_a_vm_from_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = tmp_path / "agent.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'[[vm]]\nname = "dev"\n[[vm.site]]\nagent = "unix:{sock}"\n')
    with _ServerThread(sock):
        assert main(["--console", "--config", str(config), "--vm", "dev", "--seconds", "1",
                     "--state-dir", str(tmp_path / "state"), "--log-level", "warning"]) == 0
    assert "dev: connected" in capsys.readouterr().out


def test_cli_reports_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[defaults]\nclipboard = "sideways"\n')
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "config.toml: defaults.clipboard" in err and err.strip().count("\n") == 0
