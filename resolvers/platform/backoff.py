"""Exponential backoff, the one rule for waiting before trying again (alert deliveries, the LISTEN connection)."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: float = 0.0) -> float:
    """The wait after failed attempt number `attempt` (1, 2, …): base, 2·base, 4·base, … never above `cap`.

    `jitter` (a fraction) lengthens each wait by up to that much at random, so replicas that failed together
    (a database restart) do not all come back in the same instant.
    """
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    delay = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return delay * (1 + random.uniform(0, jitter)) if jitter else delay
