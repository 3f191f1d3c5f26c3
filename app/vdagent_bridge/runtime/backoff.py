"""Reconnect delays: jittered, exponential, capped. Pure: the random source is injectable.

The first delay is jittered so that several VMs losing their sockets at once (a host
suspend, a libvirtd restart) do not reconnect in lockstep; later delays grow by ``factor`` up
to ``cap``, each with full jitter of ±``jitter``. The caller starts a new generator after a
connection that worked, so one failure after hours of service retries quickly again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff(
    *,
    initial: float = 0.2,
    factor: float = 2.0,
    cap: float = 10.0,
    jitter: float = 0.25,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield reconnect delays in seconds, forever.

    :param initial: the first delay (before jitter).
    :param factor: growth per attempt.
    :param cap: no delay exceeds this (after jitter).
    :param jitter: each delay is multiplied by a uniform factor in [1 - jitter, 1 + jitter].
    """
    if initial <= 0 or factor < 1 or cap < initial or not 0 <= jitter < 1:
        raise ValueError("backoff needs 0 < initial <= cap, factor >= 1 and 0 <= jitter < 1")
    source = rng or random.Random()
    delay = initial
    while True:
        yield min(cap, delay * source.uniform(1 - jitter, 1 + jitter))
        delay = min(cap, delay * factor)
