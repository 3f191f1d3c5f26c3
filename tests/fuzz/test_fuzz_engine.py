"""The fuzz targets in the test suite: every regression input and seed, then a few seconds of
random and mutated inputs (no atheris needed; the offline coverage-guided run is
tests/fuzz/fuzz_engine.py).

``VDAGENT_FUZZ_SECONDS`` sets the random run's budget (default 3 s); a failing input is written
to the pytest temp dir and its hex is in the failure message, ready for tests/fuzz/regressions/.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.fuzz.harness import TARGETS, one_input, seeds

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.bin"))
SECONDS = float(os.environ.get("VDAGENT_FUZZ_SECONDS", "3"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression_input(path: Path) -> None:
    one_input(path.read_bytes())


def test_seeds() -> None:
    for seed in seeds():
        one_input(seed)


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four of: flip a bit, set an interesting byte, insert or delete a run, splice."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[at % len(out)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif kind == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3:
            del out[at : at + rng.randint(1, 16)]
        else:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            out[at:] = other[start:]
    return bytes(out)


def test_a_few_seconds_of_random_inputs(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    pool = seeds() + [p.read_bytes() for p in REGRESSIONS]
    end = time.monotonic() + SECONDS
    count = 0
    while time.monotonic() < end or count < 200:
        if rng.random() < 0.25:
            data = bytes([rng.randrange(len(TARGETS))]) + rng.randbytes(rng.randrange(600))
        else:
            data = mutate(rng, rng.choice(pool), pool)
        count += 1
        try:
            one_input(data)
        except Exception as err:
            (tmp_path / "crash.bin").write_bytes(data)
            raise AssertionError(
                f"input #{count} ({len(data)} bytes, saved as {tmp_path / 'crash.bin'}): "
                f"{type(err).__name__}: {err}\n{data.hex()}"
            ) from err
    print(f"{count} inputs in {SECONDS:.0f} s")
