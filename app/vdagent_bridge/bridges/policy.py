"""What may cross between the host clipboard and one VM: the policy, as a value.

No Qt here: the command line, the configuration and the UI build policies, and the clipboard
bridge enforces them at its boundary (see bridges/clipboard.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import Selection

#: Default size limit of each direction. 16 MiB cross the real agent in ~0.3 s (see the
#: module docstring); spice-gtk allows 100 MiB, Qubes 64 KiB (docs/peers.md §5).
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClipboardPolicy:
    """What may cross between the host and one VM. Sizes are bytes of clipboard data."""

    to_guest: bool = True
    to_host: bool = True
    #: PRIMARY (the X11 selection) crosses too, in the directions that are on. Off by default:
    #: it changes with every text selection (docs/peers.md §4).
    primary: bool = False
    max_to_guest: int = DEFAULT_MAX_BYTES
    max_to_host: int = DEFAULT_MAX_BYTES

    #: The command line's ``--clipboard`` words.
    DIRECTIONS = ("both", "to-guest", "to-host", "off")

    @classmethod
    def from_direction(cls, direction: str, **kwargs: object) -> ClipboardPolicy:
        """A policy for ``both``, ``to-guest``, ``to-host`` or ``off``.

        :raises ValueError: for another word (the message names the valid ones).
        """
        if direction not in cls.DIRECTIONS:
            raise ValueError(
                f"clipboard direction {direction!r}: use one of {', '.join(cls.DIRECTIONS)}"
            )
        return cls(
            to_guest=direction in ("both", "to-guest"),
            to_host=direction in ("both", "to-host"),
            **kwargs,  # type: ignore[arg-type]
        )

    def allows_to_guest(self, selection: Selection | int) -> bool:
        return self.to_guest and _bridged(selection, self.primary)

    def allows_to_host(self, selection: Selection | int) -> bool:
        return self.to_host and _bridged(selection, self.primary)


def _bridged(selection: Selection | int, primary: bool) -> bool:
    return selection == Selection.CLIPBOARD or (primary and selection == Selection.PRIMARY)
