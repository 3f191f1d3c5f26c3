"""libvirt for the runtime: loading libvirt-python, its asyncio event loop, connections, and
what a domain offers.

libvirt-python is optional (``pip install 'vdagent-bridge[libvirt]'``, which builds it
against the system's libvirt; or a venv over Debian's ``python3-libvirt``): everything that
needs it asks :func:`load`, which raises :class:`LibvirtUnavailable` with what to install.

The event loop: libvirt dispatches its events (domain events, stream readiness, keep-alives)
through one event implementation per process, registered once and never replaced; the
``libvirtaio`` one runs them on an asyncio loop. :func:`events_on_this_loop` registers it on
the running loop the first time and points it at the running loop afterwards (a test process
runs several loops in turn; the app runs one). Every libvirt call is made on the loop's
thread: libvirtaio is not thread-safe (a blocking call in another thread holds the
connection while the loop misses its events).

Remote URIs never prompt: libvirt's ``ssh`` transport runs the ``ssh`` program, which asks
for a password or a key's passphrase on the terminal (or through ``SSH_ASKPASS`` on a
desktop) and so would block the loop's thread until someone answers, at every reconnect.
:func:`connect` opens such URIs with ``no_tty=1`` (ssh's ``BatchMode``) unless the URI sets
``no_tty`` itself: a key that needs a passphrase without an agent, an unknown host key or a
refused login is then one line at once.

Errors become :class:`LibvirtError`, an ``OSError`` whose ``strerror`` is one line for the
user: the runtime retries them with back-off like a missing socket, except
:class:`LibvirtDenied` (authentication, access), which retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import urllib.parse
import weakref
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from ...protocol.errors import VDAgentError
from ...sites import AGENT_CHANNEL, LibvirtSite

log = logging.getLogger(__name__)

INSTALL_HINT = ("install libvirt-python: pip install 'vdagent-bridge[libvirt]' (it builds "
                "against libvirt-dev with pkg-config and a C compiler), or make the venv with "
                "--system-site-packages over your distribution's python3-libvirt")


class LibvirtUnavailable(VDAgentError):
    """libvirt-python cannot be imported; the message says what to install."""


class LibvirtError(VDAgentError, OSError):
    """A libvirt call failed; ``strerror`` is one line for the user."""

    def __init__(self, code: int, text: str) -> None:
        OSError.__init__(self, code, text)


class LibvirtDenied(LibvirtError, PermissionError):
    """libvirt refused us (authentication, access control): retrying will not help."""


_module: ModuleType | None = None
_impl: Any = None


def load() -> ModuleType:
    """The ``libvirt`` module.

    :raises LibvirtUnavailable: libvirt-python is not installed.
    """
    global _module
    if _module is None:
        try:
            import libvirt
        except ImportError as err:
            raise LibvirtUnavailable(f"--libvirt needs libvirt-python ({err}): "
                                     f"{INSTALL_HINT}") from err
        # libvirt prints every error to stderr by default; we report our own lines.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _module = libvirt
    return _module


def events_on_this_loop() -> None:
    """Have libvirt's events dispatched on the running asyncio loop (see the module
    docstring)."""
    global _impl
    lv = load()
    loop = asyncio.get_running_loop()
    if _impl is None:
        import libvirtaio

        _impl = libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
    elif _impl.loop is not loop:
        _impl.loop = loop
    del lv


def error_of(err: BaseException, doing: str) -> LibvirtError:
    """A libvirt exception as a :class:`LibvirtError` saying what failed, in one line."""
    lv = load()
    if not isinstance(err, lv.libvirtError):
        return LibvirtError(errno.EIO, f"{doing}: {err}")
    code = err.get_error_code()
    said = " ".join(str(err.get_error_message() or err).split())
    text = f"{doing}: {said}"
    denied = {getattr(lv, name, -1) for name in (
        "VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_ACCESS_DENIED",
        "VIR_ERR_AUTH_UNAVAILABLE")}
    if code in denied:
        return LibvirtDenied(errno.EACCES, text)
    if code == lv.VIR_ERR_NO_DOMAIN:
        return LibvirtError(errno.ENOENT, text)
    if code == lv.VIR_ERR_OPERATION_INVALID:  # e.g. the domain is not running
        return LibvirtError(errno.EAGAIN, text)
    return LibvirtError(errno.ECONNREFUSED, text)


def non_interactive(uri: str) -> str:
    """``uri`` as the bridge opens it: with ``no_tty=1`` for libvirt's ``ssh`` transport
    (``driver+ssh://``), unless the URI says ``no_tty`` already (see the module docstring).
    Other URIs are returned as they are (the ``libssh``/``libssh2`` transports ask through
    an auth callback, and :func:`connect` gives none)."""
    scheme, sep, _ = uri.partition("://")
    _, plus, transport = scheme.partition("+")
    if not sep or not plus or transport != "ssh":
        return uri
    query = urllib.parse.urlsplit(uri).query
    if any(name == "no_tty" for name, _ in urllib.parse.parse_qsl(query,
                                                                   keep_blank_values=True)):
        return uri
    return f"{uri}{'&' if query else '?'}no_tty=1"


def connect(uri: str, doing: str | None = None) -> Any:
    """A new connection to ``uri``, never prompting (:func:`non_interactive`); ``doing``:
    what a failure says was being done (default: "cannot connect to libvirt at URI").

    :raises LibvirtError: unreachable, refused, not a libvirt URI (the message names ``uri``
        as the user gave it).
    :raises LibvirtUnavailable: no libvirt-python.
    """
    lv = load()
    try:
        return lv.open(non_interactive(uri))
    except lv.libvirtError as err:
        raise error_of(err, doing or f"cannot connect to libvirt at {uri}") from err


class HangsUp(Protocol):
    """What carries bytes over a connection and must hear that the connection is gone."""

    def hang_up(self) -> None: ...


class Hosts:
    """The libvirt connections of one VM runtime, one per URI, opened when first needed and
    closed by :meth:`close` (a connection carries every stream and event of its host).

    A connection that closes by itself (the daemon restarted or went, a remote host's
    keepalive ran out) is forgotten at once, and the streams opened on it are hung up
    (:meth:`carries`): libvirt ends such a stream without a word to its event callback, so
    without this a conversation would wait on a dead stream for ever."""

    def __init__(self) -> None:
        self._connections: dict[str, Any] = {}
        self._carried: dict[str, weakref.WeakSet[HangsUp]] = {}
        #: URIs whose connection closed by itself and was not opened again since.
        self._lost: set[str] = set()

    def get(self, uri: str) -> Any:
        """The open connection to ``uri`` (opened now if need be, on the loop's thread).

        :raises LibvirtError: unreachable, refused, not a libvirt URI.
        :raises LibvirtUnavailable: no libvirt-python.
        """
        lv = load()
        events_on_this_loop()
        conn = self._connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except lv.libvirtError:
                pass
            self._drop(uri)
        conn = connect(uri, f"lost the connection to libvirt at {uri}, and it cannot be opened "
                            "again" if uri in self._lost else None)
        self._lost.discard(uri)
        try:
            conn.setKeepAlive(5, 3)  # a remote host that goes away is noticed in ~20 s
        except lv.libvirtError:
            pass
        try:
            conn.registerCloseCallback(self._closed_by_itself, uri)
        except lv.libvirtError:
            pass
        self._connections[uri] = conn
        return conn

    def carries(self, uri: str, stream: HangsUp) -> None:
        """``stream`` goes over the connection to ``uri``: hang it up if that closes."""
        self._carried.setdefault(uri, weakref.WeakSet()).add(stream)

    def _closed_by_itself(self, conn: Any, reason: int, uri: str) -> None:
        if self._connections.get(uri) is not conn:
            return
        log.info("the connection to libvirt at %s closed (reason %d)", uri, reason)
        del self._connections[uri]
        self._lost.add(uri)
        # Not closed here: libvirt is inside this connection's own callback.
        asyncio.get_running_loop().call_soon(self._close, conn)
        for stream in list(self._carried.pop(uri, ())):
            stream.hang_up()

    def domain(self, site: LibvirtSite) -> Any:
        """The domain of ``site``.

        :raises LibvirtError: no such domain there (or the host is unreachable).
        """
        lv = load()
        conn = self.get(site.uri)
        try:
            return conn.lookupByName(site.domain)
        except lv.libvirtError as err:
            if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                raise error_of(err, f"no domain {site.domain} on {site.uri}") from err
            self._drop(site.uri)  # the connection itself failed: open anew next time
            raise error_of(err, f"lost the connection to libvirt at {site.uri}") from err

    def _drop(self, uri: str) -> None:
        conn = self._connections.pop(uri, None)
        if conn is not None:
            self._close(conn)

    @staticmethod
    def _close(conn: Any) -> None:
        lv = load()
        for close in (conn.unregisterCloseCallback, conn.close):
            try:
                close()
            except lv.libvirtError:
                pass

    def forget(self, uri: str) -> None:
        """Close the connection to ``uri`` (it failed): the next :meth:`get` opens anew."""
        self._drop(uri)

    def close(self) -> None:
        for uri in list(self._connections):
            self._drop(uri)


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True)
class AgentChannel:
    """Whether a domain has an agent channel the bridge can use, in one word and a line."""

    kind: str
    """``unix`` (usable), ``spicevmc`` (a SPICE viewer serves it), ``qemu-vdagent`` (QEMU
    serves it itself), ``none``."""

    @property
    def usable(self) -> bool:
        return self.kind == "unix"

    def describe(self) -> str:
        return {
            "unix": "agent channel: unix (usable)",
            "spicevmc": "agent channel: spicevmc (a SPICE viewer serves it; change it to a "
                        "unix channel for the bridge)",
            "qemu-vdagent": "agent channel: qemu-vdagent (QEMU serves it itself)",
            "none": f"no {AGENT_CHANNEL} channel",
        }[self.kind]


def agent_channel(xml: str) -> AgentChannel:
    """What kind of ``com.redhat.spice.0`` channel the domain XML has."""
    try:
        tree = ET.fromstring(xml)
    except ET.ParseError:
        return AgentChannel("none")
    for channel in tree.iter("channel"):
        target = channel.find("target")
        if target is None or target.get("name") != AGENT_CHANNEL:
            continue
        kind = channel.get("type", "")
        if kind in ("unix", "spicevmc", "qemu-vdagent"):
            return AgentChannel(kind)
    return AgentChannel("none")


def incoming(domain: Any) -> bool:
    """Whether the domain waits for an incoming migration (paused for it, on a
    destination)."""
    lv = load()
    try:
        state, reason = domain.state()
    except lv.libvirtError:
        return False
    return bool(state == lv.VIR_DOMAIN_PAUSED and reason in (
        lv.VIR_DOMAIN_PAUSED_MIGRATION, getattr(lv, "VIR_DOMAIN_PAUSED_STARTING_UP", -1)))


async def open_channel(hosts: Hosts, site: LibvirtSite) -> Any:
    """A non-blocking stream on the domain's agent channel.

    :raises LibvirtError: unreachable host, no such domain, not running, no usable channel,
        or another client has the channel open.
    """
    lv = load()
    domain = hosts.domain(site)
    conn = hosts.get(site.uri)
    stream = conn.newStream(lv.VIR_STREAM_NONBLOCK)
    try:
        domain.openChannel(AGENT_CHANNEL, stream, 0)
    except lv.libvirtError as err:
        try:
            stream.abort()
        except lv.libvirtError:
            pass
        if not domain.isActive():
            raise LibvirtError(errno.EAGAIN, f"domain {site.domain} on {site.uri} is not "
                               "running") from err
        channel = agent_channel(domain.XMLDesc(0))
        if not channel.usable:
            raise LibvirtError(errno.ENOENT, f"domain {site.domain} on {site.uri}: "
                               f"{channel.describe()}") from err
        raise error_of(err, f"cannot open the agent channel of {site.domain} on "
                       f"{site.uri}") from err
    await asyncio.sleep(0)
    return stream


def why_down(hosts: Hosts, site: LibvirtSite) -> str | None:
    """Why the domain's channel went away, in words, from what libvirt says of the domain
    now (None: it seems to run; the caller's own reason stands)."""
    lv = load()
    try:
        domain = hosts.domain(site)
        state, reason = domain.state()
    except LibvirtError as err:
        if err.errno == errno.ENOENT:
            return f"domain {site.domain} is gone from {site.uri} (undefined or renamed)"
        return err.strerror
    except lv.libvirtError as err:
        return error_of(err, f"cannot ask {site.uri} about {site.domain}").strerror
    return state_words(lv, state, reason)


def state_words(lv: Any, state: int, reason: int) -> str | None:
    """A stopped domain's state and reason, as a cause (None: it is not stopped)."""
    if state == lv.VIR_DOMAIN_SHUTOFF:
        return {
            lv.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "the VM shut down",
            lv.VIR_DOMAIN_SHUTOFF_DESTROYED: "the VM was forced off",
            lv.VIR_DOMAIN_SHUTOFF_CRASHED: "the VM crashed",
            lv.VIR_DOMAIN_SHUTOFF_SAVED: "the VM was saved",
            lv.VIR_DOMAIN_SHUTOFF_MIGRATED: "the VM migrated to another host",
            lv.VIR_DOMAIN_SHUTOFF_FAILED: "the VM failed to start",
        }.get(reason, "the VM is shut off")
    if state == lv.VIR_DOMAIN_CRASHED:
        return "the VM crashed"
    if state == lv.VIR_DOMAIN_SHUTDOWN:
        return "the VM is shutting down"
    return None


def guest_port_open(hosts: Hosts, site: LibvirtSite) -> bool | None:
    """Whether the guest has opened its end of the agent channel (its agent runs), as the
    live XML's ``<target state=...>`` says (libvirt follows QEMU's VSERPORT_CHANGE); None
    when it cannot be told."""
    lv = load()
    try:
        tree = ET.fromstring(hosts.domain(site).XMLDesc(0))
    except (LibvirtError, lv.libvirtError, ET.ParseError):
        return None
    for channel in tree.iter("channel"):
        target = channel.find("target")
        if target is not None and target.get("name") == AGENT_CHANNEL:
            state = target.get("state")
            return None if state is None else state == "connected"
    return None
