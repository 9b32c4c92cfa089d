"""Rollup rows of settled hours kept in the querying process (pure: frames in, frames out; no I/O).

An all-assets KPI answer over a day reads tens of thousands of rollup rows; all but the open hour's rarely change.
:class:`RollupCache` keeps the rows of *settled* hours (ended at least :data:`SETTLE_NS` ago, and no older than the
cache's age limit) per hour, each hour either for every member or for the members that were asked for. The
reader (:mod:`storage.influx.rollup_reader`) takes from it what it holds and reads only the rest from InfluxDB.

A settled hour still changes when late data makes a keeper rewrite it, or when a member is deleted. Every keeper
announces such a rewrite (see :func:`announced_hours`) with a *change record* that names only the hours, never a
member or an asset; :meth:`RollupCache.invalidate` drops them. The rows of a fill are kept only if no invalidation
of their hours happened since the fill looked (:meth:`RollupCache.token`), so a read that raced a rewrite is used
once and never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from ..rollups import HOUR_NS

#: An hour is cached only once it ended this long ago; a keeper announces rewrites of any hour that ends within
#: this of its clock (the margin covers the skew between the writer's and the reader's clock and writes still
#: in flight when the hour became cacheable).
SETTLE_NS = 5 * 60 * 10**9
#: Invalidations remembered for fills still running; a fill older than all of them is not kept.
_LOG_LENGTH = 1024


def settled_range(now_ns: int, max_age_ns: int) -> tuple[int, int]:
    """The hours that may be cached at ``now_ns``: hour starts ``h`` with ``lo <= h < hi``."""
    hi = (now_ns - SETTLE_NS - HOUR_NS) // HOUR_NS * HOUR_NS + HOUR_NS  # the first hour not yet settled
    lo = -(-(now_ns - max_age_ns) // HOUR_NS) * HOUR_NS
    return lo, max(lo, hi)


def announced_hours(hours: Iterable[int], now_ns: int) -> tuple[int, int] | None:
    """The first and last of ``hours`` (hour starts) that a reader may hold at ``now_ns``, if any: the hours that
    end no later than :data:`SETTLE_NS` after ``now_ns``."""
    late = [h for h in hours if h + HOUR_NS <= now_ns + SETTLE_NS]
    return (min(late), max(late)) if late else None


@dataclass(slots=True)
class CacheStats:
    """Counts since start: hours answered from the cache, hours read into it, hours dropped by an announced change
    or a deletion, hours evicted for room; the rows held now."""

    hits: int = 0
    misses: int = 0
    invalidated: int = 0
    evicted: int = 0
    rows: int = 0


@dataclass(slots=True)
class _Hour:
    frame: pl.DataFrame
    everyone: bool
    members: set[str] = field(default_factory=set)

    def covers(self, member: str | None) -> bool:
        return self.everyone or (member is not None and member in self.members)


class RollupCache:
    """Rows of settled hours, at most ``max_rows`` of them (the least recently used hours go first).

    Thread-safe; frames go in and out as the store returns them (:data:`~storage.base.ROLLUP_SCHEMA`, ``hour`` a
    UTC datetime). ``members`` ``None`` stands for every member."""

    def __init__(self, *, max_rows: int, max_age_ns: int) -> None:
        self.max_rows = max_rows
        self.max_age_ns = max_age_ns
        self.stats = CacheStats()
        self._hours: OrderedDict[int, _Hour] = OrderedDict()
        self._lock = threading.Lock()
        self._seq = 0
        #: (sequence number, first hour, last hour) of recent invalidations
        self._log: list[tuple[int, int, int]] = []

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0

    def token(self) -> int:
        """Taken before a fill reads: :meth:`put` keeps the rows only if nothing of theirs changed since."""
        with self._lock:
            return self._seq

    def get(self, hours: Sequence[int], members: Sequence[str] | None) -> tuple[pl.DataFrame | None, list[int]]:
        """The cached rows of ``hours`` for ``members`` (``None``: no hour held) and the hours not held for all of
        them. One concatenation and at most one filter, whatever the number of hours: under a busy process each
        polars call waits for the GIL again."""
        frames: list[pl.DataFrame] = []
        missing: list[int] = []
        wanted = None if members is None else list(members)
        with self._lock:
            for h in hours:
                entry = self._hours.get(h)
                if entry is None or not (entry.everyone if wanted is None else all(entry.covers(m) for m in wanted)):
                    missing.append(h)
                    continue
                self._hours.move_to_end(h)
                frames.append(entry.frame)
            self.stats.hits += len(hours) - len(missing)
            self.stats.misses += len(missing)
        if not frames:
            return None, missing
        frame = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
        if wanted is not None:
            frame = frame.filter(pl.col("member").is_in(wanted))
        return frame, missing

    def put(self, frame: pl.DataFrame, hours: Sequence[int], members: Sequence[str] | None, token: int) -> bool:
        """Keep ``frame``: every row InfluxDB held of ``hours`` for ``members``, read after :meth:`token` gave
        ``token``. Rows of hours that changed since are not kept; return whether all were."""
        if not self.enabled or not hours:
            return False
        by_hour = {h: frame.filter(pl.col("hour").dt.epoch("ns") == h) for h in hours} if frame.height else {}
        with self._lock:
            changed = [(lo, hi) for seq, lo, hi in self._log if seq > token]
            if token < self._seq and (not self._log or self._log[0][0] > token + 1):
                return False  # older than the invalidations remembered
            kept = True
            for h in hours:
                if any(lo <= h <= hi for lo, hi in changed):
                    kept = False
                    continue
                rows = by_hour.get(h, frame.clear())
                entry = self._hours.get(h)
                if members is None:
                    new = _Hour(rows, everyone=True)
                elif entry is None:
                    new = _Hour(rows, everyone=False, members=set(members))
                elif entry.everyone:
                    continue
                else:
                    fresh = [m for m in members if m not in entry.members]
                    add = rows.filter(pl.col("member").is_in(fresh))
                    new = _Hour(pl.concat([entry.frame, add]), everyone=False, members=entry.members | set(fresh))
                if entry is not None:
                    self.stats.rows -= entry.frame.height
                self._hours[h] = new
                self._hours.move_to_end(h)
                self.stats.rows += new.frame.height
            self._evict()
            return kept

    def invalidate(self, lo: int, hi: int) -> None:
        """Drop the hours from ``lo`` to ``hi`` (hour starts, inclusive)."""
        with self._lock:
            self._seq += 1
            self._log.append((self._seq, lo, hi))
            del self._log[:-_LOG_LENGTH]
            for h in [h for h in self._hours if lo <= h <= hi]:
                self.stats.rows -= self._hours.pop(h).frame.height
                self.stats.invalidated += 1

    def clear(self) -> None:
        """Drop everything (a member was deleted)."""
        self.invalidate(-(2**62), 2**62)

    def expire(self, now_ns: int) -> None:
        """Drop the hours older than the age limit at ``now_ns`` (InfluxDB may have dropped them by retention)."""
        lo, _ = settled_range(now_ns, self.max_age_ns)
        with self._lock:
            for h in [h for h in self._hours if h < lo]:
                self.stats.rows -= self._hours.pop(h).frame.height
                self.stats.evicted += 1

    def _evict(self) -> None:
        while self.stats.rows > self.max_rows and self._hours:
            _, entry = self._hours.popitem(last=False)
            self.stats.rows -= entry.frame.height
            self.stats.evicted += 1
