"""The incremental fold of :mod:`storage.incremental`, sample by sample in plain Python.

A keeper that still has the samples it wrote in memory (the InfluxDB keeper's batch log) folds them with
:func:`fold_samples` instead of building frames for :func:`~storage.incremental.fold_rows`: the same decisions
(which assets need a recompute from raw, from which hour), the same rows and the same carries, at a fraction
of the cost for the few hundred samples per asset and refresh of live ingest. A polars fold pays a fixed cost
per operation and per frame, about 3 µs per sample at 50,000 samples over 1,000 assets; this loop pays about
one (see docs/performance.md). Property-tested against :func:`~storage.incremental.fold_rows` in
``tests/storage/test_sample_fold.py``: equal redo decisions and rows, carries equal up to the rounding of
sums taken in another order.

Pure: samples and carries in, rows and carries out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

from wire import MACHINE_STATES, Quality, Sample

from .base import COUNTER_COLUMNS, DOWNTIME_COLUMNS, GAUGE_STATS
from .incremental import _ADDITIVE, Carry, Key, Row, merge_gauge, prune_rows, row_values, target_row
from .rollups import GAP_NS, HOUR_NS

_BAD = int(Quality.BAD)
_GAUGES = frozenset(GAUGE_STATS)
#: state signal -> its value -> the rollup column of its seconds (values not kept, like ``none``, are absent)
_STATE_COLUMNS: dict[str, dict[str, str]] = {
    "state": {st: f"seconds_{st}" for st in MACHINE_STATES},
    "downtime_reason": dict(DOWNTIME_COLUMNS),
}
_ADDITIVE_INDEX = {c: i for i, c in enumerate(_ADDITIVE)}
_TS = attrgetter("ts")
#: value as a raw frame holds it: (value, text)
Edge = tuple[float | None, str | None, int]


def _edge_value(s: Sample) -> Edge:
    v = s.value
    return (None, v, s.quality) if isinstance(v, str) else (float(v), None, s.quality)


_SERIES_KEY = attrgetter("signal", "ts", "asset_class")


def _dedupe(samples: Sequence[Sample]) -> Sequence[Sample]:
    """One sample per series and time, the last written (a store keeps that one), in the order of the kept ones."""
    if len(set(map(_TS, samples))) == len(samples):  # no two at one time (hashing ints is cheaper than tuples)
        return samples
    keys = list(map(_SERIES_KEY, samples))
    if len(set(keys)) == len(keys):
        return samples
    last = {k: i for i, k in enumerate(keys)}
    return [samples[i] for i in sorted(last.values())]


def _by_hour(samples: list[Sample]) -> dict[int, list[Sample]]:
    """The samples per hour, in their order (most often all in one hour: then without a division per sample)."""
    times = [s.ts for s in samples]
    lo, hi = min(times), max(times)
    if lo // HOUR_NS == hi // HOUR_NS:
        return {lo // HOUR_NS * HOUR_NS: samples}
    out: dict[int, list[Sample]] = {}
    for s, ts in zip(samples, times, strict=True):
        h = ts // HOUR_NS * HOUR_NS
        found = out.get(h)
        if found is None:
            out[h] = [s]
        else:
            found.append(s)
    return out


class _Delta:
    """What one asset's new samples add, per hour (before anything is merged into the carry)."""

    __slots__ = ("additive", "classes", "gauges", "samples", "series")

    def __init__(self) -> None:
        self.samples: dict[int, int] = {}
        #: hour -> the additive columns' sums (in :data:`_ADDITIVE` order)
        self.additive: dict[int, list[float]] = {}
        #: hour -> asset class of its last good sample (in the order written)
        self.classes: dict[int, str] = {}
        #: hour -> gauge -> (sum, n, min, max)
        self.gauges: dict[int, dict[str, tuple[float, int, float, float]]] = {}
        #: counter and state signal -> its good samples, sorted by time (stably: the order written within one)
        self.series: dict[str, list[Sample]] = {}

    def add(self, hour: int, index: int, amount: float) -> None:
        row = self.additive.get(hour)
        if row is None:
            row = self.additive[hour] = [0.0] * len(_ADDITIVE)
        row[index] += amount


