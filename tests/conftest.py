"""Hooks for the whole suite."""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    """Keep each phase's report on the item, so a fixture can tell that its test failed
    (tests/external.py call_failed) and print the logs of the programs it ran."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"_vdb_report_{report.when}", report)
