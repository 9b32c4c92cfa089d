"""The embedded store: one DuckDB file. It needs nothing but ``pip`` and runs everywhere, so the
demo and small clusters use it (then ingest, rollups and API run in one process).

Raw samples live in ``samples`` with the primary key (member, asset, signal, ts),
so a redelivered batch inserts nothing new. Hourly rollups live in ``rollups``
and are kept up to date on every write (see :mod:`storage.duckdb.rollups`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from wire import SIGNALS, Sample

from ..base import SERIES_SCHEMA, RollupQuery, Rollups, SeriesQuery, batches_frame, empty_series
from ..errors import StoreRejected
from ..ledger import ReleasedCell, erase_values
from .connection import DuckDBConnection, in_clause
from .rollups import RollupKeeper

_DDL = """
CREATE TABLE IF NOT EXISTS samples (
    member      VARCHAR  NOT NULL,
    asset       VARCHAR  NOT NULL,
    asset_class VARCHAR  NOT NULL,
    signal      VARCHAR  NOT NULL,
    ts          BIGINT   NOT NULL,
    value       DOUBLE,
    text        VARCHAR,
    quality     UTINYINT NOT NULL,
    PRIMARY KEY (member, asset, signal, ts)
);
CREATE TABLE IF NOT EXISTS release_ledger (
    kpi             VARCHAR NOT NULL,
    asset_class     VARCHAR NOT NULL,
    period          VARCHAR NOT NULL,
    period_start    BIGINT  NOT NULL,
    period_end      BIGINT  NOT NULL,
    entry           VARCHAR NOT NULL,
    PRIMARY KEY (kpi, asset_class, period, period_start)
);
"""

#: Tables holding rows of a member (``member`` column), in the order a deletion empties them.
MEMBER_TABLES: tuple[str, ...] = ("samples", "rollups", "rollup_dirty")

_AGG_SQL = {
    "mean": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "last": "arg_max(value, ts)",
    "sum": "sum(value)",
    "count": "count(*)::DOUBLE",
}

_DAY_NS = 86_400 * 10**9
_STATE_SIGNALS = frozenset(n for n, s in SIGNALS.items() if s.kind == "state")


class DuckDBStore:
    """Embedded store on a DuckDB file (``":memory:"`` for a throw-away store)."""

    def __init__(
        self, path: Path | str, *, retention_days: int | None = None, rollup_retention_days: int | None = None
    ) -> None:
        self.path = str(path)
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self.connection = DuckDBConnection(self.path)
        self.connection.execute(_DDL)
        self._rollups = RollupKeeper(self.connection)
        self.enforce_retention()

    # -- writing -----------------------------------------------------------------------------------
    def write(self, member: str, samples: Sequence[Sample]) -> int:
        return self.write_many({member: samples})

    def write_many(self, batches: Mapping[str, Sequence[Sample]]) -> int:
        """One transaction for every member's batch: DuckDB's cost is per statement and transaction (about 13 ms
        for a batch of 250 samples, most of it fixed), so an ingestor's flush of many members costs one."""
        batches = {m: s for m, s in batches.items() if s}
        if not batches:
            return 0
        table = batches_frame(batches).to_arrow()  # scanned twice below: converted once, before the lock
        given = sum(len(s) for s in batches.values())
        with self.connection.locked() as cur:
            try:
                cur.execute("BEGIN")
                cur.register("incoming", table)
                row = cur.execute(
                    "INSERT INTO samples BY NAME SELECT * FROM incoming ON CONFLICT DO NOTHING"
                ).fetchone()  # the rows inserted: fewer when some were in the file already
                self._rollups.update(cur, "incoming")
                cur.unregister("incoming")
                cur.execute("COMMIT")
                complete = row is not None and int(row[0]) == given
                for member, samples in batches.items():
                    self._rollups.wrote(member, tuple(samples), complete=complete)
            except duckdb.Error as exc:
                cur.execute("ROLLBACK")
                raise StoreRejected(f"DuckDB refused the batch: {exc}") from exc
        return given

    # -- reading -----------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one reading thread (DuckDB connections are not shared between threads)."""
        return self.connection.cursor()

    def query_series(self, query: SeriesQuery) -> pl.DataFrame:
        where: list[str] = []
        params: list[Any] = []
        in_clause("signal", query.signals, where, params)
        in_clause("asset_class", query.asset_classes, where, params)
        in_clause("member", query.members, where, params)
        in_clause("asset", query.assets, where, params)
        if query.start_ns is not None:
            where.append("ts >= ?")
            params.append(query.start_ns)
        if query.end_ns is not None:
            where.append("ts < ?")
            params.append(query.end_ns)
        cond = " AND ".join(where) or "TRUE"
        if query.every_s:
            width = int(query.every_s) * 1_000_000_000
            inner = (
                f"SELECT (ts // {width}) * {width} AS ts, member, asset, any_value(asset_class) AS asset_class, "
                f"signal, {_AGG_SQL[query.agg]} AS value, arg_max(text, ts) AS text, max(quality) AS quality "
                f"FROM samples WHERE {cond} GROUP BY 1, member, asset, signal"
            )
        else:
            inner = f"SELECT ts, member, asset, asset_class, signal, value, text, quality FROM samples WHERE {cond}"
        outer_where = ""
        if query.after is not None:
            outer_where = "WHERE (ts, member, asset, signal) > (?, ?, ?, ?)"
            params.extend(query.after)
        sql = f"SELECT * FROM ({inner}) {outer_where} ORDER BY ts, member, asset, signal"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        cur = self.cursor()
        try:
            frame: pl.DataFrame = cur.sql(sql, params=params).pl()
        finally:
            cur.close()
        if frame.height == 0:
            return empty_series()
        return frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC"))).select(
            [pl.col(c).cast(t) for c, t in SERIES_SCHEMA.items()]
        )

    def query_rollups(self, query: RollupQuery) -> pl.DataFrame:
        return self._rollups.query(query).frame

    def read_rollups(self, query: RollupQuery) -> Rollups:
        return self._rollups.query(query)

    @property
    def rollups(self) -> RollupKeeper:
        """The store's rollup keeper."""
        return self._rollups

    def refresh_rollups(self) -> int:
        """Fold in (or recompute) the rollups of everything written since the last refresh."""
        return self._rollups.refresh()

    @property
    def retention_ns(self) -> int | None:
        return None if self.retention_days is None else self.retention_days * _DAY_NS

    @property
    def late_recomputes(self) -> dict[str, int]:
        return dict(self._rollups.recomputes)

    def enforce_retention(self, now_ns: int | None = None) -> int:
        """Delete raw samples older than ``retention_days`` and rollups older than ``rollup_retention_days``.

        Returns the number of raw samples deleted. Called on open; the ingestor calls it hourly.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        deleted = 0
        with self.connection.exclusive() as con:
            if self.retention_days is not None:
                row = con.execute(
                    "DELETE FROM samples WHERE ts < ?", [now_ns - self.retention_days * _DAY_NS]
                ).fetchone()
                deleted = int(row[0]) if row else 0
            if self.rollup_retention_days is not None:
                con.execute("DELETE FROM rollups WHERE hour < ?", [now_ns - self.rollup_retention_days * _DAY_NS])
        return deleted

    # -- release ledger ------------------------------------------------------------------------------
    def released_cells(
        self, kpi: str, asset_class: str, start_ns: int, end_ns: int, period: str | None = None
    ) -> list[ReleasedCell]:
        """Ledger entries of ``kpi`` and ``asset_class`` whose period overlaps [start_ns, end_ns)."""
        sql = (
            "SELECT entry FROM release_ledger WHERE kpi = ? AND asset_class = ? AND period_end > ? AND period_start < ?"
        )
        params: list[Any] = [kpi, asset_class, start_ns, end_ns]
        if period is not None:
            sql += " AND period = ?"
            params.append(period)
        cur = self.cursor()
        try:
            rows = cur.execute(sql + " ORDER BY period_start, period", params).fetchall()
        finally:
            cur.close()
        return [ReleasedCell.from_json(r[0]) for r in rows]

    def release(self, cells: Sequence[ReleasedCell]) -> None:
        """Add ``cells`` to the ledger; a cell already there stays as it was (the first release wins)."""
        if not cells:
            return
        frame = pl.DataFrame(
            {
                "kpi": [c.kpi for c in cells],
                "asset_class": [c.asset_class for c in cells],
                "period": [c.period for c in cells],
                "period_start": [c.period_start_ns for c in cells],
                "period_end": [c.period_end_ns for c in cells],
                "entry": [c.to_json() for c in cells],
            },
            schema={
                "kpi": pl.String,
                "asset_class": pl.String,
                "period": pl.String,
                "period_start": pl.Int64,
                "period_end": pl.Int64,
                "entry": pl.String,
            },
        )
        with self.connection.locked() as cur:
            try:  # one statement for all cells (executemany costs a round trip per row)
                cur.register("released", frame)
                cur.execute("INSERT INTO release_ledger BY NAME SELECT * FROM released ON CONFLICT DO NOTHING")
                cur.unregister("released")
            except duckdb.Error as exc:
                raise StoreRejected(f"DuckDB refused the release ledger entries: {exc}") from exc

    # -- deletion ----------------------------------------------------------------------------------------
    def delete_member(self, member: str, *, group: str | None = None, now_ns: int | None = None) -> dict[str, int]:
        """Delete the member's rows in one transaction, then checkpoint (the write-ahead log holds them no more)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        counts: dict[str, int] = {}
        with self.connection.locked() as cur:
            try:
                cur.execute("BEGIN")
                for table in MEMBER_TABLES:
                    row = cur.execute(f"DELETE FROM {table} WHERE member = ?", [member]).fetchone()
                    counts[table] = int(row[0]) if row else 0
                erased = 0
                if group is not None:
                    for (entry,) in cur.execute("SELECT entry FROM release_ledger").fetchall():
                        changed = erase_values(ReleasedCell.from_json(entry), group, now_ns)
                        if changed is not None:
                            cur.execute(
                                "UPDATE release_ledger SET entry = ? WHERE kpi = ? AND asset_class = ? AND period = ? "
                                "AND period_start = ?",
                                [changed.to_json(), *changed.key],
                            )
                            erased += 1
                counts["release_ledger"] = erased
                cur.execute("COMMIT")
                self._rollups.forget(member)
            except duckdb.Error as exc:
                cur.execute("ROLLBACK")
                raise StoreRejected(f"DuckDB refused the deletion of {member}: {exc}") from exc
            cur.execute("CHECKPOINT")
        return counts

    def count(self) -> int:
        cur = self.cursor()
        try:
            row = cur.execute("SELECT count(*) FROM samples").fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.connection.close()
