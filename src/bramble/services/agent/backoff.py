"""Retry delays: exponential with jitter up to a ceiling, back to the interval on success."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before the next attempt. ``failures`` consecutive failures so far.

    After n failures the delay is ``min(ceiling, interval * 2**n)`` with "equal jitter": half
    of it fixed, half uniformly random, so a fleet that lost its server together does not
    come back in lock-step. No failure: exactly ``interval``.
    """

    interval: float
    ceiling: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def failed(self) -> float:
        """Record a failure; the delay before the next attempt."""
        self.failures += 1
        return self.delay()

    def succeeded(self) -> float:
        """Record a success; the normal interval."""
        self.failures = 0
        return self.interval

    def delay(self) -> float:
        if self.failures == 0:
            return self.interval
        exponent = min(self.failures, 32)  # 2**32 intervals is beyond any ceiling
        capped = min(self.ceiling, self.interval * 2.0**exponent)
        return capped / 2 + self.rng.uniform(0, capped / 2)
