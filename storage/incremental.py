"""Incremental rollups: fold newly arrived samples into the kept rows instead of recomputing from raw.

Under live ingest every asset's open hour changes all the time. Recomputing it from raw on each
refresh costs the whole hour of every asset; this module folds in only what arrived since the
last refresh. Per asset a :class:`Carry` holds what the fold needs from before:

* ``folded_ns``: the newest sample timestamp folded in, and ``edge``, the samples folded in at that time; a
  fold takes samples from it on, leaving out those in ``edge`` (a batch may end amid one timestamp's samples);
* the last good value (and its time) of every counter series: the predecessor of the next sample;
* the last good ``state`` and ``downtime_reason`` sample: its interval ends at the next one;
* the kept rows of the hours a fold can still change (the hour of ``folded_ns``, and the hour of each
  last state sample and the one after it), with each gauge's sum and count so that means merge.

:func:`fold` computes the new samples' contributions with the same :func:`~storage.rollups.compute_rollups`
that recomputes from raw (the carried predecessors prepended, their own sample counts taken off
again) and adds them to the kept rows. An asset without a carry, or whose fold would change an
hour whose row is not kept, is returned as *needing a recompute*: its keeper recomputes it from
raw (:func:`~storage.rollups.compute_rollups` over a window from that hour) and builds a fresh
carry with :func:`carry_from_raw`. Samples that arrive out of order (before ``folded_ns``) never
reach :func:`fold`: the keepers send such assets to the recompute too. At ``folded_ns`` itself, a sample equal
to one in ``edge`` was folded in already and is left out, and one that differs (sent again with another value)
sends its asset to the recompute. The result then
equals :func:`~storage.rollups.compute_rollups` over the raw data, up to floating-point rounding
of sums taken in a different order (property-tested in ``tests/storage/test_incremental.py``).

Pure: frames and carries in, rows and carries out; the keepers of both stores do the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import polars as pl

from wire import Quality

from .base import COUNTER_COLUMNS, GAUGE_STATS, RAW_SCHEMA, ROLLUP_SCHEMA, empty_rollups
from .rollups import GAP_NS, GAUGE_COLUMNS, HOUR_NS, compute_rollups

Key = tuple[str, str]
#: A kept row: the rollup columns without member/asset/hour, plus ``_sum_<gauge>`` and ``_n_<gauge>``.
Row = dict[str, Any]

_STATE_SIGNALS = ("state", "downtime_reason")
_VALUE_COLUMNS = tuple(c for c in ROLLUP_SCHEMA if c not in ("member", "asset", "asset_class", "hour"))
_GAUGE_COLUMNS = frozenset(GAUGE_COLUMNS)
_ADDITIVE = tuple(c for c in _VALUE_COLUMNS if c not in _GAUGE_COLUMNS and c != "samples")
_FIRST_N = "_n_" + GAUGE_STATS[0]
#: a kept row's values in the order of the rollup columns after member, asset, asset class and hour
row_values = itemgetter(*_VALUE_COLUMNS)
#: gauge -> the keys of its sum, count, mean, min and max in a kept row
_GAUGE_KEYS = {g: (f"_sum_{g}", f"_n_{g}", f"{g}_mean", f"{g}_min", f"{g}_max") for g in GAUGE_STATS}


def _hour(ts: int) -> int:
    return ts // HOUR_NS * HOUR_NS


@dataclass(slots=True)
class Carry:
    """What a fold of one asset needs from before (see the module docstring)."""

    folded_ns: int
    asset_class: str
    counters: dict[str, tuple[int, float]] = field(default_factory=dict)
    states: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: hour -> kept row, or ``None`` for an hour known to have no row; hours not in it are unknown.
    rows: dict[int, Row | None] = field(default_factory=dict)
    #: signal -> (value, text, quality) of the samples folded in at exactly ``folded_ns``: a batch may end amid
    #: one timestamp's samples (a machine's signals often share it); the next batch's samples at that time are
    #: in order, a read from ``folded_ns`` on finds these again, and one sent again with another value is not
    edge: dict[str, tuple[float | None, str | None, int]] = field(default_factory=dict)

    def needed_hours(self) -> set[int]:
        hours = {_hour(self.folded_ns)}
        for ts, _ in self.states.values():
            hours.update((_hour(ts), _hour(ts) + HOUR_NS))
        return hours


def _fresh_row(asset_class: str) -> Row:
    row: Row = {c: 0.0 for c in _ADDITIVE}
    row.update({c: None for c in _GAUGE_COLUMNS})
    row.update({f"_sum_{g}": 0.0 for g in GAUGE_STATS})
    row.update({f"_n_{g}": 0 for g in GAUGE_STATS})
    row["samples"] = 0
    row["asset_class"] = asset_class
    return row


def target_row(carry: Carry, hour: int, *, gauges: bool, asset_class: str) -> Row | None:
    """The row a fold merges the contributions of ``hour`` into: a copy of the kept one, or a fresh one for an hour
    known to have none or after the open hour; ``None`` when the fold needs a row the carry does not keep (an
    unknown hour up to the open one, or a row without gauge sums for an hour with gauge samples)."""
    kept = carry.rows.get(hour, ...)
    if kept is ...:
        if hour <= _hour(carry.folded_ns):
            return None
        kept = None
    if kept is None:
        return _fresh_row(asset_class)
    if gauges and _FIRST_N not in kept:
        return None
    return dict(kept)


def merge_gauge(row: Row, gauge: str, total: float, n: int, lo: float, hi: float) -> None:
    """Merge the sum, count, minimum and maximum of new samples of ``gauge`` into ``row`` (the mean from the sums)."""
    sum_, n_, mean_, min_, max_ = _GAUGE_KEYS[gauge]
    row[sum_] += total
    row[n_] += n
    row[mean_] = row[sum_] / row[n_]
    row[min_] = lo if row[min_] is None else min(row[min_], lo)
    row[max_] = hi if row[max_] is None else max(row[max_], hi)


def prune_rows(carry: Carry, old_open: int) -> None:
    """Keep the rows of the hours a fold can still change; an hour after the old open hour without a row has none."""
    rows: dict[int, Row | None] = {}
    for h in carry.needed_hours():
        if h in carry.rows:
            rows[h] = carry.rows[h]
        elif h > old_open:
            rows[h] = None
    carry.rows = rows


def _last_good(raw: pl.DataFrame, signals: tuple[str, ...], column: str) -> pl.DataFrame:
    return (
        raw.filter(pl.col("signal").is_in(list(signals)) & (pl.col("quality") < int(Quality.BAD)))
        .sort("ts")
        .group_by(["member", "asset", "signal"])
        .agg(pl.col("ts").last(), pl.col(column).last())
    )


def _gauge_sums(good: pl.DataFrame) -> pl.DataFrame:
    return (
        good.filter(pl.col("signal").is_in(list(GAUGE_STATS)))
        .group_by(["member", "asset", ((pl.col("ts") // HOUR_NS) * HOUR_NS).alias("hour"), "signal"])
        .agg(
            pl.col("value").sum().alias("sum"),
            pl.len().alias("n"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
        )
    )


def _predecessors(carries: dict[Key, Carry], keys: set[Key]) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {c: [] for c in RAW_SCHEMA}  # a frame from columns: ~3x faster than from dicts
    ts_, member_, asset_, class_, signal_, value_, text_ = (
        cols[c] for c in ("ts", "member", "asset", "asset_class", "signal", "value", "text")
    )
    for member, asset in keys:
        c = carries[(member, asset)]
        for sig, (ts, value) in c.counters.items():
            ts_.append(ts)
            value_.append(value)
            text_.append(None)
            signal_.append(sig)
        for sig, (ts, text) in c.states.items():
            ts_.append(ts)
            value_.append(None)
            text_.append(text)
            signal_.append(sig)
        n = len(c.counters) + len(c.states)
        member_.extend([member] * n)
        asset_.extend([asset] * n)
        class_.extend([c.asset_class] * n)
    cols["quality"] = [0] * len(ts_)
    return pl.DataFrame(cols, schema=RAW_SCHEMA)


def fold(carries: dict[Key, Carry], new: pl.DataFrame) -> tuple[pl.DataFrame, dict[Key, int]]:
    """Fold ``new`` (raw rows, ts as Int64 ns, none before their asset's ``folded_ns``) into ``carries``.

    Returns the changed rollup rows (:data:`~storage.base.ROLLUP_SCHEMA`) and the assets that need a
    recompute from raw, each with the earliest hour it must start at. Carries of those assets are
    left as they were; the others are updated in place.
    """
    rows, redo = fold_rows(carries, new)
    return rows_frame(rows), redo


def fold_rows(carries: dict[Key, Carry], new: pl.DataFrame) -> tuple[list[tuple[Any, ...]], dict[Key, int]]:
    """:func:`fold`, the changed rows as tuples (see :func:`rows_frame`), sorted by member, asset and hour: a
    keeper that only writes them out needs no frame."""
    if new.height == 0:
        return [], {}
    new = new.select([pl.col(c).cast(t) for c, t in RAW_SCHEMA.items()])
    firsts = {(m, a): int(ts) for m, a, ts in new.group_by(["member", "asset"]).agg(pl.col("ts").min()).iter_rows()}
    redo = {k: _hour(ts) for k, ts in firsts.items() if k not in carries}
    edge = [(m, a, c.folded_ns) for (m, a), c in carries.items() if firsts.get((m, a)) == c.folded_ns]
    if edge:  # samples at the folded time: new ones are folded, those folded already are left out
        at = pl.DataFrame(edge, schema={"member": pl.String, "asset": pl.String, "_f": pl.Int64}, orient="row")
        new = new.with_row_index("_i")
        hits = new.join(at, on=["member", "asset"]).filter(pl.col("ts") == pl.col("_f"))
        folded_already: list[int] = []
        for i, m, a, sig, v, t, q in hits.select("_i", "member", "asset", "signal", "value", "text", "quality").rows():
            before = carries[(m, a)].edge.get(sig)
            if before is None:
                continue
            if before == (v, t, q):
                folded_already.append(i)
            else:  # sent again with another value: the store holds the new one, the rows the old
                redo[(m, a)] = _hour(carries[(m, a)].folded_ns - GAP_NS)
        new = new.filter(~pl.col("_i").is_in(folded_already)).drop("_i")
    keys = set(firsts) - set(redo)
    if not keys:
        return [], redo
    if redo:
        wanted = pl.DataFrame(sorted(keys), schema=["member", "asset"], orient="row")
        new = new.join(wanted, on=["member", "asset"], how="semi")
    good = new.filter(pl.col("quality") < int(Quality.BAD))
    preds = _predecessors(carries, keys)
    pred_counts = {
        (m, a, h): n
        for m, a, h, n in preds.group_by(["member", "asset", ((pl.col("ts") // HOUR_NS) * HOUR_NS).alias("h")])
        .len()
        .iter_rows()
    }
    # the gauge columns come from the sums below (means merge), not from the new samples' own statistics
    delta = compute_rollups(pl.concat([preds, good]), gauges=False).select(
        "member", "asset", pl.col("hour").cast(pl.Int64), "asset_class", "samples", *_ADDITIVE
    )
    gauges: dict[tuple[str, str, int], list[tuple[str, float, int, float, float]]] = {}
    for m, a, h, sig, s, n, lo, hi in _gauge_sums(good).iter_rows():
        gauges.setdefault((m, a, h), []).append((sig, s, n, lo, hi))

    # delta rows: (member, asset, hour, asset_class, samples, *_ADDITIVE), sorted by member, asset, hour
    by_key: dict[Key, list[tuple[Any, ...]]] = {}
    for row in delta.iter_rows():
        by_key.setdefault((row[0], row[1]), []).append(row)
    changed: list[tuple[Any, ...]] = []
    for key, rows in by_key.items():
        carry = carries[key]
        targets: dict[int, Row] = {}
        folded: list[tuple[int, str, int, tuple[float, ...]]] = []
        missing: int | None = None
        for d in rows:
            h, asset_class = d[2], d[3]
            samples = d[4] - pred_counts.get((key[0], key[1], h), 0)
            additive = d[5:]
            if samples == 0 and all(v == 0.0 for v in additive):
                continue  # only a predecessor's own hour, unchanged
            target = target_row(carry, h, gauges=(key[0], key[1], h) in gauges, asset_class=asset_class)
            if target is None:
                missing = h if missing is None else min(missing, h)
                continue
            targets[h] = target
            folded.append((h, asset_class, samples, additive))
        if missing is not None:
            redo[key] = missing
            continue
        for h, asset_class, samples, additive in folded:
            t = targets[h]
            for c, v in zip(_ADDITIVE, additive, strict=True):
                t[c] += v
            t["samples"] += samples
            t["asset_class"] = asset_class
            for sig, s, n, lo, hi in gauges.get((key[0], key[1], h), ()):
                merge_gauge(t, sig, s, n, lo, hi)
        carry.rows.update(targets)
        changed.extend((key[0], key[1], t["asset_class"], h, *row_values(t)) for h, t in targets.items())

    # advance the carries of the keys folded (also those whose new samples changed no row)
    done = keys - set(redo)
    if done:
        _advance(carries, new, done)
    changed.sort(key=lambda r: (r[0], r[1], r[3]))  # member, asset, hour (unique); str order is UTF-8 byte order
    return changed, redo


def _advance(carries: dict[Key, Carry], raw: pl.DataFrame, keys: set[Key]) -> None:
    latest = {
        (m, a): (int(ts), c)
        for m, a, ts, c in raw.group_by(["member", "asset"])
        .agg(pl.col("ts").max(), pl.col("asset_class").last())
        .iter_rows()
    }
    at_latest = _signals_at_latest(raw)
    counters = _last_good(raw, tuple(COUNTER_COLUMNS), "value")
    states = _last_good(raw, _STATE_SIGNALS, "text")
    for m, a, sig, ts, v in counters.iter_rows():
        if (m, a) in keys:
            carries[(m, a)].counters[sig] = (int(ts), float(v))
    for m, a, sig, ts, text in states.iter_rows():
        if (m, a) in keys:
            carries[(m, a)].states[sig] = (int(ts), str(text))
    for key in keys:
        carry = carries[key]
        old_open = _hour(carry.folded_ns)
        ts, asset_class = latest.get(key, (carry.folded_ns, carry.asset_class))
        if ts > carry.folded_ns:
            carry.edge = dict(at_latest.get(key, {}))
        elif ts == carry.folded_ns:
            carry.edge.update(at_latest.get(key, {}))
        carry.folded_ns = max(carry.folded_ns, ts)
        carry.asset_class = asset_class
        prune_rows(carry, old_open)


def _signals_at_latest(raw: pl.DataFrame) -> dict[Key, dict[str, tuple[float | None, str | None, int]]]:
    """Per asset, the samples at its newest timestamp: signal -> (value, text, quality)."""
    newest = raw.filter(pl.col("ts") == pl.col("ts").max().over(["member", "asset"]))
    out: dict[Key, dict[str, tuple[float | None, str | None, int]]] = {}
    for m, a, sig, v, t, q in newest.select("member", "asset", "signal", "value", "text", "quality").rows():
        out.setdefault((m, a), {})[sig] = (v, t, q)
    return out


def rows_frame(rows: Sequence[tuple[Any, ...]]) -> pl.DataFrame:
    """Rollup rows given as tuples in the column order of :data:`~storage.base.ROLLUP_SCHEMA`, the hour as Int64
    ns, as a frame (in their order)."""
    if not rows:
        return empty_rollups()
    schema = {**ROLLUP_SCHEMA, "hour": pl.Int64()}
    # from columns: faster than from the rows themselves (or from dicts)
    frame = pl.DataFrame(dict(zip(schema, map(list, zip(*rows, strict=True)), strict=True)), schema=schema)
    return frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))


def widen_start(start_ns: int, preds: pl.DataFrame) -> int:
    """Where a recompute from ``start_ns`` must really start, given ``preds`` (per series the last good sample
    before ``start_ns``): a state sample with no successor yet counts no time, and one arriving now books
    its interval to the predecessor's own hour, however far back."""
    states = preds.filter(pl.col("signal").is_in(list(_STATE_SIGNALS)))
    if states.height == 0:
        return start_ns
    return min(start_ns, _hour(int(states["ts"].min())))  # type: ignore[arg-type]


def carry_from_raw(raw: pl.DataFrame, fresh: pl.DataFrame, start_ns: int) -> dict[Key, Carry]:
    """Carries after a recompute: ``raw`` is every raw row the recompute read (window and predecessors),
    ``fresh`` the rows it computed for the hours from ``start_ns`` on (every row there is, up to the newest
    sample). Hours before ``start_ns`` are unknown to the carry."""
    if raw.height == 0:
        return {}
    raw = raw.with_columns(pl.col("ts").cast(pl.Int64))
    latest = raw.group_by(["member", "asset"]).agg(pl.col("ts").max(), pl.col("asset_class").last())
    at_latest = _signals_at_latest(raw)
    carries: dict[Key, Carry] = {
        (m, a): Carry(folded_ns=int(ts), asset_class=str(c), edge=dict(at_latest.get((m, a), {})))
        for m, a, ts, c in latest.iter_rows()
    }
    for m, a, sig, ts, v in _last_good(raw, tuple(COUNTER_COLUMNS), "value").iter_rows():
        carries[(m, a)].counters[sig] = (int(ts), float(v))
    for m, a, sig, ts, text in _last_good(raw, _STATE_SIGNALS, "text").iter_rows():
        carries[(m, a)].states[sig] = (int(ts), str(text))
    kept: dict[tuple[str, str, int], Row] = {}
    for r in fresh.with_columns(pl.col("hour").cast(pl.Int64)).iter_rows(named=True):
        kept[(r["member"], r["asset"], r["hour"])] = {c: r[c] for c in _VALUE_COLUMNS} | {
            "asset_class": r["asset_class"]
        }
    good = raw.filter(pl.col("quality") < int(Quality.BAD))
    sums = _gauge_sums(good)
    for (m, a), carry in carries.items():
        open_hour = _hour(carry.folded_ns)
        for h in carry.needed_hours():
            if h < start_ns:
                continue
            row = kept.get((m, a, h))
            carry.rows[h] = None if row is None else dict(row)
        row = carry.rows.get(open_hour)
        if row is not None:
            row.update({f"_sum_{g}": 0.0 for g in GAUGE_STATS})
            row.update({f"_n_{g}": 0 for g in GAUGE_STATS})
    for m, a, h, sig, s, n, _, _ in sums.iter_rows():
        found = carries.get((m, a))
        if found is None or h != _hour(found.folded_ns):
            continue
        row = found.rows.get(h)
        if row is not None:
            row[f"_sum_{sig}"] = s
            row[f"_n_{sig}"] = n
    return carries
