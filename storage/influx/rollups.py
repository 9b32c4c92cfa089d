"""Hourly rollups kept incrementally inside InfluxDB.

Every write carries *dirty markers*: one point per (member, asset, hour) the batch
touches, in the measurement ``rollup_dirty`` with the integer field ``written_ns``
(the writer's clock). A marker overwrites the previous one of its hour, so there
is at most one per asset-hour. :meth:`InfluxRollupKeeper.refresh` reads the
markers written since its watermark, recomputes those hours from raw samples with
the same pure :func:`~storage.rollups.compute_rollups` as the embedded store, and
writes the result to the measurement ``rollups`` (one point per member, asset and
hour; a recompute overwrites it). The watermark is stored in ``rollup_state`` so a
restarted hub carries on where it stopped; it trails the refresh start by
:data:`WATERMARK_MARGIN_NS`, so a marker whose write was still in flight during a
refresh is picked up by the next one (recomputing is idempotent).

A recompute reads the dirty hours' raw samples plus, per counter and state series,
the last good sample of the preceding 24 hours (its predecessor), so resets, gaps
and state intervals crossing the hour boundary come out exactly as in the
embedded store. Rollup queries refresh first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence

import polars as pl

from wire import Sample
from wire.catalog import COUNTER_SIGNALS

from ..base import RAW_SCHEMA, ROLLUP_SCHEMA, RollupQuery, empty_rollups
from ..rollups import GAP_NS, HOUR_NS, LOOKBACK_NS, compute_rollups
from .connection import InfluxConnection, source
from .influxql import ident, literal, tag_in, time_range, where
from .lineprotocol import encode_lines, encode_point, escape_tag_value

log = logging.getLogger(__name__)

WATERMARK_MARGIN_NS = 60 * 10**9
#: (member, asset) pairs per recompute query.
KEYS_PER_QUERY = 50

_KEY_COLUMNS = ("member", "asset", "asset_class", "hour")
_ROLLUP_FIELDS = tuple(c for c in ROLLUP_SCHEMA if c not in _KEY_COLUMNS)


def dirty_markers(member: str, samples: Sequence[Sample], *, written_ns: int) -> bytes:
    """Marker points for every hour ``samples`` can change (each sample's hour, widened by the state gap)."""
    bounds: dict[str, list[int]] = {}
    for s in samples:
        b = bounds.get(s.asset)
        if b is None:
            bounds[s.asset] = [s.ts, s.ts]
        elif s.ts < b[0]:
            b[0] = s.ts
        elif s.ts > b[1]:
            b[1] = s.ts
    m = escape_tag_value(member)
    lines = []
    for asset, (lo, hi) in bounds.items():
        a = escape_tag_value(asset)
        for hour in range((lo - GAP_NS) // HOUR_NS * HOUR_NS, hi + GAP_NS + 1, HOUR_NS):
            lines.append(f"rollup_dirty,asset={a},member={m} written_ns={written_ns}i {hour}")
    return "\n".join(lines).encode()


def _runs(hours: list[int]) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) ranges of sorted hour starts."""
    out: list[tuple[int, int]] = []
    for h in hours:
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR_NS)
        elif not out or out[-1][1] < h:
            out.append((h, h + HOUR_NS))
    return out


def _keys_condition(keys: Sequence[tuple[str, str]]) -> str:
    return "(" + " OR ".join(f'("member" = {literal(m)} AND "asset" = {literal(a)})' for m, a in keys) + ")"


class InfluxRollupKeeper:
    """Keeps the ``rollups`` measurement up to date through the store's :class:`InfluxConnection`."""

    def __init__(self, connection: InfluxConnection) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._watermark: int | None = None

    def _src(self, measurement: str, rp: str | None) -> str:
        return source(measurement, rp)

    def _load_watermark(self) -> int:
        rows = self._db.execute(
            f'SELECT last("watermark_ns") AS "w" FROM {self._src("rollup_state", self._db.rollup_rp)} '
            f"WHERE {time_range(None, None)}"
        )
        values = rows.columns.get("w") or []
        return int(values[0]) if values and values[0] is not None else 0

    def refresh(self) -> int:
        with self._lock:
            started = time.time_ns()
            if self._watermark is None:
                self._watermark = self._load_watermark()
            rows = self._db.execute(
                f'SELECT "written_ns" FROM {self._src("rollup_dirty", self._db.raw_rp)} '
                f'WHERE {time_range(None, None)} AND "written_ns" > {int(self._watermark)} GROUP BY "member", "asset"',
                chunked=True,
            )
            hours: dict[tuple[str, str], list[int]] = defaultdict(list)
            for m, a, t in zip(
                rows.columns.get("member", []), rows.columns.get("asset", []), rows.columns.get("time", []), strict=True
            ):
                hours[(m, a)].append(int(t))
            windows: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
            for key, hs in hours.items():
                for run in _runs(sorted(hs)):
                    windows[run].append(key)
            for (lo, hi), keys in sorted(windows.items()):
                for i in range(0, len(keys), KEYS_PER_QUERY):
                    self._recompute(keys[i : i + KEYS_PER_QUERY], lo, hi)
            new_mark = max(self._watermark, started - WATERMARK_MARGIN_NS)
            if new_mark != self._watermark:
                day = started // (24 * HOUR_NS) * (24 * HOUR_NS)
                self._db.write_lines(f"rollup_state watermark_ns={new_mark}i {day}".encode(), rp=self._db.rollup_rp)
                self._watermark = new_mark
            return sum(len(k) for k in windows.values())

    def _recompute(self, keys: Sequence[tuple[str, str]], lo: int, hi: int) -> None:
        raw_src = self._src("samples", self._db.raw_rp)
        group = 'GROUP BY "member", "asset", "asset_class", "signal"'
        cond = _keys_condition(keys)
        span = where(time_range(lo, hi + GAP_NS), cond)
        raw = self._db.execute(
            f'SELECT "value", "text", "quality" FROM {raw_src} WHERE {span} {group}',
            chunked=True,
        ).frame(RAW_SCHEMA)
        before = where(time_range(lo - LOOKBACK_NS, lo), '"quality" < 2', cond)
        prev_counters = self._db.execute(
            f'SELECT last("value") AS "value" FROM {raw_src} WHERE {before} '
            f"AND {tag_in('signal', COUNTER_SIGNALS)} {group}"
        ).frame(RAW_SCHEMA)
        prev_states = self._db.execute(
            f'SELECT last("text") AS "text" FROM {raw_src} WHERE {before} AND "signal" = \'state\' {group}'
        ).frame(RAW_SCHEMA)
        prev = pl.concat([prev_counters, prev_states]).with_columns(pl.lit(0, dtype=pl.UInt8).alias("quality"))
        fresh = compute_rollups(pl.concat([prev, raw])).filter(
            pl.col("hour").cast(pl.Int64).is_between(lo, hi, closed="left")
        )
        if fresh.height == 0:
            return
        lines = []
        for row in fresh.with_columns(pl.col("hour").cast(pl.Int64)).iter_rows(named=True):
            tags = {"member": row["member"], "asset": row["asset"], "asset_class": row["asset_class"]}
            fields = {f: row[f] for f in _ROLLUP_FIELDS}
            lines.append(encode_point("rollups", tags, fields, row["hour"]))
        self._db.write_lines(encode_lines(lines), rp=self._db.rollup_rp)
        log.debug("recomputed %d rollup rows for %d assets in [%d, %d)", fresh.height, len(keys), lo, hi)

    def query(self, query: RollupQuery) -> pl.DataFrame:
        if any(v == () for v in (query.asset_classes, query.members, query.assets)):
            return empty_rollups()
        self.refresh()
        cond = where(
            time_range(query.start_ns, query.end_ns),
            tag_in("asset_class", query.asset_classes),
            tag_in("member", query.members),
            tag_in("asset", query.assets),
        )
        fields = ", ".join(ident(f) for f in _ROLLUP_FIELDS)
        rows = self._db.execute(
            f"SELECT {fields} FROM {self._src('rollups', self._db.rollup_rp)} WHERE {cond} "
            'GROUP BY "member", "asset", "asset_class"',
            chunked=True,
        )
        frame = rows.frame(ROLLUP_SCHEMA)
        if frame.height == 0:
            return empty_rollups()
        return (
            frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))
            .select([pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()])
            .sort(["member", "asset", "hour"])
        )
