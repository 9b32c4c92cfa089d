"""Never silently stale: every missing, refused, stalled or malformed input of a source, in one place.

Each source owns one :class:`SourceProblems`. It keeps two kinds of problem:

- *node states*, counts that hold until the source says otherwise (``missing``: configured nodes the
  server does not have; ``refused``: monitored items or reads the server refused; ``stalled``: monitored
  items whose values stopped arriving while the server's value moved on);
- *input events*, counted occurrences (``malformed``: a message that cannot be decoded; ``overflow``:
  the server reported that an item's queue overflowed and values were lost; ``stalled``: a stall found
  and repaired; ``refused``: reads refused at run time; ``future``: a reading stamped further ahead of the
  gateway's clock than the policy allows, dropped).

Every problem is a metric (:mod:`gateway.metrics` reads :attr:`nodes` and :attr:`events`), makes the
source's health ``degraded`` with the reason (node states while they last, events for
``window_s`` after the last one), and is written as one log line, rate-limited per reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from core.ratelog import RateLimitedLog

#: Node states (gauges) and input events (counters), the label values of their metrics.
NODE_STATES = ("missing", "refused", "stalled")
INPUT_EVENTS = ("malformed", "overflow", "stalled", "refused", "future")


class SourceProblems:
    def __init__(
        self,
        source: str,
        logger: logging.Logger,
        *,
        window_s: float = 300.0,
        log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.window_s = window_s
        self._clock = clock
        self._log = RateLimitedLog(logger, interval_s=log_interval_s, clock=clock)
        self.nodes: dict[str, int] = dict.fromkeys(NODE_STATES, 0)
        self.events: Counter[str] = Counter()
        self._last_event: dict[str, float] = {}
        self._last_detail: dict[str, str] = {}

    def set_nodes(self, state: str, count: int, detail: str = "") -> None:
        """Set how many nodes are in ``state`` now (0 clears it); logs when the count grows."""
        before = self.nodes.get(state, 0)
        self.nodes[state] = count
        if detail:
            self._last_detail[state] = detail
        if count > before:
            self._log.warning(
                f"nodes:{state}",
                "source %s: %d node(s) %s%s",
                self.source,
                count,
                state,
                f" ({detail})" if detail else "",
            )

    def event(self, kind: str, count: int = 1, detail: str = "") -> None:
        """Count ``count`` inputs of ``kind`` (malformed, overflow, stalled, refused)."""
        if count <= 0:
            return
        self.events[kind] += count
        self._last_event[kind] = self._clock()
        if detail:
            self._last_detail[f"event:{kind}"] = detail
        self._log.warning(
            f"event:{kind}", "source %s: %d %s input(s)%s", self.source, count, kind, f" ({detail})" if detail else ""
        )

    def future(self, ahead_ns: int) -> None:
        """A reading stamped ``ahead_ns`` ahead of the gateway's clock was dropped (the normaliser's ``on_future``)."""
        self.event(
            "future",
            detail=f"the last was stamped {ahead_ns / 1e9:.0f} s ahead of the gateway's clock, beyond "
            "policy.max_ahead_s: check the clock of the machine (or its server)",
        )

    def active(self) -> dict[str, str]:
        """Reason -> description of every problem that makes the source degraded now."""
        out: dict[str, str] = {}
        for state, n in self.nodes.items():
            if n:
                detail = self._last_detail.get(state)
                out[f"nodes_{state}"] = f"{n} node(s) {state}" + (f": {detail}" if detail else "")
        now = self._clock()
        for kind, at in self._last_event.items():
            if now - at < self.window_s:
                detail = self._last_detail.get(f"event:{kind}")
                age = int(now - at)
                text = f"{self.events[kind]} {kind} input(s) in total, the last {age} s ago"
                out[f"input_{kind}"] = text + (f": {detail}" if detail else "")
        return out
