"""The clipboard bridge: the host's QClipboard and the guests' selections.

Theory of operation
-------------------
The host clipboard is the hub. Each VM is attached with a :class:`ClipboardPolicy` and its
session's events are handed to :meth:`ClipboardBridge.handle_event`; the bridge answers with
the VM's clipboard commands (each written at once). Everything runs on the Qt thread, inside Qt
slots and the runtime's event callbacks: the bridge starts no task and never waits.

Host → guest (lazy, as SPICE intends). A change of the host clipboard (``QClipboard.changed``
for ``Mode.Clipboard``, and ``Mode.Selection`` = PRIMARY where ``supportsSelection()``) grabs
the selection in every VM whose to-guest direction is on (and PRIMARY on, for PRIMARY) with
the types we can serve: text → UTF8_TEXT; an image → IMAGE_PNG, plus BMP, JPG and TIFF where
Qt has a writer for them. Nothing is read yet. A guest paste arrives as
:class:`ClipboardRequested`; the bridge reads the host clipboard *then* (text as UTF-8; an
image in the requested format: the host application's own bytes when it offers that MIME type,
otherwise converted through QImage) and answers, or refuses with empty data (the agent hands
"nothing" to the pasting application) when the direction is off, the data is gone or it is
over ``max_to_guest`` (with a :attr:`ClipboardBridge.notice`).

Guest → host (eager, bounded). A guest GRAB the policy lets through makes the bridge request
the data at once (UTF8_TEXT if offered; one image type, PNG first) and, when it arrives,
put it on the host clipboard as a plain QMimeData (text; an image as decoded QImage plus the
guest's PNG bytes). The guest is told, with MAX_CLIPBOARD, not to send more than
``max_to_host``: its agent then answers a larger selection with empty data
(:attr:`FailureReason.EMPTY`), so an oversize copy never crosses; it is reported with a notice
and the host clipboard is cleared rather than left holding older data the user would paste
unknowingly. Images are decoded with QImageReader under :class:`ImageLimits` (dimensions
checked from the header before any pixel is read, and Qt's allocation limit).

Why eager and not a lazy QMimeData (measured)
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Cost of eager. ``benchmarks/clipboard_fetch.py`` times grab → data through the real
spice-vdagent (pty relay, 2 vCPU VM, best of 3): 1 KiB 1.7 ms, 64 KiB 3.4 ms, 1 MiB 29 ms,
4 MiB 67 ms, 16 MiB 273 ms, 64 MiB 1.7 s (~60 MiB/s). Below the default 16 MiB limit an eager
fetch costs at most ~0.3 s in the background, and ≤ 30 ms for everything up to 1 MiB (text,
a window's screenshot): less than it takes a user to switch windows and paste. The limit
doubles as the eager threshold: the guest is told (MAX_CLIPBOARD) not to send more.

Cost of lazy. Qt's xcb backend calls ``retrieveData`` from its SelectionRequest handler on the
GUI thread; the guest's answer can only arrive if the asyncio loop runs, so ``retrieveData``
must spin a nested event loop for the bounded wait. ``benchmarks/lazy_clipboard_probe.py``
does exactly that (a 300 ms wait) under Xvfb and shows: a second paste during the wait runs a
second ``retrieveData`` *inside* the first (depth 2, the first paste served last), and when
another application copies during the wait, Qt deletes the QMimeData while its
``retrieveData`` is still running. Add qasync task steps running inside that nested loop, and
the lazy design is re-entrancy and use-after-free hazards for a saving that desktops with a
clipboard manager (Klipper, GPaste, CopyQ: they read every new selection at once) never see.

Eager also means Qt serves plain bytes itself (INCR included), and what the guest copied stays
pasteable when the VM pauses or disconnects. Until the data arrives (the times above) the host
clipboard keeps its previous content.

No echo loops. What the bridge puts on the host clipboard is a :class:`_GuestMimeData`
carrying the source VM's name; when ``changed`` reports it, the source VM is not grabbed back
(it owns the selection already), while the other VMs are: their users can paste what was copied
in the first guest, as they could from any host application. A host grab never makes the real
agent grab back, and the session's serials settle crossing grabs.

What a host change does (:func:`host_change`, a table): a readable copy is offered; a copy
marked secret by a password manager (``x-kde-passwordManagerHint`` = ``secret``, as
KeePassXC, KWallet and Plasma's own set it) is never offered nor read for a guest, and the
older offer is released (reading it now would give the secret); a clipboard that goes empty
releases the guest's offer. But a change that cannot be read is not always an empty
clipboard: under XWayland the compositor announces every Wayland copy to X11 clients and then
refuses them the data while no X11 window has focus (wlroots: "denying read access … no
xwayland surface focused"). There, with ``refusals=True``, an unreadable change leaves the
guests with what they have, instead of taking the user's last copy away from them.

Ownership with several VMs: the most recent guest grab wins (a newer grab, or a host copy,
supersedes a fetch in flight, whose late answer is dropped); a guest RELEASE clears the host
clipboard only while it still holds that VM's data.

Policy is enforced here, at the boundary, on every path: a disabled direction grabs nothing,
fetches nothing, answers nothing, and answers still in flight when it is switched off are
dropped (:meth:`ClipboardBridge.set_policy` also releases what the host holds in that VM, which
answers the guest's pending requests with empty data).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from PySide6.QtCore import QByteArray, QMimeData, QObject, Signal
from PySide6.QtGui import QClipboard, QGuiApplication, QImage

from ..protocol import (
    CapabilitiesReceived,
    ClipboardGrabbed,
    ClipboardReceived,
    ClipboardReleased,
    ClipboardRequested,
    ClipboardRequestFailed,
    ClipboardType,
    Event,
    FailureReason,
    GuestRequestExpired,
    Selection,
    StateError,
)
from ..sizes import format_size
from .fetches import Fetch, FetchBook
from .images import (
    IMAGE_TYPES,
    ImageLimits,
    decode_image,
    encode_image,
    readable_types,
    writable_types,
)
from .policy import ClipboardPolicy

log = logging.getLogger(__name__)

_TEXT = ClipboardType.UTF8_TEXT
_MODES = {
    Selection.CLIPBOARD: QClipboard.Mode.Clipboard,
    Selection.PRIMARY: QClipboard.Mode.Selection,
}


#: The MIME type password managers mark their copies with, and its value for a secret
#: (KDE's convention, kept by KeePassXC and Klipper, which does not record such copies).
PASSWORD_HINT = "x-kde-passwordManagerHint"
SECRET = b"secret"


class HostChange(enum.Enum):
    """What a change of the host clipboard does to the guests' offers."""

    #: Grab in the guests with the types the host can serve.
    OFFER = "offer"
    #: Take the older offer away: the host clipboard is empty, or holds a secret.
    RELEASE = "release"
    #: Leave the guests alone: the change could not be read, which may be a refusal.
    KEEP = "keep"


