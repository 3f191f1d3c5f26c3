"""The pointer: MOUSE_STATE on its fast path, and the guest layout that clamps it.

Theory of operation
-------------------
MOUSE_STATE is the one message sent at a high rate, so it skips the codec and the framer:
the chunk header, the message header and the 13-byte body are packed at once by one struct
(:data:`MOUSE_FRAME`, built from the same layouts as :mod:`.wire`'s) and queued as they are.
``benchmarks/engine.py`` holds it to 200k messages a second. Each call queues one message:
coalescing motion is the pointer bridge's business, since it knows what the user is doing and
how backed up the output is.

Coordinates are pixels of monitor ``display_id``. They are clamped to that monitor when the
guest layout is known (the MONITORS_CONFIG we sent, or one recorded with
:meth:`Pointer.set_monitors`): the agent drops nothing for out-of-range values, but QEMU-style
x == width lands one pixel off the screen. Otherwise they are clamped to the u32 range.

MONITORS_CONFIG never carries PHYSICAL_SIZE (vdagentd 0.22.1 rejects it), and a monitor of
size 0×0 (disabled) is only sent to a guest with SPARSE_MONITORS_CONFIG.
"""

from __future__ import annotations

import struct

from .codec import Limits
from .constants import (
    PROTOCOL_VERSION,
    Capability,
    MessageType,
    MonitorsConfigFlag,
    MouseButton,
    Port,
)
from .errors import LocalProtocolError
from .messages import MonitorConfig, MonitorsConfig
from .negotiation import Negotiation
from .outbound import Outbound
from .wire import CHUNK_HEADER, MESSAGE_HEADER, MOUSE_STATE

#: Chunk header + message header + MOUSE_STATE body, packed at once.
MOUSE_FRAME = struct.Struct(
    "<" + CHUNK_HEADER.format[1:] + MESSAGE_HEADER.format[1:] + MOUSE_STATE.format[1:]
)
#: The chunk's size field: message header + body.
_MOUSE_MESSAGE_SIZE = MESSAGE_HEADER.size + MOUSE_STATE.size

_WHEEL = int(MouseButton.WHEEL_UP | MouseButton.WHEEL_DOWN)


class Pointer:
    """MOUSE_STATE and MONITORS_CONFIG for one conversation. See the module docstring."""

    __slots__ = ("_caps", "_limits", "_out", "monitors")

    def __init__(self, out: Outbound, caps: Negotiation, limits: Limits) -> None:
        self._out = out
        self._caps = caps
        self._limits = limits
        #: The guest layout we last sent or recorded (used to clamp pointer coordinates).
        self.monitors: tuple[MonitorConfig, ...] | None = None

    def send_mouse(
        self, x: int, y: int, buttons: MouseButton | int = 0, display_id: int = 0
    ) -> bool:
        """Queue one MOUSE_STATE; False (nothing queued) before the guest has the cap.

        :raises LocalProtocolError: ``display_id`` does not fit a u8.
        """
        if not self._caps.guest_has(Capability.MOUSE_STATE):
            return False
        if not 0 <= display_id <= 0xFF:
            raise LocalProtocolError(f"display id {display_id} does not fit a u8")
        monitors = self.monitors
        if monitors is not None and display_id < len(monitors):
            mon = monitors[display_id]
            x = min(max(x, 0), max(mon.width - 1, 0))
            y = min(max(y, 0), max(mon.height - 1, 0))
        else:
            x = min(max(x, 0), 0xFFFFFFFF)
            y = min(max(y, 0), 0xFFFFFFFF)
        self._out.push(
            MOUSE_FRAME.pack(
                Port.CLIENT, _MOUSE_MESSAGE_SIZE, PROTOCOL_VERSION, MessageType.MOUSE_STATE, 0,
                MOUSE_STATE.size, x, y, int(buttons) & 0xFFFFFFFF, display_id,
            )
        )
        return True

    def send_wheel(
        self, up: bool, x: int, y: int, buttons: MouseButton | int = 0, display_id: int = 0
    ) -> bool:
        """One wheel step: the wheel bit pressed, then released (the agent emits REL_WHEEL
        on the 0 → 1 edge only, so each step needs both messages)."""
        wheel = MouseButton.WHEEL_UP if up else MouseButton.WHEEL_DOWN
        base = int(buttons) & ~_WHEEL
        return self.send_mouse(x, y, base | wheel, display_id) and self.send_mouse(
            x, y, base, display_id
        )

    def send_monitors_config(self, monitors: tuple[MonitorConfig, ...]) -> bool:
        """Ask the guest to use this layout; False before the guest has the cap.

        :raises LocalProtocolError: no monitor, more than the limit, or a monitor of size 0
            other than a disabled one (0×0) for a guest with SPARSE_MONITORS_CONFIG.
        """
        caps = self._caps
        if not caps.guest_has(Capability.MONITORS_CONFIG):
            return False
        limit = self._limits.max_monitors
        if not 0 < len(monitors) <= limit:
            raise LocalProtocolError(f"{len(monitors)} monitors: need 1..{limit}")
        sparse = caps.guest_has(Capability.SPARSE_MONITORS_CONFIG)
        for mon in monitors:
            disabled = sparse and mon.width == mon.height == 0
            if (mon.width == 0 or mon.height == 0) and not disabled:
                raise LocalProtocolError(f"invalid monitor size {mon.width}x{mon.height}")
        self._out.send(MonitorsConfig(tuple(monitors), MonitorsConfigFlag.USE_POS), caps.fmt)
        self.monitors = tuple(monitors)
        return True

    def set_monitors(self, monitors: tuple[MonitorConfig, ...] | None) -> None:
        """Record the guest layout without sending it (known from config), for clamping."""
        self.monitors = None if monitors is None else tuple(monitors)
