"""The URI the bridge opens for a libvirt site: an ``ssh`` transport never prompts (the real
ssh, with a key that wants a passphrase on a terminal: tests/libvirt/test_libvirt_remote.py)."""

from __future__ import annotations

import pytest

from vdagent_bridge.runtime.libvirt.api import non_interactive


@pytest.mark.parametrize(("uri", "opened"), [
    ("qemu+ssh://host/system", "qemu+ssh://host/system?no_tty=1"),
    ("qemu+ssh://root@host:2222/session?socket=/run/x/libvirt-sock&keyfile=/k",
     "qemu+ssh://root@host:2222/session?socket=/run/x/libvirt-sock&keyfile=/k&no_tty=1"),
    # The user's own choice stands, whatever it is.
    ("qemu+ssh://host/system?no_tty=0", "qemu+ssh://host/system?no_tty=0"),
    ("qemu+ssh://host/system?keyfile=/k&no_tty=1", "qemu+ssh://host/system?keyfile=/k&no_tty=1"),
    # Not libvirt's ssh-program transport: as given.
    ("qemu:///session", "qemu:///session"),
    ("qemu:///system", "qemu:///system"),
    ("qemu+unix:///session?socket=/tmp/s", "qemu+unix:///session?socket=/tmp/s"),
    ("qemu+tls://host/system", "qemu+tls://host/system"),
    ("qemu+libssh://host/system", "qemu+libssh://host/system"),
    ("qemu+libssh2://host/system", "qemu+libssh2://host/system"),
    ("qemu://ssh/system", "qemu://ssh/system"),
])
def test_an_ssh_uri_is_opened_with_no_tty_unless_it_says_otherwise(uri: str,
                                                                   opened: str) -> None:
    assert non_interactive(uri) == opened
