"""Capped exponential back-off with jitter: the one retry delay of every retry loop of the hub.

Reconnects and retries never wait for minutes (the cap), and many clients that failed at the same
moment do not all come back at the same moment (the jitter). A server's own ``Retry-After`` is
honoured: never retried sooner, with up to a tenth added so that throttled clients spread out.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """``next()`` returns a delay in [min, min(max, min * 2**attempt)] drawn at random; ``reset()`` on success."""

    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("back-off needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt; ``retry_after`` (seconds the other side asked for) wins, up to the cap."""
        if retry_after is not None:
            self.attempt += 1
            return float(min(max(retry_after, 0.0), self.max_s) * (1 + 0.1 * self._rng.random()))
        ceiling = min(self.max_s, self.min_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return float(self.min_s + self._rng.random() * (ceiling - self.min_s))

    def reset(self) -> None:
        self.attempt = 0