def host_change(*, readable: bool, secret: bool, cleared_by_us: bool,
                refusals: bool) -> HostChange:
    """What a host clipboard change does (see the module docstring).

    ``readable``: it offers text or an image; ``secret``: a password manager marked it;
    ``cleared_by_us``: the bridge emptied the clipboard itself; ``refusals``: on this backend
    an unreadable change may be the compositor refusing the read (XWayland).
    """
    if secret:
        return HostChange.RELEASE
    if readable:
        return HostChange.OFFER
    if refusals and not cleared_by_us:
        return HostChange.KEEP
    return HostChange.RELEASE


def is_secret(mime: QMimeData | None) -> bool:
    """Whether a password manager marked this copy as a secret."""
    return (mime is not None and mime.hasFormat(PASSWORD_HINT)
            and bytes(mime.data(PASSWORD_HINT).data()).strip() == SECRET)


class ClipboardVm(Protocol):
    """What the bridge needs of a VM: its name and the clipboard part of its command API
    (:class:`~vdagent_bridge.runtime.AgentCommands`; each command is written at once)."""

    @property
    def name(self) -> str: ...

    @property
    def max_clipboard(self) -> int: ...

    def grab(self, selection: Selection, types: tuple[ClipboardType | int, ...]) -> None: ...

    def release(self, selection: Selection) -> None: ...

    def request(self, selection: Selection, data_type: ClipboardType) -> None: ...

    def answer(self, selection: Selection, data_type: ClipboardType, data: bytes) -> None: ...

    def refuse(self, selection: Selection | int, data_type: ClipboardType | int) -> None: ...

    def set_max_clipboard(self, limit: int | None) -> None: ...


