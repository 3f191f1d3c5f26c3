"""Smoke tests of the QEMU fixture: real guests, real agent, real live migration, raw bytes.

Why raw ``struct`` and not the engine: these tests prove the fixture and the guest behaviour
the bridge is designed around (docs/qemu.md §4) independently of the code under test.

Both tests: boot a source VM (and an incoming destination), speak the vdagent protocol on the
source's agent socket, copy in the guest, then migrate.  They differ in when the host reaches
the destination's socket:

- pre-connect (connected during the incoming phase): the guest sees no disconnect, caps,
  serials and the guest-owned clipboard carry over;
- late connect (after the switchover): the guest sees the host go away, reopens the port and
  needs a new caps announce with request=1; serials restart.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

import pytest
from vm import LOST_CLIENT_LINE, READY_LINE, QmpClient, Vm, migrate

from tests.raw_host import (
    CAP_CLIPBOARD_NO_RELEASE_ON_REGRAB,
    CLIPBOARD,
    CLIPBOARD_GRAB,
    CLIPBOARD_RELEASE,
    CLIPBOARD_REQUEST,
    GUEST_CAPS,
    HOST_CAPS,
    SEL_CLIPBOARD,
    TYPE_NONE,
    TYPE_UTF8_TEXT,
    sel,
)
from tests.raw_host import RawHost as _RawHost

pytestmark = pytest.mark.qemu

IO_TIMEOUT = 10.0  # generous: TCG, and the first message after a migration is slower

#: This host also announces CLIPBOARD_NO_RELEASE_ON_REGRAB.
QEMU_HOST_CAPS = HOST_CAPS | 1 << CAP_CLIPBOARD_NO_RELEASE_ON_REGRAB
assert QEMU_HOST_CAPS == 0x00030067

RawHost = functools.partial(_RawHost, timeout=IO_TIMEOUT, caps=QEMU_HOST_CAPS, peer="QEMU")


def announce(host: _RawHost) -> None:
    """The daemon's caps (request=1) → ours (request=1) → its answer (request=0)."""
    request, caps = host.expect_caps()
    assert (request, caps) == (1, GUEST_CAPS), f"guest caps {caps:#010x} request={request}"
    host.send_caps(request=1)
    request, caps = host.expect_caps()
    assert (request, caps) == (0, GUEST_CAPS)


def copy_in_guest(vm: Vm, host: _RawHost, text: bytes) -> int:
    """Copy ``text`` in the guest; return the serial of the GRAB the host receives."""
    vm.guest_copy(text)
    selection, serial, types = host.expect_grab()
    assert selection == SEL_CLIPBOARD
    assert TYPE_UTF8_TEXT in types, types
    return serial


def test_pre_connected_host_sees_no_disconnect(vm_factory: Callable[..., Vm]) -> None:
    """Host on the destination socket before the switchover: nothing is lost."""
    dst = vm_factory("dst", incoming=True)
    src = vm_factory("src")
    guest_text = b"copied in the guest before the migration \xe2\x9c\x93"
    host_text = b"host clipboard after the migration"

    with (
        RawHost(src.agent_socket) as host,
        RawHost(dst.agent_socket) as dst_host,
        QmpClient(src.qmp_socket) as app_src_qmp,
        QmpClient(dst.qmp_socket) as app_dst_qmp,
    ):
        announce(host)
        serial = copy_in_guest(src, host, guest_text)

        result = migrate(src, dst)
        assert result.status == "completed"
        assert "RESUME" in result.destination_events
        print(f"boot {src.boot_seconds:.1f} s; {result}")

        # The app's own monitors (beside the fixture's) see the switchover too: the events
        # capability the fixture set is per VM, not per monitor.
        app_src_qmp.wait_event("MIGRATION", match=lambda e: e["data"]["status"] == "completed")
        app_dst_qmp.wait_event("RESUME")

        # The old connection: no bytes and no EOF while the source QEMU lives.
        host.assert_silent(0.3)

        # The guest-owned clipboard is still served through the destination.
        assert dst_host.request(SEL_CLIPBOARD, TYPE_UTF8_TEXT) == (TYPE_UTF8_TEXT, guest_text)

        # The daemon's serial count carried over: the next serial is accepted.
        dst_host.send(
            CLIPBOARD_GRAB, sel(SEL_CLIPBOARD) + struct.pack("<II", serial + 1, TYPE_UTF8_TEXT)
        )
        paste = dst.guest_paste_async()
        assert dst_host.expect(CLIPBOARD_REQUEST) == sel(SEL_CLIPBOARD) + struct.pack(
            "<I", TYPE_UTF8_TEXT
        )
        dst_host.send(CLIPBOARD, sel(SEL_CLIPBOARD) + struct.pack("<I", TYPE_UTF8_TEXT) + host_text)
        assert paste.result(IO_TIMEOUT + 5) == host_text

        log = dst.daemon_log()
        assert LOST_CLIENT_LINE not in log
        assert "grab discard" not in log
        assert log.count(READY_LINE) == 1, "the daemon reopened the port"

        # Only quitting the source ends the old connection.
        src.quit()
        host.assert_eof()


def test_late_connected_host_must_reannounce(vm_factory: Callable[..., Vm]) -> None:
    """Host reaches the destination only after the switchover: the guest saw it leave."""
    dst = vm_factory("dst", incoming=True)
    src = vm_factory("src")

    with RawHost(src.agent_socket) as host:
        announce(host)
        copy_in_guest(src, host, b"lost with the connection")
        result = migrate(src, dst, quit_source=True)
        assert result.status == "completed"
        print(f"boot {src.boot_seconds:.1f} s; {result}")
        host.assert_eof()

    # At RESUME the guest sees the host side closed; the daemon reopens the port at once
    # (silently: no second READY_LINE) and waits for a host.
    dst.wait_log(LOST_CLIENT_LINE, timeout=IO_TIMEOUT)
    with RawHost(dst.agent_socket) as dst_host:
        dst_host.send_caps(request=1)
        request, caps = dst_host.expect_caps()
        assert (request, caps) == (0, GUEST_CAPS)
        # The guest-owned clipboard was dropped at the disconnect (docs/qemu.md §4.3).
        assert (CLIPBOARD_RELEASE, sel(SEL_CLIPBOARD)) in dst_host.seen
        assert dst_host.request(SEL_CLIPBOARD, TYPE_UTF8_TEXT) == (TYPE_NONE, b"")

        # After the re-announce the serial count restarts and copy/paste works again.
        assert copy_in_guest(dst, dst_host, b"copied after the migration") == 0
        assert dst_host.request(SEL_CLIPBOARD, TYPE_UTF8_TEXT) == (
            TYPE_UTF8_TEXT,
            b"copied after the migration",
        )
