"""Hourly rollups kept incrementally inside InfluxDB.

Every write carries *dirty markers*: one point per asset of the batch in the measurement ``rollup_dirty``,
stamped with the writer's clock (``written_ns``), tagged with member, asset, asset class and the writing
process (``writer``, random at every start), with the batch's first and last sample time of that asset
(``lo_ns``, ``hi_ns``). The markers go last in the write, so once one is visible so is its data.
:meth:`InfluxRollupKeeper.refresh` takes the markers its own process wrote from memory
(:mod:`storage.influx.batchlog`), reads those of other writers stamped after its watermark (a time range on
the index, not a scan of every marker) and per pending asset

* folds in, when every pending sample comes after what the asset's carry folded in, only the samples
  newer than that and no newer than the asset's last marker: from memory, sample by sample
  (:func:`storage.sample_fold.fold_samples`), when every pending marker of the asset is of a batch this process
  wrote and still remembers; else read back (one query over all such assets, by key for the few that lag behind)
  and folded as frames (:func:`storage.incremental.fold_rows`); one write of the rows they change;
* recomputes from raw everything else, as :mod:`storage.duckdb.rollups` does: the hours from the
  first changed one (or from a state sample that had no successor yet), with the last good sample of
  every counter, ``state`` and ``downtime_reason`` series of the preceding 24 hours as predecessor; then
  builds the asset's carry.

Results go to the measurement ``rollups`` (one point per member, asset and hour; a rewrite overwrites
it). The watermark trails the refresh start by :data:`WATERMARK_MARGIN_NS`, so a marker whose write was
still in flight is seen by the next refresh; markers already handled are remembered until the watermark
passes them. The watermark is stored in ``rollup_state``; a restarted hub has no carries, so its first
refresh recomputes each pending asset's open hour, then goes on incrementally. A rollup query refreshes
only the assets it asks for (see :class:`~storage.base.RollupQuery`); when the background refresh is
running, or too many are pending, it reads the rows as kept and says how fresh they are: as of this process's
last complete refresh or, in a process that completed none (an API-only one), as of the newest that any
process recorded in ``rollup_state``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import polars as pl

from wire import Sample

from ..base import RAW_SCHEMA, ROLLUP_SCHEMA, RollupQuery, Rollups, empty_rollups
from ..incremental import Carry, Key, carry_from_raw, fold_rows
from ..late import LateRange, late_ranges, read_end, recompute_windows, window_end, window_rows
from ..rollups import GAP_NS, HOUR_NS, compute_rollups
from ..sample_fold import fold_samples
from .batchlog import BatchLog, Bounds, OwnMarker
from .connection import InfluxConnection, source
from .influxql import literal, tag_in, time_range, where
from .raw_reads import KEYS_PER_QUERY, read_new, read_span
from .rollup_cache import RollupCache
from .rollup_points import rollup_lines
from .rollup_reader import RollupReader

log = logging.getLogger(__name__)

WATERMARK_MARGIN_NS = 30 * 10**9
#: (member, asset) -> (first sample, last sample) pending.
Pending = dict[Key, tuple[int, int]]


def _hour(ts: int) -> int:
    return ts // HOUR_NS * HOUR_NS


class InfluxRollupKeeper:
    """Keeps the ``rollups`` measurement up to date through the store's :class:`InfluxConnection`."""

    def __init__(self, connection: InfluxConnection, cache: RollupCache | None = None) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._watermark: int | None = None
        self._carries: dict[Key, Carry] = {}
        #: markers already handled, (member, asset, time), until the watermark passes them
        self._seen: set[tuple[str, str, int]] = set()
        self._as_of: int | None = None
        #: assets with late samples recomputed over their windows only, and from their late hour on
        self.recomputes: Counter[str] = Counter()
        #: the batches this process wrote, with their markers (see :meth:`wrote`)
        self.log = BatchLog()
        #: reads the rows, from the cache of settled hours where it can (``cache`` ``None``: no cache)
        self.reader = RollupReader(
            connection,
            cache if cache is not None else RollupCache(max_rows=0, max_age_ns=0),
            writer=self.log.writer,  # one random name per process, for its markers and its change records
        )

    def _src(self, measurement: str, rp: str | None) -> str:
        return source(measurement, rp)

    def _load_watermark(self) -> int:
        rows = self._db.execute(
            f'SELECT last("watermark_ns") AS "w" FROM {self._src("rollup_state", self._db.rollup_rp)} '
            f"WHERE {time_range(None, None)}"
        )
        values = rows.columns.get("w") or []
        return int(values[0]) if values and values[0] is not None else 0

    def wrote(self, member: str, samples: Sequence[Sample], written_ns: int, bounds: Bounds) -> None:
        """``samples`` of ``member`` are in InfluxDB with their markers (``bounds``) stamped ``written_ns`` (called
        by the store after the write succeeded). A refresh takes these markers from memory and folds an asset
        from these samples instead of reading them back, when every pending marker of the asset is of a batch
        remembered here; an asset that another process also wrote (a second ingest worker), or whose samples were
        dropped, is read back as before."""
        self.log.record(member, samples, written_ns, bounds)

    def _remembered(
        self, keys: Sequence[Key], own: dict[Key, list[int]], others: set[Key]
    ) -> dict[str, dict[str, list[Sample]]]:
        """Per member and asset, the samples of the pending batches of those ``keys`` whose every pending marker is
        of a batch whose samples are remembered (in the order written; the others must be read back)."""
        batches: dict[tuple[str, int], list[Sample] | None] = {}
        candidates = [k for k in keys if k in own and k not in others]
        for m, a in candidates:
            for t in own[(m, a)]:
                if (m, t) not in batches:
                    batches[(m, t)] = self.log.samples(m, t)
        known = [k for k in candidates if all(batches[(k[0], t)] is not None for t in own[k])]
        # per member: each asset's samples from its own pending batches, in the order written (a batch stays
        # pending for the assets a refresh limited to some assets left; the others' samples there were folded)
        wanted: dict[str, dict[str, list[Sample]]] = {}
        in_batch: dict[tuple[str, int], dict[str, list[Sample]]] = {}
        for m, a in known:
            found = wanted.setdefault(m, {})[a] = []
            for t in own[(m, a)]:
                in_batch.setdefault((m, t), {})[a] = found
        for member, t in sorted(in_batch, key=lambda b: b[1]):
            get = in_batch[(member, t)].get
            for s in batches[(member, t)] or ():
                into = get(s.asset)
                if into is not None:
                    into.append(s)
        return wanted

    def _fold_remembered(
        self, folding: dict[Key, tuple[int, int]], wanted: dict[str, dict[str, list[Sample]]]
    ) -> tuple[list[tuple[Any, ...]], dict[Key, int]]:
        """Fold, from memory and sample by sample (:func:`~storage.sample_fold.fold_samples`), the folding assets
        of ``wanted`` (their remembered samples, see :meth:`_remembered`); those assets are taken out of
        ``folding``. Returns the changed rows and the assets that need a recompute."""
        rows: list[tuple[Any, ...]] = []
        redo: dict[Key, int] = {}
        for member, assets in wanted.items():
            for a in assets:
                folding.pop((member, a), None)
            r, d = fold_samples(self._carries, member, assets)
            rows += r
            redo.update(d)
        return rows, redo

    def forget(self, member: str) -> None:
        """Drop the carries of ``member`` (its points were deleted) and every reader's cached rows."""
        self.reader.forget_all()
        with self._lock:
            for key in [k for k in self._carries if k[0] == member]:
                del self._carries[key]
        self.log.forget(member)

    def reset(self) -> None:
        """Drop every carry: the next refresh recomputes each pending asset from raw, as after a restart."""
        with self._lock:
            self._carries.clear()

    def refresh(self) -> int:
        done, _ = self._refresh(RollupQuery(), blocking=True)
        return done

    def _markers(
        self, query: RollupQuery, own: list[OwnMarker], read_all: bool
    ) -> tuple[Pending, list[tuple[str, str, int]], list[OwnMarker]]:
        """The pending assets: this process's markers ``own`` (from memory) and those of other writers after the
        watermark, read from InfluxDB (this writer's too with ``read_all``, after markers were dropped from
        memory). Returns the pending assets, the markers read and still to remember as seen, and the markers of
        ``own`` (and of this writer read back) that the refresh handles."""
        assert self._watermark is not None
        writer = self.log.writer
        cond = where(
            time_range(self._watermark + 1, None),
            tag_in("member", query.members),
            tag_in("asset", query.assets),
            tag_in("asset_class", query.asset_classes),
            None if read_all else f'"writer" <> {literal(writer)}',
        )
        rows = self._db.execute(
            f'SELECT "lo_ns", "hi_ns" FROM {self._src("rollup_dirty", self._db.raw_rp)} WHERE {cond} '
            'GROUP BY "member", "asset", "writer"',
            chunked=True,
        ).columns
        pending: Pending = {}
        seen: list[tuple[str, str, int]] = []
        handled = list(own)
        in_memory = {(o.member, o.asset, o.written_ns) for o in own} if read_all else set()
        times = rows.get("time", [])
        writers = rows.get("writer") or [""] * len(times)
        for m, a, w, t, lo, hi in zip(
            rows.get("member", []),
            rows.get("asset", []),
            writers,
            times,
            rows.get("lo_ns", []),
            rows.get("hi_ns", []),
            strict=True,
        ):
            marker = (m, a, int(t))
            if marker in self._seen or marker in in_memory or (w == writer and self.log.was_done(m, int(t))):
                continue
            seen.append(marker)
            if w == writer:  # read back after the memory dropped it (or recorded after ``own`` was taken)
                handled.append(OwnMarker(m, a, "", 0, 0, int(t)))
            lo_, hi_ = (int(lo), int(hi)) if lo is not None and hi is not None else (int(t), int(t) + HOUR_NS - 1)
            old = pending.get((m, a))
            pending[(m, a)] = (lo_, hi_) if old is None else (min(old[0], lo_), max(old[1], hi_))
        for m, a, _, lo_, hi_, _ in own:
            old = pending.get((m, a))
            pending[(m, a)] = (lo_, hi_) if old is None else (min(old[0], lo_), max(old[1], hi_))
        if query.start_ns is not None or query.end_ns is not None:
            lo_q = query.start_ns if query.start_ns is not None else -(2**62)
            hi_q = query.end_ns if query.end_ns is not None else 2**62
            pending = {k: v for k, v in pending.items() if v[1] + GAP_NS + HOUR_NS >= lo_q and v[0] - GAP_NS < hi_q}
            seen = [s for s in seen if (s[0], s[1]) in pending]
            handled = [o for o in handled if (o.member, o.asset) in pending]
        return pending, seen, handled

    def _refresh(self, query: RollupQuery, *, blocking: bool) -> tuple[int, int | None]:
        """Refresh the pending assets ``query`` asks for; return how many, and the time they are complete as of
        (``None``: not refreshed, the lock was busy or more than ``refresh_max_assets`` were pending)."""
        if not self._lock.acquire(blocking=blocking):
            return 0, None
        try:
            everything = all(
                v is None for v in (query.members, query.assets, query.asset_classes, query.start_ns, query.end_ns)
            )
            started = time.time_ns()
            if self._watermark is None:
                self._watermark = self._load_watermark()
            drops = self.log.drops
            own = self.log.pending(query.members, query.assets, query.asset_classes)
            read_all = self.log.must_read_back(drops)
            pending, seen, handled = self._markers(query, own, read_all)
            if query.refresh_max_assets is not None and len(pending) > query.refresh_max_assets:
                return 0, None
            read_s = (time.time_ns() - started) / 1e9
            if pending:
                mine: dict[Key, list[int]] = {}
                for m, a, _, _, _, t in handled:
                    mine.setdefault((m, a), []).append(t)
                others = {(m, a) for m, a, _ in seen}
                self._fold_and_recompute(pending, mine, others)
            log.debug(
                "rollup refresh: %d markers, %d assets; markers read in %.2f s, total %.2f s",
                len(seen) + len(own),
                len(pending),
                read_s,
                (time.time_ns() - started) / 1e9,
            )
            self._seen.update(seen)
            self.log.done(handled)
            if everything:
                self.log.read_back(drops)
                self._advance(started)
            return len(pending), started
        finally:
            self._lock.release()

    def _shared_as_of(self) -> int | None:
        """The ``as_of`` of the newest complete refresh of any process (``rollup_state``), for a process that has
        completed none itself (an API-only process: the ingest process refreshes)."""
        rows = self._db.execute(
            f'SELECT last("as_of_ns") AS "a" FROM {self._src("rollup_state", self._db.rollup_rp)} '
            f"WHERE {time_range(None, None)}"
        )
        values = rows.columns.get("a") or []
        return int(values[0]) if values and values[0] is not None else None

    def _advance(self, started: int) -> None:
        assert self._watermark is not None
        self._as_of = started
        new_mark = max(self._watermark, started - WATERMARK_MARGIN_NS)
        day = started // (24 * HOUR_NS) * (24 * HOUR_NS)
        # as_of for the processes that read these rows without refreshing them (see query)
        self._db.write_lines(
            f"rollup_state as_of_ns={started}i,watermark_ns={new_mark}i {day}".encode(), rp=self._db.rollup_rp
        )
        if new_mark != self._watermark:
            self._watermark = new_mark
            self._seen = {s for s in self._seen if s[2] > new_mark}
            self.log.forget_done_before(new_mark)

    def _fold_and_recompute(self, pending: Pending, own: dict[Key, list[int]], others: set[Key]) -> None:
        redo: dict[Key, int] = {}
        bound: dict[Key, int] = {}
        folding: dict[Key, tuple[int, int]] = {}
        late: dict[Key, tuple[int, int]] = {}
        for key, (lo, hi) in pending.items():
            carry = self._carries.get(key)
            bound[key] = max(hi, carry.folded_ns) if carry is not None else hi
            if carry is not None and lo >= carry.folded_ns:  # at folded_ns: fold() checks the signals
                folding[key] = (carry.folded_ns - 1, hi)  # (lo, hi]: from folded_ns on
            elif carry is not None:
                late[key] = (lo, hi)
            else:
                redo[key] = _hour(lo - GAP_NS)
        try:
            wanted = self._remembered(list(folding), own, others)
            for member, assets in self._late_windows(late, own, others, redo).items():
                wanted.setdefault(member, {}).update(assets)
            t0 = time.perf_counter()
            folded_assets = len(folding) + sum(map(len, wanted.values()))
            rows, missing = self._fold_remembered(folding, wanted)
            t1 = time.perf_counter()
            new = self._read_new(folding) if folding else pl.DataFrame(schema=RAW_SCHEMA)
            read, read_missing = fold_rows(self._carries, new)
            rows += read
            missing.update(read_missing)
            t2 = time.perf_counter()
            self._write_tuples(rows)
            if folded_assets:
                log.debug(
                    "rollup fold: %d assets, from memory in %.2f s; %d samples read and folded in %.2f s; "
                    "%d rows written in %.2f s",
                    folded_assets,
                    t1 - t0,
                    new.height,
                    t2 - t1,
                    len(rows),
                    time.perf_counter() - t2,
                )
            for key, hour in missing.items():
                redo[key] = min(hour, redo.get(key, hour))
            for start in sorted(set(redo.values())):
                keys = [k for k, s in redo.items() if s == start]
                for i in range(0, len(keys), KEYS_PER_QUERY):
                    self._recompute({k: bound[k] for k in keys[i : i + KEYS_PER_QUERY]}, start)
        except Exception:
            for key in pending:  # their carries may be ahead of the rows: recompute next time
                self._carries.pop(key, None)
            raise

    def _late_windows(
        self, late: dict[Key, tuple[int, int]], own: dict[Key, list[int]], others: set[Key], redo: dict[Key, int]
    ) -> dict[str, dict[str, list[Sample]]]:
        """Recompute the windows of the late samples of ``late`` (assets with a carry whose pending samples start
        before its folded time, with their first and last pending sample; see :mod:`storage.late`), leaving their
        carries as they are: the clusters of the samples when every pending batch of the asset is remembered, else,
        when all its pending samples come before the folded time (a backfill another ingest worker wrote), one
        window over them. Returns, per member and asset, the remembered samples of those assets from the folded
        time on, to fold; every asset whose windows cannot be bounded (or that has samples read back from both
        before and after its folded time) goes into ``redo`` from its late hour on."""
        kept = self._remembered(list(late), own, others)
        out: dict[str, dict[str, list[Sample]]] = {}
        for (m, a), (lo, hi) in late.items():
            samples = kept.get(m, {}).get(a)
            folded = self._carries[(m, a)].folded_ns
            if samples is not None:
                ranges: list[LateRange] | None = late_ranges(samples, folded)
            else:
                ranges = [LateRange(lo, hi, None)] if hi < folded else None
            if not recompute_windows(ranges, folded, partial(self._window, (m, a))):
                redo[(m, a)] = _hour(lo - GAP_NS)
                self.recomputes["full"] += 1
                continue
            self.recomputes["window"] += 1
            rest = [s for s in samples or () if s.ts >= folded]
            if rest:
                out.setdefault(m, {})[a] = rest
        return out

    def _read_new(self, folding: dict[Key, tuple[int, int]]) -> pl.DataFrame:
        return read_new(self._db, folding)

    def _recompute(self, bound: dict[Key, int], start: int) -> None:
        """Recompute the rows of the assets of ``bound`` from ``start`` (an hour) up to their bound; carries."""
        combined, start = read_span(self._db, bound, start)
        fresh = compute_rollups(combined).filter(pl.col("hour").cast(pl.Int64) >= start)
        self._write_rows(fresh)
        for key in bound:
            self._carries.pop(key, None)
        self._carries.update(carry_from_raw(combined, fresh, start))
        log.debug("recomputed %d rollup rows for %d assets from %d", fresh.height, len(bound), start)

    def _window(self, key: Key, r: LateRange) -> bool:
        """Recompute the rows of one window of late samples of ``key`` (:mod:`storage.late`); ``False`` when it
        cannot be bounded (nothing written then)."""
        end_ns = read_end(r)
        combined, start = read_span(self._db, {key: end_ns - 1}, r.start, widen=False)
        end = window_end(combined, r, self._carries[key], end_ns)
        if end is None:
            return False
        self._write_rows(window_rows(combined, start, end, end_ns))
        return True

    def _write_rows(self, rows: pl.DataFrame) -> None:
        """Upsert ``rows``; then announce the hours that a reader's cache may hold (see :mod:`.rollup_reader`)."""
        self._write_tuples(rows.select(*ROLLUP_SCHEMA).with_columns(pl.col("hour").cast(pl.Int64)).rows())

    def _write_tuples(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """:meth:`_write_rows` of rows as tuples (see :func:`~storage.incremental.rows_frame`)."""
        if not rows:
            return
        self._db.write_lines(rollup_lines(rows), rp=self._db.rollup_rp)
        self.reader.wrote(sorted({r[3] for r in rows}))

    def query(self, query: RollupQuery) -> Rollups:
        if any(v == () for v in (query.asset_classes, query.members, query.assets)):
            return Rollups(empty_rollups(), self._as_of)
        t0 = time.perf_counter()
        refreshed, as_of = self._refresh(query, blocking=query.refresh_max_assets is None)
        if as_of is None:
            as_of = self._as_of if self._as_of is not None else self._shared_as_of()
        t1 = time.perf_counter()
        frame = self.reader.read(query)
        log.debug(
            "rollup query: %d assets refreshed in %.3f s (%s), rows read in %.3f s",
            refreshed,
            t1 - t0,
            "as kept" if as_of is None or refreshed == 0 else "refreshed",
            time.perf_counter() - t1,
        )
        return Rollups(frame, as_of)
