"""Log lines about refused input, rate-limited per kind, so that a flood of bad input cannot flood the log.

The first refusal of a kind is logged at once; further ones of that kind within ``interval_s``
are only counted, and the next line that is written says how many were left out::

    dead letter from mdh/v1/m-.../status: status schema version 99 is not supported (schema)
    ...
    dead letter from mdh/v1/m-.../status: ... (schema) (41 more of this kind since the last such line, not logged)

The counters (Prometheus) still count every one; the log only names examples.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 10.0,
        max_kinds: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._max_kinds = max_kinds
        self._clock = clock
        self._lock = threading.Lock()
        #: kind -> (time of the last line written, refusals not logged since)
        self._state: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless a line of ``kind`` was written under ``interval_s`` ago; ``True`` if written."""
        now = self._clock()
        with self._lock:
            last = self._state.get(kind)
            if last is not None and now - last[0] < self._interval:
                self._state[kind] = (last[0], last[1] + 1)
                return False
            left_out = last[1] if last is not None else 0
            if last is None and len(self._state) >= self._max_kinds:
                self._state.clear()  # kinds are a small fixed set; this only bounds memory against surprises
            self._state[kind] = (now, 0)
        if left_out:
            self._log.warning(msg + " (%d more of this kind since the last such line, not logged)", *args, left_out)
        else:
            self._log.warning(msg, *args)
        return True
