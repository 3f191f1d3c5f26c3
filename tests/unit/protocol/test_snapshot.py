"""The session snapshot format, version 1, pinned by documents the code wrote.

A snapshot moves a conversation to another connection (a migration switchover) and is what the
state store keeps on disk between runs, so a document written by an older build must restore in
a newer one. The three documents below were written by ``HostSession.snapshot`` before the
session was split into modules (commit 813ecf8 and earlier); each one must restore to the
conversation it describes and be written back unchanged.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from tests.helpers import agent_bytes, drain
from vdagent_bridge.protocol import (
    FULL,
    HOST_CAPS,
    Capability,
    Caps,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardType,
    HostSession,
    MonitorConfig,
    Owner,
    Selection,
    WireFormat,
)
from vdagent_bridge.protocol.filexfer import TransferState
from vdagent_bridge.protocol.messages import AnnounceCapabilities

CB, PRIMARY, TEXT = Selection.CLIPBOARD, Selection.PRIMARY, ClipboardType.UTF8_TEXT

#: With the Linux agent, at time 104: the host owns PRIMARY (TEXT, PNG), the guest CLIPBOARD;
#: a request each way; two monitors; one transfer sending (5 of 10 bytes), one waiting; a
#: MAX_CLIPBOARD of 1 MB; a MOUSE_STATE queued; a guest CLIPBOARD answer half received (its
#: first chunk whole, 3 bytes of its second chunk's header).
CONVERSATION: dict[str, Any] = json.loads(
    '{"version": 1, "host_caps": [217191], "guest_caps": [232935], "caps_exchanged": true,'
    ' "clipboard": {"selections": {"0": {"owner": "guest", "types": [1], "serial": 1,'
    ' "release_in": null}, "1": {"owner": "host", "types": [1, 2], "serial": 1,'
    ' "release_in": null}, "2": {"owner": "none", "types": [], "serial": 0,'
    ' "release_in": null}}, "to_guest": [[0, 1, 3.0]], "from_guest": [[1, 1, 7.0]]},'
    ' "monitors": [[1024, 768, 32, 0, 0], [800, 600, 24, 1024, 0]],'
    ' "transfers": [[1, "notes.txt", 10, 5, "sending"], [2, "b.bin", 3, 0, "waiting"]],'
    ' "next_transfer_id": 3, "max_clipboard": 1000000, "framing": {"chunk_header": "AQAA",'
    ' "chunk_port": 1, "chunk_left": 0, "chunk_skip": false, "assemblies": {"1": {"header": "",'
    ' "type": 4, "body": "AAAAAAEAAABoZWw=", "size": 19, "discard": 0}}},'
    ' "outgoing": "AQAAACEAAAABAAAAAQAAAAAAAAAAAAAADQAAAAUAAAAGAAAAAAAAAAA="}'
)
#: The rest of the half-received answer: the last 5 bytes of the chunk header, then the data.
CONVERSATION_REST = bytes.fromhex("00080000006c6f20776f726c64")

#: Just after start(): our announce queued, unanswered; the host owns CLIPBOARD.
ANNOUNCED: dict[str, Any] = json.loads(
    '{"version": 1, "host_caps": [217191], "guest_caps": null, "caps_exchanged": false,'
    ' "clipboard": {"selections": {"0": {"owner": "host", "types": [1], "serial": 0,'
    ' "release_in": null}, "1": {"owner": "none", "types": [], "serial": 0,'
    ' "release_in": null}, "2": {"owner": "none", "types": [], "serial": 0,'
    ' "release_in": null}}, "to_guest": [], "from_guest": []}, "monitors": null,'
    ' "transfers": [], "next_transfer_id": 1, "max_clipboard": null, "framing":'
    ' {"chunk_header": "", "chunk_port": 0, "chunk_left": 0, "chunk_skip": false,'
    ' "assemblies": {}}, "outgoing": "AQAAABwAAAABAAAABgAAAAAAAAAAAAAACAAAAAEAAABnUAMA"}'
)

#: An older guest (CLIPBOARD_BY_DEMAND and CLIPBOARD_SELECTION only) released PRIMARY 0.25 s
#: ago: without NO_RELEASE_ON_REGRAB the release waits 0.25 s more.
DEFERRED_RELEASE: dict[str, Any] = json.loads(
    '{"version": 1, "host_caps": [217191], "guest_caps": [96], "caps_exchanged": true,'
    ' "clipboard": {"selections": {"0": {"owner": "none", "types": [], "serial": 0,'
    ' "release_in": null}, "1": {"owner": "guest", "types": [1], "serial": 0,'
    ' "release_in": 0.25}, "2": {"owner": "none", "types": [], "serial": 0,'
    ' "release_in": null}}, "to_guest": [], "from_guest": []}, "monitors": null,'
    ' "transfers": [], "next_transfer_id": 1, "max_clipboard": null, "framing":'
    ' {"chunk_header": "", "chunk_port": 1, "chunk_left": 0, "chunk_skip": false,'
    ' "assemblies": {}}, "outgoing": ""}'
)


def restore(document: dict[str, Any], now: float) -> HostSession:
    return HostSession.restore(copy.deepcopy(document), now)


@pytest.mark.parametrize(
    "document", [CONVERSATION, ANNOUNCED, DEFERRED_RELEASE],
    ids=["conversation", "announced", "deferred-release"],
)
def test_a_version_1_document_is_written_back_unchanged(document: dict[str, Any]) -> None:
    assert restore(document, 500.0).snapshot(500.0) == document


def test_a_version_1_conversation_restores_to_what_it_describes() -> None:
    session = restore(CONVERSATION, 500.0)
    assert session.host_caps == HOST_CAPS
    assert session.guest_caps == Caps((232935,))
    assert session.wire_format == FULL and session.clipboard_ready and session.mouse_ready
    assert (session.owner(CB), session.owner(PRIMARY)) == (Owner.GUEST, Owner.HOST)
    assert (session.serial(CB), session.serial(PRIMARY)) == (1, 1)
    to_guest, from_guest = session.pending_requests
    assert [(r.selection, r.type, r.deadline) for r in to_guest] == [(CB, TEXT, 503.0)]
    assert [(r.selection, r.type, r.deadline) for r in from_guest] == [(PRIMARY, TEXT, 507.0)]
    assert session.next_deadline() == 503.0
    assert session.monitors == (MonitorConfig(1024, 768), MonitorConfig(800, 600, 24, 1024, 0))
    sending, waiting = session.transfer(1), session.transfer(2)
    assert sending is not None and waiting is not None
    assert (sending.name, sending.size, sending.sent) == ("notes.txt", 10, 5)
    assert sending.state is TransferState.SENDING
    assert waiting.state is TransferState.WAITING
    assert session.max_clipboard == 1_000_000
    assert session.data_to_send() == base64.b64decode(CONVERSATION["outgoing"])
    session.receive_data(CONVERSATION_REST, 500.0)
    assert drain(session) == ([ClipboardReceived(CB, TEXT, b"hello world")], [])
    assert session.start_file_transfer("c.txt", 1) == 3


def test_a_version_1_announce_restores_waiting_for_caps_and_greets_when_they_come() -> None:
    """The format keeps no caps deadline: the restored session does not time the announce."""
    session = restore(ANNOUNCED, 500.0)
    assert session.guest_caps is None and session.next_deadline() is None
    assert session.data_to_send() == base64.b64decode(ANNOUNCED["outgoing"])
    caps = AnnounceCapabilities(False, (1 << Capability.CLIPBOARD_BY_DEMAND,))
    session.receive_data(agent_bytes(caps), 500.0)
    drain(session)
    assert session.data_to_send()  # the host's CLIPBOARD grab, now that caps are known
    assert session.owner(CB) is Owner.HOST and session.serial(CB) == 0  # no serial: legacy


def test_a_version_1_deferred_release_takes_effect_when_due() -> None:
    session = restore(DEFERRED_RELEASE, 50.0)
    assert session.wire_format == WireFormat(selection=True, grab_serial=False)
    assert session.next_deadline() == 50.25
    session.handle_timeout(50.25)
    assert drain(session) == ([ClipboardReleased(PRIMARY)], [])
    assert session.owner(PRIMARY) is Owner.NONE
