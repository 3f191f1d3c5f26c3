"""Coverage-guided fuzzing of the engine's guest-facing side with atheris (libFuzzer).

The targets and invariants are in :mod:`tests.fuzz.harness` (see its docstring); this script
instruments the engine (and construct, which parses every payload), seeds a corpus and hands
over to libFuzzer. It is not part of the test suite: the suite replays the regressions and
runs a few seconds of the same targets without atheris (test_fuzz_engine.py).

    pip install atheris            # a wheel exists for CPython 3.8-3.11 on x86-64 Linux
    python tests/fuzz/fuzz_engine.py -runs=1000000          # the offline run (1-2 h)
    python tests/fuzz/fuzz_engine.py -max_total_time=60     # a minute
    python tests/fuzz/fuzz_engine.py CRASH_FILE             # replay one input

Options other than ``--workdir`` go to libFuzzer (``-help=1`` lists them). The corpus and any
crash artifacts go to ``--workdir`` (default: ``$TMPDIR/vdagent-bridge-fuzz``). A crash found
becomes a regression: copy the artifact into ``tests/fuzz/regressions/`` with a name that
says what it broke, fix the bug, and the suite replays it from then on.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "app"), str(ROOT)]

import atheris  # noqa: E402

with atheris.instrument_imports(include=["vdagent_bridge", "construct"]):
    import construct  # noqa: F401

    import vdagent_bridge.protocol  # noqa: F401

from tests.fuzz.harness import one_input, seeds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "vdagent-bridge-fuzz"),
        help="corpus and crash artifacts",
    )
    args, libfuzzer_args = parser.parse_known_args()
    workdir = Path(args.workdir)
    corpus = workdir / "corpus"
    crashes = workdir / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds()):
        (corpus / f"seed-{index:03d}").write_bytes(seed)
    replay = [a for a in libfuzzer_args if not a.startswith("-")]
    argv = [sys.argv[0], *libfuzzer_args]
    if not replay:
        given = {a.split("=", 1)[0] for a in libfuzzer_args}
        defaults = {"-artifact_prefix": f"{crashes}/", "-print_final_stats": "1",
                    "-max_len": "4096"}
        argv += [f"{k}={v}" for k, v in defaults.items() if k not in given] + [str(corpus)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