def _delta(carry: Carry, good: list[Sample], one_hour: int | None) -> _Delta:
    """The contributions of ``good`` (all in the hour ``one_hour`` when it is given)."""
    d = _Delta()
    if not good:
        return d
    by_hour = _by_hour if one_hour is None else lambda samples: {one_hour: samples}
    by_signal: dict[str, list[Sample]] = {}
    for s in good:
        found = by_signal.get(s.signal)
        if found is None:
            by_signal[s.signal] = [s]
        else:
            found.append(s)
    for h, in_hour in by_hour(good).items():
        d.samples[h] = len(in_hour)
        d.classes[h] = in_hour[-1].asset_class
    for sig, samples in by_signal.items():
        if sig in _GAUGES:
            for h, in_hour in by_hour(samples).items():
                values = [float(s.value) for s in in_hour]
                d.gauges.setdefault(h, {})[sig] = (sum(values), len(values), min(values), max(values))
        elif sig in COUNTER_COLUMNS or sig in _STATE_COLUMNS:
            samples.sort(key=_TS)
            d.series[sig] = samples
    for sig, column in COUNTER_COLUMNS.items():
        new = d.series.get(sig)
        if not new:
            continue
        index = _ADDITIVE_INDEX[column]
        pred = carry.counters.get(sig)
        prev = pred[1] if pred is not None else None
        for h, in_hour in by_hour(new).items():  # in time order
            total = 0.0
            for s in in_hour:
                v = float(s.value)
                if prev is not None:
                    total += v if v < prev else v - prev
                prev = v
            d.add(h, index, total)
    for sig, columns in _STATE_COLUMNS.items():
        new = d.series.get(sig)
        if not new:
            continue
        before: tuple[int, str] | None = carry.states.get(sig)
        for s in new:
            if before is not None:
                ts, text = before
                held = columns.get(text)
                if held is not None:
                    index = _ADDITIVE_INDEX[held]
                    end = min(s.ts, ts + GAP_NS)
                    h0 = ts // HOUR_NS * HOUR_NS
                    boundary = h0 + HOUR_NS
                    d.add(h0, index, min(end, boundary) - ts)
                    if end > boundary:
                        d.add(boundary, index, end - boundary)
            before = (s.ts, str(s.value))
    for columns in _STATE_COLUMNS.values():
        for column in columns.values():  # nanoseconds -> seconds, rounded as compute_rollups rounds
            index = _ADDITIVE_INDEX[column]
            for row in d.additive.values():
                if row[index]:
                    row[index] = round(row[index] / 1e9, 9)
    return d


