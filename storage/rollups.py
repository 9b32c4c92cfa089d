"""Hourly rollups per asset: the pure computation and the keeper that maintains them.

:func:`compute_rollups` turns raw samples into one row per (member, asset, hour):

* counters (``energy_kwh``, ``parts_total``, ``parts_scrap_total``): the sum of the
  increases between consecutive samples, each increase booked to the hour of the
  later sample. A decrease is a reset (the machine restarted and counts from
  zero), so the increase is the new value itself, never a negative figure. The
  first sample of an asset has no predecessor and adds nothing.
* ``state``: each state holds from its sample until the next state sample, but at
  most :data:`MAX_STATE_GAP_S` (gateways repeat the current state at least once a
  minute; a longer silence is a gap and is not counted as any state). Intervals
  are split at hour boundaries. The last sample of an asset stays open until the
  next one arrives.
* gauges: mean, min and max of the samples in the hour.

Samples of bad quality are ignored. :class:`RollupKeeper` keeps the ``rollups``
table of the DuckDB store up to date: a write only records which (asset, hour)
ranges it touched (in the same transaction), and the ranges are recomputed from
raw data before the next rollup query, so bursts of writes cost one recompute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from wire import MACHINE_STATES, Quality

from .base import COUNTER_COLUMNS, GAUGE_STATS, ROLLUP_SCHEMA, RollupQuery, empty_rollups
from .duckdb_store import in_clause

if TYPE_CHECKING:
    import duckdb

    from .duckdb_store import DuckDBStore

HOUR_NS = 3600 * 10**9
MAX_STATE_GAP_S = 300
_GAP_NS = MAX_STATE_GAP_S * 10**9
#: How far back a recompute looks for the predecessor of a counter sample.
LOOKBACK_NS = 24 * HOUR_NS

_COUNTERS = COUNTER_COLUMNS
_KEYS = ["member", "asset", "hour"]


def compute_rollups(raw: pl.DataFrame) -> pl.DataFrame:
    """Rollups of ``raw`` (columns member, asset, asset_class, signal, ts [Int64 ns], value, text, quality)."""
    if raw.height == 0:
        return empty_rollups()
    raw = raw.filter(pl.col("quality") < int(Quality.BAD)).with_columns(pl.col("ts").cast(pl.Int64))
    hour = (pl.col("ts") // HOUR_NS) * HOUR_NS
    base = raw.group_by(["member", "asset", (hour).alias("hour")]).agg(
        pl.col("asset_class").last(), pl.len().cast(pl.Int64).alias("samples")
    )

    counters = (
        raw.filter(pl.col("signal").is_in(list(_COUNTERS)))
        .sort(["member", "asset", "signal", "ts"])
        .with_columns(prev=pl.col("value").shift(1).over(["member", "asset", "signal"]))
        .with_columns(
            delta=pl.when(pl.col("prev").is_null())
            .then(None)
            .when(pl.col("value") < pl.col("prev"))
            .then(pl.col("value"))
            .otherwise(pl.col("value") - pl.col("prev"))
        )
        .group_by(["member", "asset", hour.alias("hour")])
        .agg([pl.col("delta").filter(pl.col("signal") == sig).sum().alias(col) for sig, col in _COUNTERS.items()])
    )

    states = (
        raw.filter(pl.col("signal") == "state")
        .sort(["member", "asset", "ts"])
        .with_columns(nxt=pl.col("ts").shift(-1).over(["member", "asset"]))
        .filter(pl.col("nxt").is_not_null())
        .with_columns(end=pl.min_horizontal(pl.col("nxt"), pl.col("ts") + _GAP_NS))
        .with_columns(h0=hour, boundary=hour + HOUR_NS)
    )
    first = states.select(
        "member",
        "asset",
        "text",
        pl.col("h0").alias("hour"),
        (pl.min_horizontal("end", "boundary") - pl.col("ts")).alias("ns"),
    )
    second = states.filter(pl.col("end") > pl.col("boundary")).select(
        "member", "asset", "text", pl.col("boundary").alias("hour"), (pl.col("end") - pl.col("boundary")).alias("ns")
    )
    state_secs = (
        pl.concat([first, second])
        .group_by(["member", "asset", "hour"])
        # round: polars may divide by multiplying with 1e-9, which is off in the last bit (60.00000000000001)
        .agg(
            [
                (pl.col("ns").filter(pl.col("text") == st).sum() / 1e9).round(9).alias(f"seconds_{st}")
                for st in MACHINE_STATES
            ]
        )
    )

    gauges = (
        raw.filter(pl.col("signal").is_in(list(GAUGE_STATS)))
        .group_by(["member", "asset", hour.alias("hour")])
        .agg(
            [
                getattr(pl.col("value").filter(pl.col("signal") == g), stat)().alias(f"{g}_{stat}")
                for g in GAUGE_STATS
                for stat in ("mean", "min", "max")
            ]
        )
    )

    # A state that runs past the hour counts in the next hour even when that hour has no sample of its own.
    spill = state_secs.join(base, on=_KEYS, how="anti").join(
        raw.group_by(["member", "asset"]).agg(pl.col("asset_class").last()), on=["member", "asset"], how="left"
    )
    out = pl.concat(
        [base, spill.select(*_KEYS, "asset_class", pl.lit(0, dtype=pl.Int64).alias("samples"))], how="vertical"
    )
    for part in (counters, state_secs, gauges):
        out = out.join(part, on=_KEYS, how="left")
    fill = {c: pl.col(c).fill_null(0.0) for c in COUNTER_COLUMNS.values()}
    fill.update({f"seconds_{st}": pl.col(f"seconds_{st}").fill_null(0.0) for st in MACHINE_STATES})
    out = out.with_columns(**fill).with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))
    return out.select([pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()]).sort(_KEYS)


_ROLLUP_DDL = (
    "CREATE TABLE IF NOT EXISTS rollups ("
    + ", ".join(
        f"{c} {'BIGINT' if c in ('hour', 'samples') else 'VARCHAR' if t == pl.String() else 'DOUBLE'}"
        for c, t in ROLLUP_SCHEMA.items()
    )
    + ", PRIMARY KEY (member, asset, hour));"
    "CREATE TABLE IF NOT EXISTS rollup_dirty (member VARCHAR, asset VARCHAR, lo BIGINT, hi BIGINT);"
)


class RollupKeeper:
    """Maintains the ``rollups`` table of a :class:`~storage.duckdb_store.DuckDBStore`."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        store._con.execute(_ROLLUP_DDL)

    def update(self, cur: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
        """Record the hours ``frame`` (a batch just inserted) touches; called inside the write transaction."""
        touched = frame.group_by(["member", "asset"]).agg(
            lo=((pl.col("ts").min() - _GAP_NS) // HOUR_NS) * HOUR_NS,
            hi=((pl.col("ts").max() + _GAP_NS) // HOUR_NS + 1) * HOUR_NS,
        )
        cur.register("touched", touched)
        cur.execute("INSERT INTO rollup_dirty SELECT member, asset, lo, hi FROM touched")
        cur.unregister("touched")

    def refresh(self) -> int:
        """Recompute all dirty ranges; return how many (asset, range) pairs were recomputed."""
        with self._store._lock:
            cur = self._store._con.cursor()
            try:
                dirty = cur.execute(
                    "SELECT member, asset, min(lo) AS lo, max(hi) AS hi FROM rollup_dirty GROUP BY member, asset"
                ).fetchall()
                if not dirty:
                    return 0
                cur.execute("BEGIN")
                for member, asset, lo, hi in dirty:
                    raw = cur.sql(
                        "SELECT member, asset, asset_class, signal, ts, value, text, quality FROM samples "
                        "WHERE member = ? AND asset = ? AND ts >= ? AND ts < ?",
                        params=[member, asset, lo - LOOKBACK_NS, hi + _GAP_NS],
                    ).pl()
                    fresh = compute_rollups(raw).filter(pl.col("hour").cast(pl.Int64).is_between(lo, hi, closed="left"))
                    cur.execute(
                        "DELETE FROM rollups WHERE member = ? AND asset = ? AND hour >= ? AND hour < ?",
                        [member, asset, lo, hi],
                    )
                    if fresh.height:
                        cur.register("fresh", fresh.with_columns(pl.col("hour").cast(pl.Int64)))
                        cur.execute("INSERT INTO rollups BY NAME SELECT * FROM fresh")
                        cur.unregister("fresh")
                cur.execute("DELETE FROM rollup_dirty")
                cur.execute("COMMIT")
                return len(dirty)
            except Exception:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def query(self, query: RollupQuery) -> pl.DataFrame:
        self.refresh()
        where: list[str] = []
        params: list[Any] = []
        in_clause("asset_class", query.asset_classes, where, params)
        in_clause("member", query.members, where, params)
        in_clause("asset", query.assets, where, params)
        if query.start_ns is not None:
            where.append("hour >= ?")
            params.append(query.start_ns)
        if query.end_ns is not None:
            where.append("hour < ?")
            params.append(query.end_ns)
        sql = f"SELECT * FROM rollups WHERE {' AND '.join(where) or 'TRUE'} ORDER BY member, asset, hour"
        cur = self._store.cursor()
        try:
            frame: pl.DataFrame = cur.sql(sql, params=params).pl()
        finally:
            cur.close()
        if frame.height == 0:
            return empty_rollups()
        return frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC"))).select(
            [pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()]
        )
