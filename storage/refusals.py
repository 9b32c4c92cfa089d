"""The refusals of the last minutes, for the ingestor's health (pure; the clock is passed in).

Every refused message is counted (``mdh_ingest_refused_total``), dead-lettered and logged (rate-limited); this adds
the health state: the ingest role is ``degraded`` while a refusal is younger than ``window_s``, with one reason per
code (how many, how long ago the last, and its reason). Refusals do not fail the operators' probe: they are a
member's input, not the hub's state, and a member sending garbage would otherwise take the hub out of its load
balancer or have it restarted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

#: How long a refusal keeps the ingest role degraded (as a gateway source's input problems do).
WINDOW_S = 300.0


class RecentRefusals:
    def __init__(self, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._last: dict[str, tuple[float, str]] = {}

    def note(self, code: str, reason: str) -> None:
        self._counts[code] += 1
        self._last[code] = (self._clock(), reason)

    def active(self) -> list[str]:
        """One line per refusal code seen within the window, by code."""
        now = self._clock()
        out = []
        for code, (at, reason) in sorted(self._last.items()):
            if now - at < self.window_s:
                text = f"{self._counts[code]} message(s) refused as {code} since start, the last {int(now - at)} s ago"
                out.append(text + (f": {reason[:200]}" if reason else ""))
        return out
