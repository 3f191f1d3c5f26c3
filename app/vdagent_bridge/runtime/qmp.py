"""Following a VM's migrations over QMP (qemu.qmp).

QEMU reports a migration on the source as MIGRATION events (status setup → active → … →
completed, or failed/cancelled) and STOP when the guest is paused for the final copy; the
destination reports RESUME when the guest runs there. MIGRATION events are only sent when the
``events`` migration capability is on, which QEMU 7.2 leaves off by default; it can only be
switched on while no migration runs. When that fails the monitor polls ``query-migrate``
instead, so a migration started before we attached is still seen.

A QMP socket serves one client at a time: the VM needs a monitor of its own for the app (QEMU
accepts several ``-qmp`` options).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError, Runstate

from ..sites import Endpoint
from .tasks import TimedOut, within

log = logging.getLogger(__name__)

#: How often query-migrate is polled when MIGRATION events are not available.
POLL_INTERVAL = 0.05
#: How often a quiet monitor is checked for having gone away.
LIVENESS_INTERVAL = 0.5


class MigrationStatus(enum.Enum):
    """QEMU's ``MigrationStatus`` values that matter to us (others map to ACTIVE)."""

    NONE = "none"
    SETUP = "setup"
    ACTIVE = "active"
    DEVICE = "device"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def parse(cls, text: object) -> MigrationStatus:
        if text in ("cancelling",):
            return cls.ACTIVE
        try:
            return cls(str(text))
        except ValueError:
            # pre-switchover, postcopy-active, wait-unplug, colo…: a migration in progress.
            return cls.ACTIVE

    @property
    def running(self) -> bool:
        return self in (MigrationStatus.SETUP, MigrationStatus.ACTIVE, MigrationStatus.DEVICE)


@dataclass(frozen=True, slots=True)
class VmEvent:
    """What a monitored QEMU said: a migration status, or the guest stopping or resuming."""

    kind: str  # "migration", "stop", "resume"
    status: MigrationStatus | None = None


class QmpError(Exception):
    """A QMP monitor that cannot be used; the message is one readable line."""


class QmpMonitor:
    """One QMP connection to one QEMU process."""

    def __init__(self, endpoint: Endpoint, name: str = "vdagent-bridge") -> None:
        # qemu.qmp logs every failed connect at ERROR with a traceback; we report our own
        # one-line errors (QmpError) where they matter, so keep the library quiet.
        logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
        self.endpoint = endpoint
        self._client = QMPClient(name)
        self.events_enabled = False
        #: Whether ``screendump`` takes ``format=png`` (QEMU >= 7.1); None until tried.
        self.png_screendump: bool | None = None

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect and negotiate (qmp_capabilities).

        :raises QmpError: refused, missing, or not a QMP monitor.
        """
        address: str | tuple[str, int] = (
            self.endpoint.path if self.endpoint.kind == "unix"
            else (self.endpoint.host, self.endpoint.port)
        )
        try:
            await asyncio.wait_for(self._client.connect(address), timeout)
        except (QMPError, OSError, asyncio.TimeoutError) as err:
            with contextlib.suppress(QMPError, OSError):
                await self._client.disconnect()
            raise QmpError(f"cannot use the QMP monitor {self.endpoint}: {err}") from err

    async def close(self) -> None:
        with contextlib.suppress(QMPError, OSError):
            await self._client.disconnect()

    async def execute(self, command: str, arguments: dict[str, object] | None = None) -> Any:
        """Run a QMP command.

        :raises QmpError: the command failed or the monitor went away.
        """
        try:
            return await self._client.execute(command, arguments)
        except (QMPError, OSError) as err:
            raise QmpError(f"QMP {command} on {self.endpoint} failed: {err}") from err

    async def screendump(self, path: str) -> str:
        """Have QEMU write the guest screen to ``path`` (absolute: QEMU's working directory
        is not ours); returns the format written, ``"png"`` or ``"ppm"``.

        QEMU opens and writes the file itself, as the user QEMU runs as: under libvirt
        (QEMU as another user) the directory must be writable by that user. PNG needs
        QEMU >= 7.1 built with libpng; otherwise QEMU rejects ``format=png``, and the dump is
        retried (and from then on made) as PPM.

        :raises QmpError: the dump failed (no display device, a path QEMU cannot write,
            the monitor went away).
        """
        if self.png_screendump is not False:
            try:
                await self._client.execute("screendump", {"filename": path, "format": "png"})
            except ExecuteError as err:
                desc = str(err.error.error.desc)
                # < 7.1: "Parameter 'format' is unexpected"; built without libpng: "Enable
                # PNG support with libpng for screendump".
                if self.png_screendump or not ("format" in desc or "png" in desc.lower()):
                    raise QmpError(f"QMP screendump on {self.endpoint} failed: {desc}") from err
                log.info("%s: no PNG screendump (%s); using PPM", self.endpoint, desc)
                self.png_screendump = False
            except (QMPError, OSError) as err:
                raise QmpError(f"QMP screendump on {self.endpoint} failed: {err}") from err
            else:
                self.png_screendump = True
                return "png"
        await self.execute("screendump", {"filename": path})
        return "ppm"

    async def enable_migration_events(self) -> bool:
        """Switch the ``events`` migration capability on; False if QEMU refuses (a
        migration is already running, or the capability is locked)."""
        try:
            await self.execute(
                "migrate-set-capabilities",
                {"capabilities": [{"capability": "events", "state": True}]},
            )
        except QmpError as err:
            log.info("%s: no MIGRATION events (%s); polling query-migrate", self.endpoint, err)
            self.events_enabled = False
            return False
        self.events_enabled = True
        return True

    async def migration_status(self) -> MigrationStatus:
        info = await self.execute("query-migrate")
        return MigrationStatus.parse(info.get("status", "none") if isinstance(info, dict) else None)

    async def events(self) -> AsyncGenerator[VmEvent, None]:
        """MIGRATION status changes, STOP and RESUME, as they happen (polling query-migrate
        for the status when MIGRATION events are off). Ends when the monitor goes away."""
        last = await self.migration_status()
        if last.running:
            yield VmEvent("migration", last)
        with self._client.listener(("MIGRATION", "STOP", "RESUME")) as listener:
            while True:
                timeout = LIVENESS_INTERVAL if self.events_enabled else POLL_INTERVAL
                try:
                    message = await within(listener.get(), timeout)
                except TimedOut:
                    if self._client.runstate != Runstate.RUNNING:
                        return
                    if not self.events_enabled:
                        status = await self.migration_status()
                        if status is not last:
                            last = status
                            yield VmEvent("migration", status)
                    continue
                name = message.get("event")
                if name == "MIGRATION":
                    data = message.get("data")
                    status = MigrationStatus.parse(
                        data.get("status") if isinstance(data, dict) else None
                    )
                    if status is not last:
                        last = status
                        yield VmEvent("migration", status)
                elif name == "STOP":
                    yield VmEvent("stop")
                elif name == "RESUME":
                    yield VmEvent("resume")
