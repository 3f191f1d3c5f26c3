"""The policy for tests that need outside programs (tests/external.py): skip on a developer
machine that lacks one, fail under CI, and fail anywhere for programs that are never optional."""

from __future__ import annotations

import pytest

from tests.external import require


def test_nothing_missing_is_neither_a_skip_nor_a_failure() -> None:
    require([], "agent", "apt-get install spice-vdagent")


def test_a_missing_program_skips_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="missing: xclip .install: apt-get"):
        require(["xclip"], "agent", "apt-get install xclip")


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this is an error"):
        require(["xclip"], "agent", "apt-get install xclip")


def test_a_program_that_is_never_optional_fails_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.fail.Exception, match="the rest is installed"):
        require(["cpio"], "QEMU test tools", "apt-get install cpio", may_skip=False)
