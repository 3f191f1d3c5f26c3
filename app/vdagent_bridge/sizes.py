"""Sizes in words, for notices and progress lines (binary units, as the config file's)."""

from __future__ import annotations


def format_size(count: int) -> str:
    """``count`` bytes as a person reads it: "512 bytes", "4.0 KiB", "1.5 MiB", "4.2 GiB"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return "1 byte" if count == 1 else f"{count} bytes"
