"""Security review points (issue 6), each with a test.

- Files the app writes (conversation state, exports, imports) are 0600 in 0700 directories,
  whatever the umask: the state may hold clipboard bytes.
- Sockets the app creates (the demo guest's) are never reachable by another user, not even
  between bind() and chmod().
- TCP is used only for an endpoint given explicitly as ``tcp:HOST:PORT``; nothing in the app
  listens on TCP, and no other spelling is taken for a TCP address.

(The clipboard direction policy and image decoding limits belong to the Qt clipboard bridge
and are tested with it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vdagent_bridge.demo import GuestServer
from vdagent_bridge.protocol import ClipboardType, Selection
from vdagent_bridge.runtime import Endpoint, EndpointError, Runstate, Site, VmRuntime
from vdagent_bridge.state import AppPaths, StateStore
from vdagent_bridge.state.config import ConfigError, parse_config

APP = Path(__file__).resolve().parents[2] / "app" / "vdagent_bridge"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_state_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    with umask(0):
        store = StateStore(tmp_path / "state" / "vms")
        saved = store.save("vm", {"secret": "clipboard bytes"})
        exported = store.export("vm", tmp_path / "handover.json")
        imported = StateStore(tmp_path / "other").import_(exported, "vm2")
    other = StateStore(tmp_path / "other").path(imported.vm)
    for path in (saved, exported, other):
        assert mode(path) == 0o600, path
    for directory in (saved.parent, other.parent):
        assert mode(directory) == 0o700, directory


def test_everything_the_runtime_writes_is_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VM connected with its state store in the default (XDG) place: every directory the
    app made is 0700 and every file 0600."""
    home = tmp_path / "home"
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    paths = AppPaths.default()

    async def scenario() -> None:
        sock = tmp_path / "run" / "agent.sock"
        async with GuestServer(sock) as server:
            store = StateStore(paths.vm_state)
            vm = VmRuntime("vm1", [Site(Endpoint("unix", path=str(sock)))], store=store)
            task = asyncio.create_task(vm.run())
            for _ in range(500):
                if vm.session.clipboard_ready:
                    break
                await asyncio.sleep(0.01)
            server.guest.copy(Selection.CLIPBOARD, {ClipboardType.UTF8_TEXT: b"secret"})
            server.flush()
            await asyncio.sleep(0.1)
            await vm.stop()
            await asyncio.wait_for(task, 5)
            store.export("vm1", tmp_path / "out.json")

    with umask(0):
        asyncio.run(scenario())
    written = [p for p in home.rglob("*") if p.parent != home]  # XDG bases are not ours
    assert any(p.is_file() for p in written), "the runtime saved no state"
    for path in written:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode(path))}"
    assert mode(tmp_path / "out.json") == 0o600


def test_the_demo_socket_is_never_reachable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between bind() and chmod() the socket has the umask's mode; what keeps others out
    then is its 0700 directory, which the server creates."""
    seen: list[tuple[int, int]] = []
    real_chmod = os.chmod

    def spy(path: str | os.PathLike[str], new_mode: int, **kwargs: object) -> None:
        if Path(path).name == "guest.sock":
            seen.append((mode(Path(path)), mode(Path(path).parent)))
        real_chmod(path, new_mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chmod", spy)

    async def scenario() -> None:
        with umask(0):
            async with GuestServer(tmp_path / "new-dir" / "guest.sock") as server:
                assert mode(server.path) == 0o600
                assert mode(server.path.parent) == 0o700

    asyncio.run(scenario())
    assert len(seen) == 1
    before_chmod, directory = seen[0]
    assert directory == 0o700, "the socket's directory was reachable while it was open"
    assert before_chmod & 0o002, "(the umask-0 window this test is about did not happen)"


@pytest.mark.parametrize(
    "text",
    ["localhost:5555", "127.0.0.1:5900", ":5900", "5900", "[::1]:5900", "host", "/run/a.sock",
     "TCP:localhost:5555", " tcp:localhost:5555", "tcp6:localhost:1", "udp:localhost:1",
     "file:/x", "unix"],
)
def test_nothing_but_the_tcp_scheme_is_taken_for_a_tcp_address(text: str) -> None:
    try:
        endpoint = Endpoint.parse(text)
    except EndpointError:
        return
    assert endpoint.kind == "unix", f"{text!r} became {endpoint}"


@pytest.mark.parametrize("path", ["/run/tcp:localhost:5555", "tcp:localhost:1", "./tcp"])
def test_a_unix_path_that_looks_like_tcp_stays_a_unix_path(path: str) -> None:
    endpoint = Endpoint.parse(f"unix:{path}")
    assert endpoint == Endpoint("unix", path=path)


@pytest.mark.parametrize("agent", ["localhost:5555", "127.0.0.1:5900", "5900", "/run/a.sock"])
def test_a_config_file_takes_tcp_only_with_the_scheme(agent: str) -> None:
    config = {"vm": [{"name": "vm", "site": [{"agent": agent}]}]}
    with pytest.raises(ConfigError):
        parse_config(config)


def test_a_unix_endpoint_never_opens_a_tcp_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tcp: list[object] = []

    async def spy(*args: object, **kwargs: object) -> object:
        tcp.append(args)
        raise AssertionError("TCP connect")

    monkeypatch.setattr(asyncio, "open_connection", spy)

    async def scenario() -> None:
        sock = tmp_path / "agent.sock"
        async with GuestServer(sock):
            vm = VmRuntime("vm", [Site(Endpoint.parse(f"unix:{sock}"))])
            task = asyncio.create_task(vm.run())
            for _ in range(500):
                if vm.session.clipboard_ready:
                    break
                await asyncio.sleep(0.01)
            assert vm.runstate is Runstate.CONNECTED
            await vm.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert tcp == []


def test_the_app_never_listens_on_tcp() -> None:
    """A source review kept as a test: no TCP server, socket or Qt TCP server in the app."""
    listening = re.compile(
        r"asyncio\.start_server|loop\.create_server|AF_INET|QTcpServer|socketserver|"
        r"http\.server|\.listen\("
    )
    found = [
        f"{path.relative_to(APP)}:{number}: {line.strip()}"
        for path in APP.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if listening.search(line)
    ]
    assert found == []
