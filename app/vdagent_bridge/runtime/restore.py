"""Whether a restored VM continues the conversation it was saved with: the decision, pure.

Why it can: ``virsh save`` / ``managedsave`` write the guest's memory and devices to a file and
end QEMU; ``virsh restore`` / ``start`` launch a new QEMU that loads it while the domain is
paused (libvirt: PAUSED, reason STARTING_UP), then resume it. The guest's agent port keeps,
in the saved devices, whether a host was connected; a host that is connected to the new QEMU
before the guest resumes is, for the guest, the same host that never left (QEMU compares the
port's saved state with the new one only once the guest runs). So if the bridge connects
while the restored domain is still paused, and continues from the session as it stood at the
save (no announce: serials, ownership, pending requests carry over), the guest notices
nothing.

Why it may not: the session kept must be the one the guest was saved with. The bridge marks
every conversation it starts in the domain's live definition (libvirt metadata, saved into the
image with the rest): a restored domain whose mark is not the kept conversation's was saved by
another instance (or talked to since), and the guest's state is not ours to continue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestoreVerdict:
    """Continue (``resume``) or start afresh, and why, in words for the log."""

    resume: bool
    why: str


def judge_restore(kept: str | None, mark: str | None, restoring: bool) -> RestoreVerdict:
    """``kept``: the conversation kept for the saved VM (None: none kept, or its state file is
    gone); ``mark``: the conversation the restored domain's definition carries (None: none);
    ``restoring``: the domain is still paused, starting up from its saved image."""
    if kept is None:
        return RestoreVerdict(False, "no conversation was kept for it (none saved with the "
                                     "VM, or its state file is gone)")
    if mark is None:
        return RestoreVerdict(False, "the VM was saved without a conversation of ours (its "
                                     "saved definition carries no mark)")
    if mark != kept:
        return RestoreVerdict(False, "another instance talked to the VM since (its saved "
                                     "definition carries another conversation's mark)")
    if not restoring:
        return RestoreVerdict(False, "the VM was already running when we reached it (the "
                                     "guest saw no host after the restore)")
    return RestoreVerdict(True, "continuing the conversation it was saved with")