def _class_of(hour: int, d: _Delta, carry: Carry, last_class: str) -> str:
    """The asset class a recompute gives the row of ``hour``: its last good sample's, a predecessor's (the
    carry's), or for an hour reached only by a state's interval the asset's last good sample's."""
    found = d.classes.get(hour)
    if found is not None:
        return found
    preds = itertools.chain(carry.counters.values(), carry.states.values())
    return carry.asset_class if any(ts // HOUR_NS * HOUR_NS == hour for ts, _ in preds) else last_class


def fold_samples(
    carries: dict[Key, Carry], member: str, new: Mapping[str, Sequence[Sample]]
) -> tuple[list[tuple[Any, ...]], dict[Key, int]]:
    """:func:`~storage.incremental.fold_rows` of the samples ``new`` (asset -> its samples in the order written,
    none before the asset's ``folded_ns``) of ``member``: the changed rows as tuples, sorted by asset and hour, and
    the assets that need a recompute from raw with the hour to start at. Carries of those are left as they were."""
    changed: list[tuple[Any, ...]] = []
    redo: dict[Key, int] = {}
    for asset, found in new.items():
        if not found:
            continue
        key = (member, asset)
        samples = _dedupe(found)
        carry = carries.get(key)
        times = list(map(_TS, samples))
        first, newest = min(times), max(times)
        if carry is None:
            redo[key] = first // HOUR_NS * HOUR_NS
            continue
        folded_ns = carry.folded_ns
        if first < folded_ns:  # out of order (the keepers recompute such assets before they get here)
            redo[key] = (first - GAP_NS) // HOUR_NS * HOUR_NS
            continue
        if first == folded_ns:  # samples at the folded time: new ones are folded, those folded already left out
            kept: list[Sample] = []
            again = False
            for s in samples:
                if s.ts == folded_ns:
                    before = carry.edge.get(s.signal)
                    if before is not None:
                        if before != _edge_value(s):
                            again = True  # sent again with another value: the store holds the new one
                        continue
                kept.append(s)
            if again:
                redo[key] = (folded_ns - GAP_NS) // HOUR_NS * HOUR_NS
                continue
            samples = kept
        good = [s for s in samples if s.quality < _BAD]
        # most often all of an asset's new samples lie in one hour: then none needs its hour computed
        one_hour = first // HOUR_NS * HOUR_NS if first // HOUR_NS == newest // HOUR_NS else None
        d = _delta(carry, good, one_hour)
        missing = _merge(key, carry, good, d, changed)
        if missing is not None:
            redo[key] = missing
            continue
        if samples:  # (those left out at the folded time were its oldest: the newest stays)
            _advance(carry, samples, newest, d.series)
        else:
            prune_rows(carry, carry.folded_ns // HOUR_NS * HOUR_NS)
    changed.sort(key=lambda r: (r[1], r[3]))
    return changed, redo


def _merge(key: Key, carry: Carry, good: list[Sample], d: _Delta, changed: list[tuple[Any, ...]]) -> int | None:
    """Merge the contributions ``d`` of the good samples ``good`` into the carry's rows and append the changed rows
    to ``changed``; or return the earliest hour whose row the fold needs and the carry does not keep (nothing
    changed then)."""
    last_class = good[-1].asset_class if good else carry.asset_class
    targets: dict[int, Row] = {}
    missing: int | None = None
    hours = set(d.samples)
    hours.update(h for h, row in d.additive.items() if h not in hours and any(row))
    classes: dict[int, str] = {}
    for h in sorted(hours):
        cls = classes[h] = _class_of(h, d, carry, last_class)
        target = target_row(carry, h, gauges=h in d.gauges, asset_class=cls)
        if target is None:
            missing = h if missing is None else min(missing, h)
            continue
        targets[h] = target
    if missing is not None:
        return missing
    for h, t in targets.items():
        additive = d.additive.get(h)
        if additive is not None:
            for c, v in zip(_ADDITIVE, additive, strict=True):
                if v:
                    t[c] += v
        t["samples"] += d.samples.get(h, 0)
        t["asset_class"] = classes[h]
        for sig, (s, n, lo, hi) in d.gauges.get(h, {}).items():
            merge_gauge(t, sig, s, n, lo, hi)
    carry.rows.update(targets)
    changed.extend((key[0], key[1], t["asset_class"], h, *row_values(t)) for h, t in targets.items())
    return None


def _advance(carry: Carry, samples: Sequence[Sample], newest: int, series: dict[str, list[Sample]]) -> None:
    """Move the carry past ``samples`` (all folded, the newest at ``newest``; ``series``: the good counter and state
    samples among them by signal, sorted by time): newest time and its samples, last good counter and state
    samples, the asset class, the rows it keeps."""
    old_open = carry.folded_ns // HOUR_NS * HOUR_NS
    at_latest = {s.signal: _edge_value(s) for s in samples if s.ts == newest}
    for sig, found in series.items():
        last = found[-1]
        if sig in COUNTER_COLUMNS:
            carry.counters[sig] = (last.ts, float(last.value))
        else:
            carry.states[sig] = (last.ts, str(last.value))
    if newest > carry.folded_ns:
        carry.edge = at_latest
    elif newest == carry.folded_ns:
        carry.edge.update(at_latest)
    carry.folded_ns = max(carry.folded_ns, newest)
    carry.asset_class = samples[-1].asset_class
    prune_rows(carry, old_open)
