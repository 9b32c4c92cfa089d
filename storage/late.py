"""Late samples: recompute only the hours they change, not everything from their hour up to the present.

A sample older than its asset's folded time (a replayed old batch, a backfill, or a member that sends one old
sample in every batch to make the hub work) used to send its asset to a recompute from the sample's hour up to
now, from raw: one sample a day late cost the whole day of the asset (docs/performance.md). A late sample
changes only

* its own hour (its count, a gauge's mean, min and max, its counter increase);
* for a counter, the hour of the next good sample of its series (whose increase now starts from it);
* for a state, the hours of its interval (at most :data:`~storage.rollups.GAP_NS` after it) and of the
  interval of the state sample before it (now cut at the late one, which starts at most ``GAP_NS`` before).

So the late samples of an asset are taken in clusters (:func:`late_ranges`; two clusters more than
:data:`CLUSTER_GAP_NS` apart are two windows), when their windows read less than the recompute up to now would
(:func:`worth_windows`: not for many clusters spread over the day, nor for a sample from the last few hours), and
each cluster's window is recomputed from raw with
:func:`~storage.rollups.compute_rollups`: from the hour of its first sample less ``GAP_NS`` up to
:func:`window_end`, over the raw rows read up to :func:`read_end`, whose last ``GAP_NS`` only closes the intervals
of the last states (:func:`window_rows`), after each counter and state series' last good sample before the window
as its predecessor. The start is not widened back to a state sample without a successor, as a recompute up to
now is (:func:`~storage.incremental.widen_start`): a window is only taken when the carry's newest state of every
late state signal comes after the late samples, so each state sample before the window had its successor
already, and its interval, which ends at most ``GAP_NS`` after it and so before the late samples, stays as it was
(its spill into the window's first hour is computed from it as the predecessor).

The carry of the asset stays as it is, so the window must end before every hour the carry keeps a row for
and the late samples must not be the newest of their series (the carry holds the newest counter value and
state): :func:`window_end` answers ``None`` when either could be so, or when a counter's next sample lies
beyond what was read, and the keeper then recomputes the asset from the late hour on as before. Every row of a
window is the row a recompute of the whole asset gives (property-tested against
:func:`~storage.rollups.compute_rollups` over all samples in ``tests/storage/test_late.py``).

Pure: samples, frames and carries in, hours and rows out; both stores' keepers do the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

from wire import Quality, Sample
from wire.catalog import COUNTER_SIGNALS

from .base import RAW_SCHEMA
from .incremental import Carry
from .rollups import GAP_NS, HOUR_NS, compute_rollups

#: Late samples further apart than this are recomputed as two windows (one sample at 03:00 and one at 21:00
#: cost two short windows, not the eighteen hours between them).
CLUSTER_GAP_NS = 2 * HOUR_NS
#: How far after a cluster's hour (less one ``GAP_NS``) a window reads: room for the next counter sample
#: to fall into the hour after, and for the intervals of the window's last states to close.
READ_AHEAD_NS = 2 * HOUR_NS + GAP_NS

_COUNTERS = frozenset(COUNTER_SIGNALS)
_STATES = frozenset(("state", "downtime_reason"))
_BAD = int(Quality.BAD)


def _hour(ts: int) -> int:
    return ts // HOUR_NS * HOUR_NS


@dataclass(frozen=True, slots=True)
class LateRange:
    """One cluster of an asset's late samples: the first and last time, and their signals (``None``: not known, for
    a batch read back; then every signal of the raw rows from ``lo`` to ``hi``, a superset, stands for them)."""

    lo: int
    hi: int
    signals: frozenset[str] | None

    @property
    def start(self) -> int:
        """The first hour the cluster can change."""
        return _hour(self.lo - GAP_NS)


def late_ranges(samples: Iterable[Sample], folded_ns: int) -> list[LateRange]:
    """The clusters of the samples stamped before ``folded_ns`` (the asset's carry folded everything up to
    it), in time order; empty when none is."""
    late = sorted((s.ts, s.signal) for s in samples if s.ts < folded_ns)
    out: list[LateRange] = []
    first = 0
    for i in range(1, len(late) + 1):
        if i == len(late) or late[i][0] - late[i - 1][0] > CLUSTER_GAP_NS:
            part = late[first:i]
            out.append(LateRange(part[0][0], part[-1][0], frozenset(sig for _, sig in part)))
            first = i
    return out


def worth_windows(ranges: list[LateRange], folded_ns: int) -> bool:
    """Whether the windows of ``ranges`` read less than a recompute from the first one's hour up to ``folded_ns``
    would, counting each window's own queries as an hour of rows more. Late samples spread over many hours (one
    every few hours of a day, say) cost less recomputed at once; a sample a day old costs a window of about four
    hours against a day."""
    if not ranges:
        return True
    windows = sum(read_end(r) - r.start + HOUR_NS for r in ranges)
    return windows < folded_ns - ranges[0].start


def recompute_windows(ranges: list[LateRange] | None, folded_ns: int, window: Callable[[LateRange], bool]) -> bool:
    """Recompute the windows of ``ranges`` (``None``: not known) with the keeper's ``window``, when they are worth
    it (:func:`worth_windows`); whether every one was bounded. ``False``: the keeper recomputes the asset from its
    late hour up to the present (a window already written is then rewritten by that, with the same rows)."""
    return ranges is not None and worth_windows(ranges, folded_ns) and all(map(window, ranges))


def read_end(r: LateRange) -> int:
    """Up to where (exclusive) a window of ``r`` reads the raw rows."""
    return _hour(r.hi + GAP_NS) + READ_AHEAD_NS


def window_end(raw: pl.DataFrame, r: LateRange, carry: Carry, end_ns: int) -> int | None:
    """The hour (exclusive) up to which the late samples of ``r`` change rows, given ``raw``: the asset's raw rows
    from the window's start up to ``end_ns`` (exclusive, :func:`read_end`), the late ones among them. ``None``
    when the window cannot be bounded with the carry left as it is: a late sample may be the newest good one of
    its counter or state series, a counter's next good sample lies at or beyond ``end_ns``, or the window would
    reach an hour the carry keeps a row for (the caller then recomputes the asset up to the present). For a range
    whose signals are not known, those of ``raw`` from its first to its last time stand for them."""
    end = _hour(r.hi + GAP_NS) + HOUR_NS
    signals = r.signals
    if signals is None:
        signals = frozenset(raw.filter((pl.col("ts") >= r.lo) & (pl.col("ts") <= r.hi))["signal"].unique())
    for sig in signals & (_COUNTERS | _STATES):
        kept = carry.counters.get(sig) if sig in _COUNTERS else carry.states.get(sig)
        if kept is None or kept[0] <= r.hi:
            return None
        if sig in _COUNTERS:
            after = raw.filter((pl.col("signal") == sig) & (pl.col("ts") > r.hi) & (pl.col("quality") < _BAD))
            nxt = after["ts"].min()
            if nxt is None:
                return None
            end = max(end, _hour(int(nxt)) + HOUR_NS)  # type: ignore[arg-type]
    kept_hours = [h for h in carry.rows] + [_hour(carry.folded_ns)]
    if end + GAP_NS > end_ns or end > min(kept_hours):
        return None
    return end


def window_rows(combined: pl.DataFrame, start: int, end: int, end_ns: int) -> pl.DataFrame:
    """The rollup rows of the hours ``start`` up to ``end`` (exclusive) of one asset, from ``combined``: its
    predecessors before ``start`` and its raw rows from ``start`` up to ``end_ns`` (exclusive). A state sample
    whose next one was not read is followed at ``end_ns`` by a sample of no value kept, so that its interval
    ends at most ``GAP_NS`` after it, as in the whole series (``end_ns`` lies at least ``GAP_NS`` after
    ``end``); rows from ``end`` on, which that sample touches, are left out."""
    if combined.height == 0:
        return compute_rollups(combined)
    member, asset, asset_class = combined.select("member", "asset", "asset_class").row(-1)
    closing = pl.DataFrame(
        {
            "member": [member, member],
            "asset": [asset, asset],
            "asset_class": [asset_class, asset_class],
            "signal": ["state", "downtime_reason"],
            "ts": [end_ns, end_ns],
            "value": [None, None],
            "text": ["", ""],
            "quality": [int(Quality.GOOD), int(Quality.GOOD)],
        },
        schema=RAW_SCHEMA,
    )
    rows = compute_rollups(pl.concat([combined.select([pl.col(c).cast(t) for c, t in RAW_SCHEMA.items()]), closing]))
    hour = pl.col("hour").cast(pl.Int64)
    return rows.filter((hour >= start) & (hour < end))
