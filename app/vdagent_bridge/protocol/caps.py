"""Capability sets: the bitmap of ANNOUNCE_CAPABILITIES as an immutable value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .constants import CAPABILITY_END, Capability


@dataclass(frozen=True, slots=True)
class Caps:
    """An immutable set of capability bits, kept as the announced words.

    Unknown bits a newer peer announces are kept (they matter for nothing but logs), and a
    missing word reads as zero, like ``VD_AGENT_HAS_CAPABILITY`` with the announced size.
    """

    words: tuple[int, ...] = ()

    @classmethod
    def of(cls, caps: Iterable[Capability | int]) -> Caps:
        """A set holding exactly ``caps``."""
        words: list[int] = []
        for bit in caps:
            index, offset = divmod(int(bit), 32)
            while len(words) <= index:
                words.append(0)
            words[index] |= 1 << offset
        return cls(tuple(words))

    def __contains__(self, cap: object) -> bool:
        if not isinstance(cap, int):
            return False
        index, offset = divmod(int(cap), 32)
        return index < len(self.words) and bool(self.words[index] >> offset & 1)

    def __and__(self, other: Caps) -> Caps:
        return Caps(tuple(a & b for a, b in zip(self.words, other.words, strict=False)))

    def __iter__(self) -> Iterator[Capability | int]:
        for index, word in enumerate(self.words):
            for offset in range(32):
                if word >> offset & 1:
                    bit = index * 32 + offset
                    yield Capability(bit) if bit < CAPABILITY_END else bit

    def to_words(self) -> tuple[int, ...]:
        """At least one word, as announced on the wire (VD_AGENT_CAPS_SIZE is 1)."""
        return self.words or (0,)

    def names(self) -> list[str]:
        """Readable names for logs."""
        return [c.name if isinstance(c, Capability) else f"bit{c}" for c in self]


#: What the host side implements and announces. Like spice-gtk's set (0x00035077) without
#: DISPLAY_CONFIG, which we never send: the Linux agent frames clipboard messages by these caps.
HOST_CAPS = Caps.of(
    [
        Capability.MOUSE_STATE,
        Capability.MONITORS_CONFIG,
        Capability.REPLY,
        Capability.CLIPBOARD_BY_DEMAND,
        Capability.CLIPBOARD_SELECTION,
        Capability.MONITORS_CONFIG_POSITION,
        Capability.FILE_XFER_DETAILED_ERRORS,
        Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB,
        Capability.CLIPBOARD_GRAB_SERIAL,
    ]
)

#: What spice-vdagentd 0.22.1 announces (vdagentd.c send_capabilities; seen live: 0x00038de7).
LINUX_AGENT_CAPS = Caps.of(
    [
        Capability.MOUSE_STATE,
        Capability.MONITORS_CONFIG,
        Capability.REPLY,
        Capability.CLIPBOARD_BY_DEMAND,
        Capability.CLIPBOARD_SELECTION,
        Capability.SPARSE_MONITORS_CONFIG,
        Capability.GUEST_LINEEND_LF,
        Capability.MAX_CLIPBOARD,
        Capability.AUDIO_VOLUME_SYNC,
        Capability.GRAPHICS_DEVICE_INFO,
        Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB,
        Capability.CLIPBOARD_GRAB_SERIAL,
    ]
)
