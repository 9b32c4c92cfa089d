"""Reading rollup rows from InfluxDB through the process's :class:`~storage.influx.rollup_cache.RollupCache`.

The rows of settled hours come from the cache; only the open hour(s), and settled hours the cache does not hold,
are read from InfluxDB. Rows are written by whichever process refreshes (the ingest process in production), so
rewrites are announced through InfluxDB: :meth:`RollupReader.wrote` is called after every write of rollup rows
and, when they touch hours a reader may hold (:func:`~storage.influx.rollup_cache.announced_hours`), writes one
*change record* to the measurement ``rollup_changes`` (retention policy of the raw data): fields ``lo_ns`` /
``hi_ns`` (first and last hour rewritten), tag ``writer`` (a random token of the writing process), stamped with
the writer's clock *after* the rows were accepted, so a visible record means its rows are visible. It names no
member and no asset: a deletion announces "every hour" and leaves no trace of whom it was about.

Before each cached read the reader looks at the change records stamped since its previous look, less
:data:`~storage.influx.rollups.WATERMARK_MARGIN_NS` for records still in flight, and drops the hours they name
(its own process's rewrites it drops at once). A failed look fails the query: the cache never answers unconfirmed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import polars as pl
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..base import ROLLUP_SCHEMA, RollupQuery, empty_rollups
from ..rollups import HOUR_NS
from .batchlog import new_writer_id
from .connection import InfluxConnection, source
from .influxql import ident, tag_in, time_range, where
from .rollup_cache import RollupCache, announced_hours, settled_range

log = logging.getLogger(__name__)

CHANGES = "rollup_changes"
#: Change records are read back this far before the previous look (writes still in flight, clock skew).
LOOK_MARGIN_NS = 30 * 10**9
_KEY_COLUMNS = ("member", "asset", "asset_class", "hour")
_ROLLUP_FIELDS = tuple(c for c in ROLLUP_SCHEMA if c not in _KEY_COLUMNS)
_EVERYTHING = (-(2**62), 2**62)


class RollupReader:
    """Answers rollup queries from the cache and InfluxDB; announces and applies rewrites of settled hours."""

    def __init__(
        self,
        connection: InfluxConnection,
        cache: RollupCache,
        *,
        writer: str | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._db = connection
        self.cache = cache
        self._clock = clock
        self.writer = writer if writer is not None else new_writer_id()
        self._look_lock = threading.Lock()
        self._looked: int | None = None
        #: change records already applied, (writer, time), while they are inside the look-back margin
        self._applied: set[tuple[str, int]] = set()

    # -- announcing ---------------------------------------------------------------------------------
    def wrote(self, hours: Sequence[int]) -> None:
        """Rollup rows of ``hours`` (hour starts) were just written: drop them here and announce them."""
        span = announced_hours(hours, self._clock())
        if span is not None:
            self._announce(*span)

    def forget_all(self) -> None:
        """Rows were deleted (a member's): drop everything here and in every reader."""
        self._announce(*_EVERYTHING)

    def _announce(self, lo: int, hi: int) -> None:
        self.cache.invalidate(lo, hi)
        now = self._clock()
        line = f"{CHANGES},writer={self.writer} hi_ns={hi}i,lo_ns={lo}i {now}"
        self._db.write_lines(line.encode(), rp=self._db.raw_rp)

    # -- applying -----------------------------------------------------------------------------------
    def look(self) -> None:
        """Apply the change records stamped since the previous look (less the margin)."""
        with self._look_lock:
            now = self._clock()
            since = (self._looked if self._looked is not None else now) - LOOK_MARGIN_NS
            rows = self._db.execute(
                f'SELECT "lo_ns", "hi_ns", "writer" FROM {source(CHANGES, self._db.raw_rp)} '
                f"WHERE {time_range(since, None)}"
            ).columns
            for writer, t, lo, hi in zip(
                rows.get("writer", []), rows.get("time", []), rows.get("lo_ns", []), rows.get("hi_ns", []), strict=True
            ):
                key = (str(writer), int(t))
                if writer == self.writer or key in self._applied or lo is None or hi is None:
                    continue
                self._applied.add(key)
                self.cache.invalidate(int(lo), int(hi))
                log.debug("rollup cache: hours %d..%d changed elsewhere", lo, hi)
            self._applied = {k for k in self._applied if k[1] >= since}
            self._looked = now

    # -- reading ------------------------------------------------------------------------------------
    def read(self, query: RollupQuery) -> pl.DataFrame:
        """The rows of ``query`` (:data:`ROLLUP_SCHEMA`, sorted by member, asset, hour)."""
        start, end = query.start_ns, query.end_ns
        if not self.cache.enabled or start is None or end is None:
            return self._read(query, start, end)
        t0 = time.perf_counter()
        self.look()
        t1 = time.perf_counter()
        now = self._clock()
        self.cache.expire(now)
        lo, hi = settled_range(now, self.cache.max_age_ns)
        first = max(lo, -(-start // HOUR_NS) * HOUR_NS)
        hours = list(range(first, min(hi, end), HOUR_NS))
        if not hours:
            return self._read(query, start, end)
        token = self.cache.token()
        cached, missing = self.cache.get(hours, query.members)
        frames = [] if cached is None else [cached]
        if missing:
            filled = self._read(
                RollupQuery(members=query.members), missing[0], missing[-1] + HOUR_NS
            )  # the settled hours for the query's members: every asset and class, kept for later queries
            filled = filled.filter(pl.col("hour").dt.epoch("ns").is_in(missing))
            self.cache.put(filled, missing, query.members, token)
            frames.append(filled)
        t2 = time.perf_counter()
        parts = [_filtered(f, query) for f in frames]
        if start < hours[0]:
            parts.append(self._read(query, start, hours[0]))
        if hours[-1] + HOUR_NS < end:
            parts.append(self._read(query, hours[-1] + HOUR_NS, end))
        t3 = time.perf_counter()
        parts = [p for p in parts if p.height]
        out = pl.concat(parts).sort(["member", "asset", "hour"]) if parts else empty_rollups()
        log.debug(
            "rollup read: %d rows, %d of %d settled hours cached; look %.3f s, cache and fill %.3f s, "
            "open hours %.3f s, combine %.3f s",
            out.height,
            len(hours) - len(missing),
            len(hours),
            t1 - t0,
            t2 - t1,
            t3 - t2,
            time.perf_counter() - t3,
        )
        return out

    def _read(self, query: RollupQuery, start: int | None, end: int | None) -> pl.DataFrame:
        cond = where(
            time_range(start, end),
            tag_in("asset_class", query.asset_classes),
            tag_in("member", query.members),
            tag_in("asset", query.assets),
        )
        # tags as columns, not GROUP BY: one series instead of one per asset, several times faster to answer
        columns = ", ".join(ident(c) for c in (*_ROLLUP_FIELDS, "member", "asset", "asset_class"))
        rows = self._db.execute(
            f"SELECT {columns} FROM {source('rollups', self._db.rollup_rp)} WHERE {cond}", chunked=True
        )
        frame = rows.frame(ROLLUP_SCHEMA)
        if frame.height == 0:
            return empty_rollups()
        return (
            frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))
            .select([pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()])
            .sort(["member", "asset", "hour"])
        )


def _filtered(frame: pl.DataFrame, query: RollupQuery) -> pl.DataFrame:
    """``frame``'s rows that ``query``'s asset and asset-class filters keep (members are already picked)."""
    if query.assets is not None:
        frame = frame.filter(pl.col("asset").is_in(list(query.assets)))
    if query.asset_classes is not None:
        frame = frame.filter(pl.col("asset_class").is_in(list(query.asset_classes)))
    return frame


class RollupCacheCollector(Collector):
    """The cache's counts as Prometheus metrics (``mdh_rollup_cache_*``)."""

    def __init__(self, cache: RollupCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._cache.stats
        hours = CounterMetricFamily(
            "mdh_rollup_cache_hours", "Hours of rollup rows a query needed, by where they came from", labels=["result"]
        )
        hours.add_metric(["hit"], stats.hits)
        hours.add_metric(["miss"], stats.misses)
        yield hours
        dropped = CounterMetricFamily(
            "mdh_rollup_cache_dropped_hours", "Cached hours dropped, by reason", labels=["reason"]
        )
        dropped.add_metric(["changed"], stats.invalidated)
        dropped.add_metric(["evicted"], stats.evicted)
        yield dropped
        yield GaugeMetricFamily("mdh_rollup_cache_rows", "Rollup rows held in the cache", value=stats.rows)
        yield GaugeMetricFamily(
            "mdh_rollup_cache_max_rows", "Rollup rows the cache may hold", value=self._cache.max_rows
        )
