"""The fast benchmarks, run by CI in a small size: each must run to its end and print every
figure with its ratio to the limit it measured in the same run.

Their speed targets are not checked here: these machines are shared and noisy, so a target
is judged by a full run (``benchmarks/README.md`` records those), never by a test. What is
checked is that every benchmark still works — a benchmark that no longer runs would leave its
figures in the README unverifiable. The soak is functional as well (no errors, bounded
memory), so its verdict counts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RATIO = r"\d+\.\d+x"


def run(script: str, *args: str, timeout: float = 240) -> tuple[int, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    return proc.returncode, output


def verdict(code: int, output: str) -> None:
    """A speed verdict: printed, and the exit status agrees with it."""
    if code == 0:
        assert "all targets met" in output, output
    else:
        assert code == 1 and "TARGET MISSED" in output, output


def test_engine_benchmark_prints_its_ratios() -> None:
    code, output = run("engine.py", "--mib", "4", "--runs", "1", "--mouse", "20000")
    verdict(code, output)
    for figure in ("engine encode:", "engine decode:", "MOUSE_STATE:"):
        assert re.search(rf"{figure}.*ratio +{RATIO}", output), output


def test_transfer_benchmark_prints_app_agent_and_memory_ratios() -> None:
    code, output = run("transfer.py", "--mib", "4", "--runs", "1")
    verdict(code, output)
    assert len(re.findall(rf"ratio {RATIO} of raw \[{RATIO}\]", output)) == 2, output
    assert re.search(rf"floor: .*{RATIO} of raw \[{RATIO}\]; the runtime is {RATIO} of it",
                     output), output
    assert len(re.findall(rf"ratio {RATIO} the client's time", output)) == 2, output
    assert len(re.findall(rf"= {RATIO} payload", output)) == 2, output


def test_pointer_benchmark_prints_rates_and_latencies() -> None:
    code, output = run("pointer.py", "--events", "100", "--messages", "5000",
                       "--seconds", "0.3")
    assert code == 0, output
    assert re.search(rf"buttons via PointerBridge .* {RATIO} limit", output), output
    assert re.search(rf"motion, one move per loop turn .* {RATIO} loop turns", output), output
    assert re.search(rf"Qt move +→ read .* {RATIO} / {RATIO} limit", output), output
    assert re.search(rf"Qt press +→ read .* {RATIO} / {RATIO} limit", output), output


def test_a_short_soak_passes() -> None:
    code, output = run("soak.py", "--minutes", "0.2")
    assert code == 0 and "soak passed" in output, output
