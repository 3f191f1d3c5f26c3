"""The layering contracts (pyproject.toml, ``[tool.importlinter]``) hold, and they do fail on
a violation: each case below copies the package, breaks one rule, and runs import-linter on
the copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing (the test extra installs import-linter)",
                    pytrace=False)
    env = {**os.environ, "PYTHONPATH": str(root / "app")}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config",
                           str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("runtime/vm.py", "import PySide6.QtCore", "No Qt below the bridges"),
    ("state/store.py", "from ..bridges import ClipboardPolicy", "imports only point inward"),
    ("protocol/session.py", "from ..runtime import gate", "imports only point inward"),
    ("protocol/codec.py", "import socket", "sans-IO"),
    ("runtime/switchover/machine.py", "import asyncio", "does no I/O"),
    ("bridges/policy.py", "from ..ui import model", "imports only point inward"),
])
def test_a_violation_breaks_its_contract(tmp_path: Path, module: str, line: str,
                                         contract: str) -> None:
    shutil.copytree(REPO / "app" / "vdagent_bridge", tmp_path / "app" / "vdagent_bridge",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "app" / "vdagent_bridge" / module
    target.write_text(target.read_text() + f"\n{line}  # the violation\n")
    result = lint(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(contract in text for text in broken), result.stdout
