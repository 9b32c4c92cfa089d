"""Hourly rollups kept inside the DuckDB store.

:class:`RollupKeeper` keeps the ``rollups`` table up to date with the pure
:func:`~storage.rollups.compute_rollups`: a write only records which (asset, hour)
ranges it touched (in the same transaction), and the ranges are recomputed from
raw data before the next rollup query, so bursts of writes cost one recompute.
The keeper works on the store's :class:`~storage.duckdb.connection.DuckDBConnection`,
never on the store itself.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from ..base import DOWNTIME_COLUMNS, ROLLUP_SCHEMA, RollupQuery, empty_rollups
from ..rollups import GAP_NS, HOUR_NS, LOOKBACK_NS, compute_rollups
from .connection import DuckDBConnection, in_clause

_ROLLUP_DDL = (
    "CREATE TABLE IF NOT EXISTS rollups ("
    + ", ".join(
        f"{c} {'BIGINT' if c in ('hour', 'samples') else 'VARCHAR' if t == pl.String() else 'DOUBLE'}"
        for c, t in ROLLUP_SCHEMA.items()
    )
    + ", PRIMARY KEY (member, asset, hour));"
    "CREATE TABLE IF NOT EXISTS rollup_dirty (member VARCHAR, asset VARCHAR, lo BIGINT, hi BIGINT);"
    # files made before downtime was kept per reason: the columns are added (0 until recomputed)
     + "".join(f"ALTER TABLE rollups ADD COLUMN IF NOT EXISTS {c} DOUBLE DEFAULT 0;" for c in DOWNTIME_COLUMNS.values())
)


class RollupKeeper:
    """Maintains the ``rollups`` table of a DuckDB store through its connection."""

    def __init__(self, connection: DuckDBConnection) -> None:
        self._db = connection
        connection.execute(_ROLLUP_DDL)

    def update(self, cur: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
        """Record the hours ``frame`` (a batch just inserted) touches; called inside the write transaction."""
        touched = frame.group_by(["member", "asset"]).agg(
            lo=((pl.col("ts").min() - GAP_NS) // HOUR_NS) * HOUR_NS,
            hi=((pl.col("ts").max() + GAP_NS) // HOUR_NS + 1) * HOUR_NS,
        )
        cur.register("touched", touched)
        cur.execute("INSERT INTO rollup_dirty SELECT member, asset, lo, hi FROM touched")
        cur.unregister("touched")

    def refresh(self) -> int:
        """Recompute all dirty ranges; return how many (asset, range) pairs were recomputed."""
        with self._db.locked() as cur:
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
                        params=[member, asset, lo - LOOKBACK_NS, hi + GAP_NS],
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
        cur = self._db.cursor()
        try:
            frame: pl.DataFrame = cur.sql(sql, params=params).pl()
        finally:
            cur.close()
        if frame.height == 0:
            return empty_rollups()
        return frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC"))).select(
            [pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()]
        )
