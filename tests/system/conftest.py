"""Fixtures for system tests against the real SPICE guest agent.

Without the Debian packages (spice-vdagent xvfb xclip x11-utils dbus-daemon) these tests skip
on a developer machine and fail under CI (tests/external.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

# The helpers sit next to this file.  Put the directory on sys.path ourselves
# so ``import agent_stack`` works in every pytest import mode (importlib mode
# does not touch sys.path) and whether or not tests/ becomes a package.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from agent_stack import AgentStack, missing_binaries  # noqa: E402
from hostx import xvfb  # noqa: E402

from tests.external import call_failed, require  # noqa: E402

_PACKAGES_HINT = "apt-get install spice-vdagent xvfb xclip x11-utils dbus-daemon"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here: pyproject.toml belongs to the lead."""
    config.addinivalue_line(
        "markers",
        "system: runs real external programs (Xvfb, spice-vdagentd, spice-vdagent); "
        "deselect with -m 'not system'",
    )


def require_agent_binaries() -> None:
    """Skip (locally) or fail (under CI) when the guest-agent programs are missing."""
    require(missing_binaries(), "real guest agent stack unavailable", _PACKAGES_HINT)


def _print_on_failure(request: pytest.FixtureRequest, stacks: list[AgentStack]) -> None:
    if call_failed(request):
        for stack in stacks:
            # Goes to "Captured stdout teardown" in the failure report.
            print(stack.describe(lines=80))


@pytest.fixture
def agent_stack(request: pytest.FixtureRequest) -> Generator[AgentStack, None, None]:
    """A started :class:`AgentStack` (real daemon + session agent on Xvfb).

    Function-scoped (start-up ~1.5 s) so every test gets fresh serials,
    caps and clipboard state.  Log tails are printed if the test fails.
    """
    require_agent_binaries()
    stack = AgentStack().start()
    try:
        yield stack
    finally:
        _print_on_failure(request, [stack])
        stack.close()


@pytest.fixture
def agent_stack_factory(
    request: pytest.FixtureRequest,
) -> Generator[Callable[..., AgentStack], None, None]:
    """Start extra stacks (keyword args go to :class:`AgentStack`); all are
    closed at teardown.  For tests needing several guests or relay options."""
    require_agent_binaries()
    stacks: list[AgentStack] = []

    def make(**kwargs: object) -> AgentStack:
        stack = AgentStack(**kwargs)  # type: ignore[arg-type]
        stacks.append(stack)
        return stack.start()

    try:
        yield make
    finally:
        _print_on_failure(request, stacks)
        for stack in reversed(stacks):
            stack.close()


@pytest.fixture(scope="module")
def host_display(tmp_path_factory: pytest.TempPathFactory) -> Generator[str, None, None]:
    """A private Xvfb standing for the host's desktop; its display name (``:N``). One per
    test module: the host apps under test start and stop on it, test after test."""
    with xvfb(tmp_path_factory.mktemp("host-xvfb")) as display:
        yield display
