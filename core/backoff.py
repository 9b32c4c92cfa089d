"""Capped exponential back-off with full jitter (DESIGN §8.6): reconnects never wait for minutes."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` returns a delay in [min, min(max, min * 2**attempt)] drawn at random; ``reset()`` on success."""

    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("back-off needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.max_s, self.min_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return float(self.min_s + self._rng.random() * (ceiling - self.min_s))

    def reset(self) -> None:
        self.attempt = 0