class _GuestMimeData(QMimeData):
    """Host clipboard content that the bridge set from a guest's data."""

    def __init__(self, vm: str) -> None:
        super().__init__()
        self.vm = vm


@dataclass(slots=True)
class _Attached:
    vm: ClipboardVm
    policy: ClipboardPolicy


class ClipboardBridge(QObject):
    """Bridges the host clipboard and the attached VMs; see the module docstring.

    Wire each VM's events to :meth:`handle_event` (``VmRuntime(..., on_event=lambda e:
    bridge.handle_event(name, e))``) and attach it with :meth:`add_vm`.
    """

    #: A transfer was refused for its size (or a guest image could not be used): one
    #: readable sentence for a notification.
    notice = Signal(str)

    def __init__(
        self,
        clipboard: QClipboard | None = None,
        *,
        image_limits: ImageLimits | None = None,
        refusals: bool = False,
        parent: QObject | None = None,
    ) -> None:
        """``refusals``: an unreadable change may be a refused read (XWayland on a Wayland
        session, see the module docstring), so it does not release the guests."""
        super().__init__(parent)
        self._clipboard = clipboard or QGuiApplication.clipboard()
        self._refusals = refusals
        self._image_limits = image_limits or ImageLimits()
        self._vms: dict[str, _Attached] = {}
        self._fetches = FetchBook()
        #: True while the bridge itself clears the host clipboard (that is no host copy).
        self._clearing = False
        self._host_image_types = writable_types()
        self._guest_image_types = readable_types()
        self._clipboard.changed.connect(self._on_host_changed)

    def close(self) -> None:
        """Stop following the host clipboard (at shutdown; what is on it stays)."""
        self._clipboard.changed.disconnect(self._on_host_changed)
        self._vms.clear()
        self._fetches.clear()

    # ---------------------------------------------------------------- VMs and policy

    def add_vm(self, vm: ClipboardVm, policy: ClipboardPolicy | None = None) -> None:
        """Attach ``vm``; what the host clipboard holds now is offered to it at once (the
        session sends the grab when the guest's caps arrive, if they have not yet).

        :raises ValueError: a VM of that name is attached already.
        """
        if vm.name in self._vms:
            raise ValueError(f"VM {vm.name!r} is attached to the clipboard already")
        attached = _Attached(vm, policy or ClipboardPolicy())
        self._vms[vm.name] = attached
        for sel in _MODES:
            if attached.policy.allows_to_guest(sel):
                self._offer_host(attached, sel)
        self._send_max_clipboard(attached)

    def remove_vm(self, name: str) -> None:
        """Detach a VM (what it put on the host clipboard stays there)."""
        self._vms.pop(name, None)
        self._fetches.forget_vm(name)

    def policy(self, name: str) -> ClipboardPolicy:
        """The policy of an attached VM. :raises KeyError: unknown VM."""
        return self._vms[name].policy

    def set_policy(self, name: str, policy: ClipboardPolicy) -> None:
        """Apply a new policy now: a direction switched off releases what the host holds in
        the guest (its pending requests are answered empty) and drops data in flight to the
        host; to-guest switched on offers the current host clipboard.

        :raises KeyError: unknown VM.
        """
        attached = self._vms[name]
        old, attached.policy = attached.policy, policy
        for sel in _MODES:
            if old.allows_to_guest(sel) and not policy.allows_to_guest(sel):
                attached.vm.release(sel)
            elif policy.allows_to_guest(sel) and not old.allows_to_guest(sel):
                self._offer_host(attached, sel)
            if not policy.allows_to_host(sel):
                self._fetches.drop(sel, name)
        if policy.max_to_host != old.max_to_host:
            self._send_max_clipboard(attached)

    def update_policy(self, name: str, **changes: object) -> ClipboardPolicy:
        """:meth:`set_policy` with some fields changed; returns the new policy."""
        policy = replace(self._vms[name].policy, **changes)  # type: ignore[arg-type]
        self.set_policy(name, policy)
        return policy

    # ---------------------------------------------------------------- events

    def handle_event(self, name: str, event: Event) -> None:
        """Act on one event of VM ``name`` (events of other kinds or VMs are ignored)."""
        attached = self._vms.get(name)
        if attached is None:
            return
        if isinstance(event, ClipboardGrabbed):
            self._on_guest_grab(attached, event)
        elif isinstance(event, ClipboardReceived):
            self._on_guest_data(attached, event)
        elif isinstance(event, ClipboardRequestFailed):
            self._on_guest_failure(attached, event)
        elif isinstance(event, ClipboardReleased):
            self._on_guest_release(attached, event)
        elif isinstance(event, ClipboardRequested):
            self._on_guest_request(attached, event)
        elif isinstance(event, CapabilitiesReceived):
            # The session announces our limit itself whenever the guest's caps arrive (it
            # was given it in add_vm / set_policy); nothing to do here but log.
            log.debug("%s: guest caps %s", name, ", ".join(event.caps.names()))
        elif isinstance(event, GuestRequestExpired):
            log.info("%s: a guest paste of %s timed out", name, _describe(event.selection))

    # ---------------------------------------------------------------- host → guest

    def _on_host_changed(self, mode: QClipboard.Mode) -> None:
        sel = _selection_of(mode)
        if sel is None or not self._supported(sel):
            return
        mime = self._clipboard.mimeData(mode)
        source = mime.vm if isinstance(mime, _GuestMimeData) else None
        if source is None and not self._clearing:
            # A host application copied (or emptied the clipboard): it is newer than
            # whatever a guest is still sending us.
            self._fetches.drop(sel)
        types = self._host_types(mime)
        action = host_change(readable=bool(types), secret=is_secret(mime),
                             cleared_by_us=self._clearing, refusals=self._refusals)
        if action is HostChange.KEEP:
            log.info("the host %s changed but offers nothing readable (the compositor may "
                     "refuse X11 clients while no X11 window has focus): the guests keep what "
                     "they have", _describe(sel))
            return
        if action is HostChange.RELEASE and is_secret(mime):
            log.info("the host %s holds a password manager's secret: not offered to the "
                     "guests", _describe(sel))
        for attached in list(self._vms.values()):
            if attached.vm.name == source or not attached.policy.allows_to_guest(sel):
                continue
            if action is HostChange.OFFER:
                attached.vm.grab(sel, types)
            else:
                attached.vm.release(sel)

    def _offer_host(self, attached: _Attached, sel: Selection) -> None:
        """Grab ``sel`` in one VM with what the host clipboard holds, if anything."""
        if not self._supported(sel):
            return
        mime = self._clipboard.mimeData(_MODES[sel])
        if isinstance(mime, _GuestMimeData) and mime.vm == attached.vm.name:
            return
        types = self._host_types(mime)
        if types:
            attached.vm.grab(sel, types)

    def _host_types(self, mime: QMimeData | None) -> tuple[ClipboardType, ...]:
        """What the host clipboard can serve a guest: nothing for a secret."""
        if mime is None or is_secret(mime):
            return ()
        types: list[ClipboardType] = []
        if mime.hasText():
            types.append(_TEXT)
        if mime.hasImage():
            types += self._host_image_types
        return tuple(types)

    def _on_guest_request(self, attached: _Attached, event: ClipboardRequested) -> None:
        vm, sel, kind = attached.vm, event.selection, event.type
        if not isinstance(sel, Selection) or not isinstance(kind, ClipboardType):
            vm.refuse(sel, kind)
            return
        if not attached.policy.allows_to_guest(sel):
            vm.refuse(sel, kind)
            return
        data = self._read_host(sel, kind)
        if not data:
            log.info("%s: nothing on the host %s to answer a paste of %s",
                     vm.name, _describe(sel), kind.name)
            vm.refuse(sel, kind)
        elif len(data) > attached.policy.max_to_guest:
            vm.refuse(sel, kind)
            self._notice(
                f"{vm.name}: the host {_describe(sel)} ({format_size(len(data))}) was not pasted "
                f"into the guest: it is larger than the host → guest limit of "
                f"{format_size(attached.policy.max_to_guest)}."
            )
        else:
            vm.answer(sel, kind, data)

    def _read_host(self, sel: Selection, kind: ClipboardType) -> bytes | None:
        """The host clipboard's data as ``kind``; None if it has none."""
        mime = self._clipboard.mimeData(_MODES[sel])
        if mime is None or is_secret(mime):
            return None  # a secret copied after the offer: the guest's paste gets nothing
        if kind == _TEXT:
            return mime.text().encode("utf-8") if mime.hasText() else None
        if kind not in self._host_image_types:
            return None
        fmt, mime_type = IMAGE_TYPES[kind]
        if mime.hasFormat(mime_type):
            raw = bytes(mime.data(mime_type).data())
            if raw:
                return raw  # the application's own encoding of that format
        if not mime.hasImage():
            return None
        image = mime.imageData()
        if not isinstance(image, QImage) or image.isNull():
            return None
        return encode_image(image, fmt)

    # ---------------------------------------------------------------- guest → host

    def _on_guest_grab(self, attached: _Attached, event: ClipboardGrabbed) -> None:
        vm, sel = attached.vm, event.selection
        if not isinstance(sel, Selection) or not attached.policy.allows_to_host(sel):
            return
        if not self._supported(sel):
            return
        wanted: list[ClipboardType] = []
        if _TEXT in event.types:
            wanted.append(_TEXT)
        image = next((t for t in self._guest_image_types if t in event.types), None)
        if image is not None:
            wanted.append(image)
        fetch = self._fetches.start(vm.name, sel)
        for kind in wanted:
            try:
                vm.request(sel, kind)
            except StateError as err:
                log.info("%s: cannot request %s: %s", vm.name, kind.name, err)
                continue
            self._fetches.requested(fetch, kind)
        if not fetch.pending:
            # Nothing we can bring over (files, unknown types): the host must not go on
            # offering older data as if it were the guest's.
            log.info("%s: the guest %s offers no text or image", vm.name, _describe(sel))
            self._complete(fetch)

    def _on_guest_data(self, attached: _Attached, event: ClipboardReceived) -> None:
        fetch = self._fetches.answer(attached.vm.name, event.selection, event.type)
        if fetch is None:
            return
        policy, name, data = attached.policy, attached.vm.name, event.data
        if not policy.allows_to_host(fetch.selection):
            self._fetches.finish(fetch)  # switched off while the data was on its way
            return
        if len(data) > policy.max_to_host:
            fetch.notices.append(f"{name}: the guest {_describe(fetch.selection)} "
                                  f"({format_size(len(data))}) was not copied to the host: it is "
                                  f"larger than the guest → host limit of "
                                  f"{format_size(policy.max_to_host)}.")
        elif event.type == _TEXT:
            fetch.text = data.rstrip(b"\0").decode("utf-8", "replace")
        else:
            image, problem = decode_image(data, ClipboardType(event.type), self._image_limits)
            if image is None:
                fetch.notices.append(f"{name}: the guest's image was not copied to the host: "
                                      f"{problem}.")
            else:
                fetch.image = image
                if event.type == ClipboardType.IMAGE_PNG:
                    fetch.png = data
        if not fetch.pending:
            self._complete(fetch)

    def _on_guest_failure(self, attached: _Attached, event: ClipboardRequestFailed) -> None:
        fetch = self._fetches.answer(attached.vm.name, event.selection, event.type)
        if fetch is None:
            return
        if event.reason is FailureReason.EMPTY:
            limit = min(attached.policy.max_to_host, attached.vm.max_clipboard)
            fetch.notices.append(
                f"{attached.vm.name}: the guest {_describe(fetch.selection)} was not copied "
                f"to the host: it is empty or larger than the guest → host limit of "
                f"{format_size(limit)}."
            )
        else:
            log.info("%s: fetching the guest %s failed: %s", attached.vm.name,
                     _describe(fetch.selection), event.reason.value)
        if not fetch.pending:
            self._complete(fetch)

    def _complete(self, fetch: Fetch) -> None:
        """Put a finished fetch on the host clipboard (or clear it if nothing usable came)."""
        self._fetches.finish(fetch)
        for text in fetch.notices:
            self._notice(text)
        mode = _MODES[fetch.selection]
        if fetch.text is None and fetch.image is None:
            # Older host data must not pass for the guest's newer copy.
            self._clear_host(mode)
            return
        mime = _GuestMimeData(fetch.vm)
        if fetch.text is not None:
            mime.setText(fetch.text)
        if fetch.image is not None:
            mime.setImageData(fetch.image)
            if fetch.png is not None:
                mime.setData("image/png", QByteArray(fetch.png))
        self._clipboard.setMimeData(mime, mode)

    def _on_guest_release(self, attached: _Attached, event: ClipboardReleased) -> None:
        sel = event.selection
        if not isinstance(sel, Selection) or sel not in _MODES:
            return
        self._fetches.drop(sel, attached.vm.name)
        if not self._supported(sel):
            return
        mime = self._clipboard.mimeData(_MODES[sel])
        if isinstance(mime, _GuestMimeData) and mime.vm == attached.vm.name:
            self._clear_host(_MODES[sel])

    # ---------------------------------------------------------------- helpers

    def _send_max_clipboard(self, attached: _Attached) -> None:
        """Tell the guest the to-host limit, so its agent sends nothing larger (it answers
        with empty data instead). Only the agent's MAX_CLIPBOARD knows the size beforehand."""
        attached.vm.set_max_clipboard(attached.policy.max_to_host)

    def _clear_host(self, mode: QClipboard.Mode) -> None:
        self._clearing = True
        try:
            self._clipboard.clear(mode)
        finally:
            self._clearing = False

    def _supported(self, sel: Selection) -> bool:
        return sel == Selection.CLIPBOARD or self._clipboard.supportsSelection()

    def _notice(self, text: str) -> None:
        log.warning("%s", text)
        self.notice.emit(text)

    # ---------------------------------------------------------------- inspection

    def host_owner(self, selection: Selection) -> str | None:
        """The VM whose data the host clipboard holds for ``selection``, if any."""
        if not self._supported(selection):
            return None
        mime = self._clipboard.mimeData(_MODES[selection])
        return mime.vm if isinstance(mime, _GuestMimeData) else None

    def fetching(self) -> Iterable[tuple[Selection, str]]:
        """(selection, VM) of the guest data on its way to the host."""
        return self._fetches.items()


def _selection_of(mode: QClipboard.Mode) -> Selection | None:
    for sel, sel_mode in _MODES.items():
        if sel_mode == mode:
            return sel
    return None


def _describe(selection: Selection | int) -> str:
    return "PRIMARY selection" if selection == Selection.PRIMARY else "clipboard"
