"""A restored VM continues the conversation it was saved with only when it is ours and the
guest has not run yet (runtime/restore.py): the whole decision, as a table."""

from __future__ import annotations

import pytest

from vdagent_bridge.runtime.restore import judge_restore

OURS, THEIRS = "c0ffee", "beef"

ROWS = [
    # kept, mark, restoring -> resume, words in the reason
    (OURS, OURS, True, True, "continuing the conversation it was saved with"),
    (None, OURS, True, False, "no conversation was kept"),
    (None, None, True, False, "no conversation was kept"),
    (OURS, None, True, False, "saved without a conversation of ours"),
    (OURS, THEIRS, True, False, "another instance talked to the VM since"),
    (OURS, OURS, False, False, "already running"),
    (OURS, THEIRS, False, False, "another instance"),
]


@pytest.mark.parametrize(("kept", "mark", "restoring", "resume", "why"), ROWS)
def test_a_restore_continues_only_its_own_conversation_before_the_guest_runs(
    kept: str | None, mark: str | None, restoring: bool, resume: bool, why: str,
) -> None:
    verdict = judge_restore(kept, mark, restoring)
    assert verdict.resume is resume
    assert why in verdict.why
