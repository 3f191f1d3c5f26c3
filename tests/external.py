"""What the tests that run outside programs (the real agent, Xvfb, QEMU) share: the policy
for a missing program, and whether a test failed (so a fixture prints the programs' logs).

Policy: on a developer machine without a program these tests skip with the install hint;
under CI (env var ``CI`` set, as GitHub and GitLab do) the programs are supposed to be
installed, so a missing one is a failure, never a silent skip. Some programs are never
optional once the main one is there (``may_skip=False``).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time

import pytest


def running_under_ci() -> bool:
    """True when the env var CI is set to something other than empty/0/false/no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(missing: list[str], what: str, install: str, *, may_skip: bool = True) -> None:
    """Skip or fail (see the module docstring) when ``missing`` names programs."""
    if not missing:
        return
    message = f"{what}, missing: {', '.join(missing)} (install: {install})"
    if may_skip and not running_under_ci():
        pytest.skip(message)
    why = "CI is set" if running_under_ci() else "the rest is installed"
    pytest.fail(f"{message}; {why}, so this is an error, not a skip", pytrace=False)


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test using the fixture failed in its call phase (tests/conftest.py keeps
    each phase's report on the item)."""
    report = getattr(request.node, "_vdb_report_call", None)
    return report is not None and bool(report.failed)


def system_user(name: str, *, home: bool = False) -> pwd.struct_passwd:
    """A system user, created if missing (left in place afterwards: ``userdel``); ``home``
    gives it a home directory.

    Why the retries: the suite runs in two processes (tests/run.sh), and two ``useradd`` at
    once fail on the lock of /etc/passwd (status 1 or 10), or on the name the other one just
    made (status 9)."""
    args = ["--create-home"] if home else ["--no-create-home", "--user-group"]
    for _ in range(100):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        done = subprocess.run(["useradd", "--system", "--shell", "/bin/false", *args, name],
                              capture_output=True, text=True)
        if done.returncode in (0, 9):
            return pwd.getpwnam(name)
        if done.returncode not in (1, 10):
            raise RuntimeError(f"useradd {name}: {done.stderr.strip()}")
        time.sleep(0.1)
    raise RuntimeError(f"useradd {name}: /etc/passwd stayed locked")
