"""Hourly rollups kept inside the DuckDB store.

:class:`RollupKeeper` keeps the ``rollups`` table up to date: a write only records, in the same
transaction, which samples of which asset it added (``rollup_dirty``: member, asset, asset class and
the batch's first and last timestamp). A refresh takes the pending assets and

* folds in, for every asset whose pending samples all come after what its carry folded in, only the
  samples newer than that: from memory (:class:`~storage.duckdb.written.WrittenBatches`, sample by sample with
  :func:`storage.sample_fold.fold_samples`) when every batch of the asset since its last refresh is kept there,
  else read back (one read of the new rows of all such assets, :func:`storage.incremental.fold`); one upsert
  of the rows they change;
* recomputes from raw (:func:`~storage.rollups.compute_rollups` over the hours from the first changed
  one, or from a state sample that had no successor yet, with each counter and state series' last sample
  before it as predecessor) every other asset:
  one without a carry (the first refresh after the store was opened: its open hour), data that arrived
  out of order (backfill, redelivery, interleaved writers), or a fold that needs an hour it does not
  keep; then it builds the asset's carry.

The housekeeping task refreshes everything every ``rollup_refresh_s``. A rollup query refreshes only the
pending assets it asks for whose pending data overlaps its period, and only when there are at most
``refresh_max_assets`` of them; otherwise it reads the rows as kept and says up to when they are complete
(:class:`~storage.base.Rollups`). The keeper works on the store's
:class:`~storage.duckdb.connection.DuckDBConnection`, never on the store itself.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import duckdb
import polars as pl

from wire import Sample

from ..base import COUNTER_COLUMNS, DOWNTIME_COLUMNS, ROLLUP_SCHEMA, RollupQuery, Rollups, empty_rollups
from ..incremental import Carry, Key, carry_from_raw, fold, rows_frame, widen_start
from ..late import LateRange, late_ranges, read_end, recompute_windows, window_end, window_rows
from ..rollups import GAP_NS, HOUR_NS, LOOKBACK_NS, compute_rollups
from ..sample_fold import fold_samples
from .connection import DuckDBConnection, in_clause
from .written import WrittenBatches

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
    # files made before pending rows named their class: NULL (such a row counts for every class filter)
    + "ALTER TABLE rollup_dirty ADD COLUMN IF NOT EXISTS asset_class VARCHAR;"
)
_RAW_COLUMNS = "s.member, s.asset, s.asset_class, s.signal, s.ts, s.value, s.text, s.quality"
_PRED_SIGNALS = (*COUNTER_COLUMNS, "state", "downtime_reason")


def _hour(ts: int) -> int:
    return ts // HOUR_NS * HOUR_NS


class RollupKeeper:
    """Maintains the ``rollups`` table of a DuckDB store through its connection."""

    def __init__(self, connection: DuckDBConnection) -> None:
        self._db = connection
        connection.execute(_ROLLUP_DDL)
        self._carries: dict[Key, Carry] = {}
        self._as_of: int | None = None
        self.written = WrittenBatches()
        #: assets with late samples recomputed over their windows only, and from their late hour on
        self.recomputes: Counter[str] = Counter()

    def update(self, cur: duckdb.DuckDBPyConnection, batch: str) -> None:
        """Record what the batch registered as ``batch`` (just inserted) added; called inside the write
        transaction. (In SQL on the registered batch: a polars group-by per write waited for polars' threads
        under load, a fifth of a write's time.)"""
        cur.execute(
            "INSERT INTO rollup_dirty (member, asset, lo, hi, asset_class) "
            f"SELECT member, asset, min(ts), max(ts), arg_max(asset_class, ts) FROM {batch} GROUP BY member, asset"
        )

    def wrote(self, member: str, samples: Sequence[Sample], *, complete: bool) -> None:
        """The batch ``samples`` of ``member`` was committed, each sample a new row when ``complete`` (called by the
        store under the connection lock): a refresh folds it from memory."""
        self.written.wrote(member, samples, complete=complete)

    def forget(self, member: str) -> None:
        """Drop the carries and the kept batches of ``member`` (its rows were deleted)."""
        for key in [k for k in self._carries if k[0] == member]:
            del self._carries[key]
        self.written.forget(member)

    def reset(self) -> None:
        """Drop every carry: the next refresh recomputes each pending asset from raw, as after a restart."""
        with self._db.locked():
            self._carries.clear()

    def refresh(self) -> int:
        """Fold in or recompute every pending asset; return how many there were."""
        done, _ = self._refresh(RollupQuery())
        return done

    def _pending(self, cur: duckdb.DuckDBPyConnection, query: RollupQuery) -> list[tuple[str, str, int, int]]:
        where: list[str] = []
        params: list[Any] = []
        in_clause("member", query.members, where, params)
        in_clause("asset", query.assets, where, params)
        if query.asset_classes is not None:  # NULL: a row of a file made before rows named their class
            marks = ", ".join("?" for _ in query.asset_classes)
            where.append(f"(asset_class IS NULL OR asset_class IN ({marks}))" if marks else "FALSE")
            params.extend(query.asset_classes)
        having: list[str] = []
        if query.start_ns is not None:
            having.append("max(hi) + ? >= ?")
            params.extend([GAP_NS + HOUR_NS, query.start_ns])
        if query.end_ns is not None:
            having.append("min(lo) - ? < ?")
            params.extend([GAP_NS, query.end_ns])
        sql = (
            f"SELECT member, asset, min(lo), max(hi) FROM rollup_dirty WHERE {' AND '.join(where) or 'TRUE'} "
            f"GROUP BY member, asset {'HAVING ' + ' AND '.join(having) if having else ''}"
        )
        return [(m, a, int(lo), int(hi)) for m, a, lo, hi in cur.execute(sql, params).fetchall()]

    def _refresh(self, query: RollupQuery) -> tuple[int, int | None]:
        """Refresh the pending assets ``query`` asks for; return how many, and the time they are complete as of
        (``None``: not refreshed, more than ``refresh_max_assets`` were pending)."""
        everything = all(
            v is None for v in (query.members, query.assets, query.asset_classes, query.start_ns, query.end_ns)
        )
        with self._db.locked() as cur:
            started = time.time_ns()
            pending = self._pending(cur, query)
            if query.refresh_max_assets is not None and len(pending) > query.refresh_max_assets:
                return 0, None
            if not pending:
                if everything:
                    self._as_of = started
                    self.written.refreshed((), everything=True)  # what a partial refresh folded
                return 0, started
            cur.execute("BEGIN")
            try:
                self._fold_and_recompute(cur, pending)
                keys = pl.DataFrame([(m, a) for m, a, _, _ in pending], schema=["member", "asset"], orient="row")
                cur.register("done_keys", keys)
                cur.execute(
                    "DELETE FROM rollup_dirty USING done_keys "
                    "WHERE rollup_dirty.member = done_keys.member AND rollup_dirty.asset = done_keys.asset"
                )
                cur.unregister("done_keys")
                cur.execute("COMMIT")
                self.written.refreshed([(m, a) for m, a, _, _ in pending], everything=everything)
            except Exception:
                cur.execute("ROLLBACK")
                for m, a, _, _ in pending:  # their carries may be ahead of the rows: recompute next time
                    self._carries.pop((m, a), None)
                raise
            if everything:
                self._as_of = started
            return len(pending), started

    def _fold_and_recompute(self, cur: duckdb.DuckDBPyConnection, pending: list[tuple[str, str, int, int]]) -> None:
        redo: dict[Key, int] = {}
        folding: list[tuple[str, str, int]] = []
        late: list[tuple[str, str, int]] = []
        for m, a, lo, _ in pending:
            carry = self._carries.get((m, a))
            if carry is not None and lo >= carry.folded_ns:  # at folded_ns: fold() checks the signals
                folding.append((m, a, carry.folded_ns))
            elif carry is not None:
                late.append((m, a, lo))
            else:
                redo[(m, a)] = _hour(lo - GAP_NS)
        remembered = self.written.samples((m, a) for m, a, _ in folding)
        late_rest, read_back = self._late_windows(cur, late, redo)
        for member, assets in late_rest.items():  # their samples from the folded time on
            remembered.setdefault(member, {}).update(assets)
        folding += read_back
        from_memory: list[tuple[Any, ...]] = []
        for member, assets in remembered.items():
            changed, missing = fold_samples(self._carries, member, assets)
            from_memory += changed
            for key, hour in missing.items():
                redo[key] = min(hour, redo.get(key, hour))
        self._upsert(cur, rows_frame(from_memory))
        folding = [f for f in folding if f[1] not in remembered.get(f[0], ())]  # the others are read back
        if folding:
            keys = pl.DataFrame(
                folding, schema={"member": pl.String, "asset": pl.String, "folded": pl.Int64}, orient="row"
            )
            cur.register("fold_keys", keys)
            new = cur.sql(
                f"SELECT {_RAW_COLUMNS} FROM samples s JOIN fold_keys k ON s.member = k.member AND s.asset = k.asset "
                "WHERE s.ts >= k.folded AND s.ts >= ?",
                params=[min(f for _, _, f in folding)],
            ).pl()
            cur.unregister("fold_keys")
            rows, missing = fold(self._carries, new)
            self._upsert(cur, rows)
            for key, hour in missing.items():
                redo[key] = min(hour, redo.get(key, hour))
        for start in sorted(set(redo.values())):
            self._recompute(cur, [k for k, s in redo.items() if s == start], start)

    def _late_windows(
        self, cur: duckdb.DuckDBPyConnection, late: list[tuple[str, str, int]], redo: dict[Key, int]
    ) -> tuple[dict[str, dict[str, list[Sample]]], list[tuple[str, str, int]]]:
        """Recompute the windows of the late samples of ``late`` (assets with a carry whose pending samples start
        before its folded time; see :mod:`storage.late`) whose batches are all kept in memory, leaving their
        carries as they are. Returns what of those assets is to fold from the folded time on: per member and asset
        the samples from memory, and the assets whose writes found some samples in the file already, to read
        back. Every asset whose windows cannot be bounded (or whose batches are not kept) goes into ``redo`` from
        its late hour on."""
        kept = self.written.samples(((m, a) for m, a, _ in late), holes=True)
        out: dict[str, dict[str, list[Sample]]] = {}
        read_back: list[tuple[str, str, int]] = []
        for m, a, lo in late:
            samples = kept.get(m, {}).get(a)
            folded = self._carries[(m, a)].folded_ns
            ranges = late_ranges(samples, folded) if samples is not None else None
            if not recompute_windows(ranges, folded, partial(self._window, cur, (m, a))):
                redo[(m, a)] = _hour(lo - GAP_NS)
                self.recomputes["full"] += 1
                continue
            self.recomputes["window"] += 1
            rest = [s for s in samples or () if s.ts >= folded]
            if rest and self.written.has_holes((m, a)):
                read_back.append((m, a, folded))
            elif rest:
                out.setdefault(m, {})[a] = rest
        return out, read_back

    def _window(self, cur: duckdb.DuckDBPyConnection, key: Key, r: LateRange) -> bool:
        """Recompute the rows of one window of late samples of ``key`` (:mod:`storage.late`); ``False`` when it
        cannot be bounded (nothing written then)."""
        end_ns = read_end(r)
        combined, start = self._read(cur, [key], r.start, end_ns, widen=False)
        end = window_end(combined, r, self._carries[key], end_ns)
        if end is None:
            return False
        cur.execute("DELETE FROM rollups WHERE member = ? AND asset = ? AND hour >= ? AND hour < ?", [*key, start, end])
        self._upsert(cur, window_rows(combined, start, end, end_ns))
        return True

    def _read(
        self,
        cur: duckdb.DuckDBPyConnection,
        keys: list[Key],
        start: int,
        end_ns: int | None = None,
        *,
        widen: bool = True,
    ) -> tuple[pl.DataFrame, int]:
        """The raw rows of ``keys`` from ``start`` (``widen``: widened back to a state sample without a successor,
        see :func:`~storage.incremental.widen_start`) up to ``end_ns`` (exclusive; ``None``: all), after every counter
        and state series' last good sample before it as its predecessor; and the start it read from."""
        frame = pl.DataFrame(keys, schema=["member", "asset"], orient="row")
        cur.register("redo_keys", frame)
        join = "FROM samples s JOIN redo_keys k ON s.member = k.member AND s.asset = k.asset"

        def predecessors(before: int) -> pl.DataFrame:
            frame: pl.DataFrame = cur.sql(
                f"SELECT {_RAW_COLUMNS} {join} WHERE s.ts < ? AND s.ts >= ? AND s.quality < 2 AND s.signal IN "
                f"({', '.join('?' for _ in _PRED_SIGNALS)}) "
                "QUALIFY row_number() OVER (PARTITION BY s.member, s.asset, s.signal ORDER BY s.ts DESC) = 1",
                params=[before, before - LOOKBACK_NS, *_PRED_SIGNALS],
            ).pl()
            return frame

        try:
            preds = predecessors(start)
            widened = widen_start(start, preds) if widen else start
            if widened < start:
                start = widened
                preds = predecessors(start)
            if end_ns is None:
                raw = cur.sql(f"SELECT {_RAW_COLUMNS} {join} WHERE s.ts >= ?", params=[start]).pl()
            else:
                raw = cur.sql(f"SELECT {_RAW_COLUMNS} {join} WHERE s.ts >= ? AND s.ts < ?", params=[start, end_ns]).pl()
        finally:
            cur.unregister("redo_keys")
        return pl.concat([preds, raw]), start

    def _recompute(self, cur: duckdb.DuckDBPyConnection, keys: list[Key], start: int) -> None:
        """Recompute the rows of ``keys`` from ``start`` (an hour) on, from raw, and build their carries."""
        combined, start = self._read(cur, keys, start)
        frame = pl.DataFrame(keys, schema=["member", "asset"], orient="row")
        cur.register("redo_keys", frame)
        cur.execute(
            "DELETE FROM rollups USING redo_keys k WHERE rollups.member = k.member AND "
            "rollups.asset = k.asset AND rollups.hour >= ?",
            [start],
        )
        cur.unregister("redo_keys")
        fresh = compute_rollups(combined).filter(pl.col("hour").cast(pl.Int64) >= start)
        self._upsert(cur, fresh)
        for key in keys:
            self._carries.pop(key, None)
        self._carries.update(carry_from_raw(combined, fresh, start))

    @staticmethod
    def _upsert(cur: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        cur.register("fresh", rows.with_columns(pl.col("hour").cast(pl.Int64)))
        cur.execute("INSERT OR REPLACE INTO rollups BY NAME SELECT * FROM fresh")
        cur.unregister("fresh")

    def query(self, query: RollupQuery) -> Rollups:
        _, as_of = self._refresh(query)
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
        as_of = as_of if as_of is not None else self._as_of
        if frame.height == 0:
            return Rollups(empty_rollups(), as_of)
        frame = frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC"))).select(
            [pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()]
        )
        return Rollups(frame, as_of)
