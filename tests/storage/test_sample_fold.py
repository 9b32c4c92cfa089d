"""The sample-by-sample fold (storage.sample_fold) makes the decisions of fold_rows and gives its rows and carries.

Every fold of the keeper of ``test_incremental`` runs both: fold_rows on a copy of the carries, fold_samples on
the carries themselves, from the same new samples (the frame's rows as wire samples, in the frame's order).
Redo decisions and the rows' keys, classes and counts must be equal; floats equal up to the rounding of sums
taken in another order; and the rollups at the end equal compute_rollups over all raw data.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from storage import compute_rollups
from storage.base import samples_frame
from storage.incremental import Carry, Key, fold_rows, rows_frame
from storage.sample_fold import fold_samples
from wire import Sample

from .test_incremental import STATES, T0, MiniKeeper, S, streams


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return _close(dataclasses.asdict(a), dataclasses.asdict(b))  # type: ignore[arg-type]
    return bool(a == b) and type(a) is type(b)


def as_samples(new: pl.DataFrame) -> dict[str, dict[str, list[Sample]]]:
    """member -> asset -> the frame's rows as wire samples, in the frame's order."""
    out: dict[str, dict[str, list[Sample]]] = {}
    for m, a, cls, sig, ts, v, text, q in new.select(
        "member", "asset", "asset_class", "signal", "ts", "value", "text", "quality"
    ).iter_rows():
        value = text if text is not None else v
        out.setdefault(m, {}).setdefault(a, []).append(Sample(int(ts), a, cls, sig, value, int(q)))
    return out


def _checked(carries: dict[Key, Carry], new: pl.DataFrame) -> tuple[pl.DataFrame, dict[Key, int]]:
    twin = copy.deepcopy(carries)
    expected_rows, expected_redo = fold_rows(twin, new)
    rows: list[tuple[Any, ...]] = []
    redo: dict[Key, int] = {}
    for member, by_asset in sorted(as_samples(new).items()):
        r, d = fold_samples(carries, member, by_asset)
        rows += r
        redo.update(d)
    assert redo == expected_redo
    assert [(r[0], r[1], r[2], r[3], r[-1]) for r in rows] == [(r[0], r[1], r[2], r[3], r[-1]) for r in expected_rows]
    assert _close(rows, expected_rows), (rows, expected_rows)
    assert carries.keys() == twin.keys()
    for key, carry in carries.items():
        assert _close(carry, twin[key]), (key, carry, twin[key])
    for row in rows:  # as fold_rows gives them: ints for hour and samples, floats (or None) in between
        assert {type(v) for v in (row[3], row[-1])} == {int} and {type(v) for v in row[4:-1]} <= {float, type(None)}
    return rows_frame(rows), redo


class SampleFoldKeeper(MiniKeeper):
    fold = staticmethod(_checked)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams(), data=st.data())
def test_fold_samples_decides_and_folds_as_fold_rows(raw: pl.DataFrame, data: st.DataObject) -> None:
    # an asset's class may change (reconfigured): fold_samples takes a row's class as fold_rows does (which
    # may differ from a recompute's within the hour of the change, so only the two folds are compared then)
    varied = data.draw(st.booleans())
    if varied:
        classes = data.draw(st.lists(st.sampled_from(["press", "laser"]), min_size=raw.height, max_size=raw.height))
        raw = raw.with_columns(pl.Series("asset_class", classes, dtype=pl.String))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(raw.height - 1, 1)), max_size=8)))
    chunks = [raw.slice(lo, hi - lo) for lo, hi in itertools.pairwise([0, *cuts, raw.height]) if hi > lo]
    if len(chunks) > 2 and data.draw(st.booleans()):  # out of order: the keeper recomputes, the fold never sees it
        i = data.draw(st.integers(0, len(chunks) - 2))
        chunks[i], chunks[i + 1] = chunks[i + 1], chunks[i]
    keeper = SampleFoldKeeper()
    for chunk in chunks:
        keeper.write(chunk)
        if data.draw(st.booleans()):
            keeper.refresh()
        if data.draw(st.integers(0, 5)) == 0:  # a redelivery of the newest chunk
            keeper.write(chunk)
    keeper.refresh()
    if not varied:
        assert_frame_equal(keeper.frame(), compute_rollups(raw), check_exact=False, rel_tol=1e-9, abs_tol=1e-6)


def _samples(n: int, *, asset: str = "a-00000001") -> list[Sample]:
    out: list[Sample] = []
    energy = 0.0
    for i in range(n):
        ts = T0 + 50 * 60 * S + i * 10 * S
        energy += 0.5
        out += [
            Sample(ts, asset, "press", "energy_kwh", energy),
            Sample(ts, asset, "press", "state", STATES[(i // 20) % 3]),
            Sample(ts, asset, "press", "power_kw", float(i % 17)),
        ]
    return out


def test_a_batch_sent_twice_counts_once() -> None:
    """The batch log may hold a redelivered batch twice: a store keeps one sample per series and time."""
    raw = _samples(100)
    keeper = MiniKeeper()
    keeper.write(_frame(raw[:30]))
    keeper.refresh()  # the first chunk is recomputed: the carry
    carries = keeper.carries
    twice = raw[30:] + raw[30:]
    rows, redo = fold_samples(carries, "m-aaaaaa", {"a-00000001": twice})
    assert redo == {}
    expected = compute_rollups(_frame(raw))
    last = {r[3]: r for r in rows}
    for r in expected.with_columns(pl.col("hour").cast(pl.Int64)).iter_rows(named=True):
        if r["hour"] in last:
            assert last[r["hour"]][-1] == r["samples"]


@pytest.mark.parametrize("changed", [False, True])
def test_a_sample_at_the_folded_time_again(changed: bool) -> None:
    """The newest sample sent again unchanged is left out; with another value, the asset is recomputed."""
    raw = _samples(10)
    keeper = MiniKeeper()
    keeper.write(_frame(raw))
    keeper.refresh()
    carry = keeper.carries[("m-aaaaaa", "a-00000001")]
    before = copy.deepcopy(carry)
    last = raw[-1]
    again = Sample(last.ts, last.asset, last.asset_class, last.signal, float(last.value) + changed)
    rows, redo = fold_samples(keeper.carries, "m-aaaaaa", {"a-00000001": [again]})
    assert rows == []
    if changed:
        assert redo == {("m-aaaaaa", "a-00000001"): (last.ts - 300 * S) // (3600 * S) * (3600 * S)}
        assert carry == before
    else:
        assert redo == {}
        assert carry.folded_ns == before.folded_ns


def _frame(samples: list[Sample]) -> pl.DataFrame:
    return samples_frame("m-aaaaaa", samples)


def test_samples_before_the_folded_time_send_the_asset_to_a_recompute() -> None:
    raw = _samples(10)
    keeper = MiniKeeper()
    keeper.write(_frame(raw[15:]))
    keeper.refresh()
    carry = copy.deepcopy(keeper.carries[("m-aaaaaa", "a-00000001")])
    rows, redo = fold_samples(keeper.carries, "m-aaaaaa", {"a-00000001": raw[:15]})
    assert (rows, redo) == ([], {("m-aaaaaa", "a-00000001"): (raw[0].ts - 300 * S) // (3600 * S) * (3600 * S)})
    assert keeper.carries[("m-aaaaaa", "a-00000001")] == carry
