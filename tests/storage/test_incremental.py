"""Incremental rollups (storage.incremental) equal compute_rollups over all raw data, whatever the chunking.

A small keeper runs the same decisions as the stores' keepers: a chunk whose samples all come after what
was folded in (or at it, of other signals) is folded; an asset without a carry, one whose chunk starts before its
folded time (out of order), or one whose fold needs an hour it does not keep, is recomputed from raw over a window
from that hour, widened back to a state sample that had no successor yet (the rows before it stay), and
gets a fresh carry.
"""

from __future__ import annotations

import copy
import itertools

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from storage import ROLLUP_SCHEMA, compute_rollups
from storage.base import RAW_SCHEMA
from storage.incremental import Carry, Key, carry_from_raw, fold, fold_rows, rows_frame, widen_start
from storage.influx.lineprotocol import encode_rows
from storage.influx.rollup_points import rollup_lines
from storage.rollups import GAP_NS, HOUR_NS

S = 10**9
T0 = 1_767_571_200 * S  # an hour start
STATES = ("running", "idle", "down")
REASONS = ("none", "maintenance", "material")


class MiniKeeper:
    fold = staticmethod(fold)

    def __init__(self) -> None:
        self.raw = pl.DataFrame(schema=RAW_SCHEMA)
        self.pending: list[pl.DataFrame] = []
        self.rows: dict[tuple[str, str, int], dict[str, object]] = {}
        self.carries: dict[Key, Carry] = {}
        self.recomputes = 0
        self.folds = 0

    def write(self, chunk: pl.DataFrame) -> None:
        # a store keeps one sample per series and time, the last written
        self.raw = pl.concat([self.raw, chunk]).unique(
            ["member", "asset", "signal", "ts"], keep="last", maintain_order=True
        )
        self.pending.append(chunk)

    def _put(self, frame: pl.DataFrame) -> None:
        for r in frame.with_columns(pl.col("hour").cast(pl.Int64)).iter_rows(named=True):
            self.rows[(r["member"], r["asset"], r["hour"])] = r

    def _recompute(self, key: Key, start: int) -> None:
        self.recomputes += 1
        raw = self.raw.filter((pl.col("member") == key[0]) & (pl.col("asset") == key[1]))
        preds = (
            raw.filter((pl.col("ts") < start) & (pl.col("quality") < 2))
            .sort("ts")
            .group_by("signal")
            .agg(pl.col("ts").last())
        )
        start = widen_start(start, preds)
        fresh = compute_rollups(raw).filter(pl.col("hour").cast(pl.Int64) >= start)
        for k in [k for k in self.rows if k[:2] == key and k[2] >= start]:
            del self.rows[k]
        self._put(fresh)
        self.carries.update(carry_from_raw(raw, fresh, start))

    def refresh(self) -> None:
        if not self.pending:
            return
        dirty = pl.concat(self.pending).group_by(["member", "asset"]).agg(pl.col("ts").min())
        self.pending.clear()
        fallback: dict[Key, int] = {}
        incremental: list[pl.DataFrame] = []
        for m, a, lo in dirty.iter_rows():
            carry = self.carries.get((m, a))
            if carry is None or lo < carry.folded_ns:
                fallback[(m, a)] = (lo - GAP_NS) // HOUR_NS * HOUR_NS
            else:
                incremental.append(
                    self.raw.filter(
                        (pl.col("member") == m) & (pl.col("asset") == a) & (pl.col("ts") >= carry.folded_ns)
                    )
                )
        if incremental:
            self.folds += 1
            rows, redo = self.fold(self.carries, pl.concat(incremental))
            self._put(rows)
            for key, hour in redo.items():
                fallback[key] = min(hour, fallback.get(key, hour))
        for key, start in fallback.items():
            self._recompute(key, start)

    def frame(self) -> pl.DataFrame:
        if not self.rows:
            return pl.DataFrame(schema=ROLLUP_SCHEMA)
        return (
            pl.DataFrame(list(self.rows.values()), schema={**ROLLUP_SCHEMA, "hour": pl.Int64()})
            .with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))
            .sort(["member", "asset", "hour"])
        )


def draw_value(draw: st.DrawFn, signal: str, energy: float) -> tuple[float | None, str | None, float]:
    """A value of ``signal`` (value, text), and the counter's new reading: ``energy`` grown, or reset to 0."""
    if signal in ("energy_kwh", "parts_total"):
        energy = 0.0 if draw(st.integers(0, 9)) == 0 else energy + draw(st.integers(0, 50)) / 4
        return energy, None, energy
    if signal == "state":
        return None, draw(st.sampled_from(STATES)), energy
    if signal == "downtime_reason":
        return None, draw(st.sampled_from(REASONS)), energy
    return draw(st.integers(-400, 400)) / 8, None, energy


@st.composite
def streams(draw: st.DrawFn) -> pl.DataFrame:
    """Samples of two assets over about three hours: counters with resets, state and downtime reason with gaps
    longer than the state gap (some across hour boundaries), gauges, some samples of bad quality."""
    rows: list[dict[str, object]] = []
    for asset in ("a-00000001", "a-00000002")[: draw(st.integers(1, 2))]:
        ts = T0 + draw(st.integers(0, 3000)) * S
        energy = 0.0
        at_ts: set[str] = set()
        for _ in range(draw(st.integers(1, 40))):
            signal = draw(st.sampled_from(["energy_kwh", "parts_total", "state", "downtime_reason", "power_kw"]))
            # several signals of one asset often share a timestamp (a chunk may end amid them)
            if signal in at_ts or draw(st.integers(0, 2)) != 0:
                ts += draw(st.sampled_from([1, 7, 60, 299, 301, 900, 1700])) * S + draw(st.integers(0, 999))
                at_ts = set()
            at_ts.add(signal)
            value, text, energy = draw_value(draw, signal, energy)
            rows.append(
                {
                    "member": "m-aaaaaa",
                    "asset": asset,
                    "asset_class": "press",
                    "signal": signal,
                    "ts": ts,
                    "value": value,
                    "text": text,
                    "quality": draw(st.sampled_from([0, 0, 0, 1, 2])),
                }
            )
    return pl.DataFrame(rows, schema=RAW_SCHEMA).sort("ts")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams(), data=st.data())
def test_incremental_equals_full_recompute(raw: pl.DataFrame, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(raw.height - 1, 1)), max_size=8)))
    bounds = [0, *cuts, raw.height]
    chunks = [raw.slice(lo, hi - lo) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    # some chunks out of order: a later chunk is written before an earlier one
    if len(chunks) > 2 and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(chunks) - 2))
        chunks[i], chunks[i + 1] = chunks[i + 1], chunks[i]
    keeper = MiniKeeper()
    for chunk in chunks:
        keeper.write(chunk)
        if data.draw(st.booleans()):
            keeper.refresh()
    keeper.refresh()
    expected = compute_rollups(raw)
    assert_frame_equal(keeper.frame(), expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-6)


def test_folds_in_order_chunks_without_recomputing() -> None:
    """Once an asset has a carry, chunks in order are folded, never recomputed; the rows still match."""
    rows = []
    energy = 0.0
    for i in range(600):
        ts = T0 + 50 * 60 * S + i * 10 * S  # 10:50 .. 12:30: two hour boundaries
        energy += 0.5
        rows += [
            ("energy_kwh", ts, energy, None),
            ("state", ts, None, STATES[(i // 20) % 3]),
            ("power_kw", ts, float(i % 17), None),
        ]
    raw = pl.DataFrame(
        [
            {"member": "m-aaaaaa", "asset": "a-00000001", "asset_class": "press", "signal": s, "ts": t, "value": v}
            | {"text": x, "quality": 0}
            for s, t, v, x in rows
        ],
        schema=RAW_SCHEMA,
    )
    for size in (90, 100):  # chunks of whole timestamps, and chunks that end amid one timestamp's samples
        keeper = MiniKeeper()
        for lo in range(0, raw.height, size):
            keeper.write(raw.slice(lo, size))
            keeper.refresh()
        assert keeper.recomputes == 1  # the first chunk: no carry yet
        assert keeper.folds == raw.height // size + (raw.height % size > 0) - 1
        assert_frame_equal(keeper.frame(), compute_rollups(raw), check_exact=False, rel_tol=1e-9, abs_tol=1e-6)


def test_a_sample_sent_again_at_the_folded_time_counts_once_and_a_corrected_one_is_recomputed() -> None:
    rows = [("energy_kwh", T0 + i * 10 * S, float(i)) for i in range(30)]
    raw = pl.DataFrame(
        [
            {"member": "m-aaaaaa", "asset": "a-00000001", "asset_class": "press", "signal": sig, "ts": t, "value": v}
            | {"text": None, "quality": 0}
            for sig, t, v in rows
        ],
        schema=RAW_SCHEMA,
    )
    keeper = MiniKeeper()
    keeper.write(raw.slice(0, 20))
    keeper.refresh()
    keeper.write(raw.slice(20, 10))
    keeper.refresh()
    keeper.write(raw.slice(29, 1))  # the newest sample again, unchanged (a redelivery): already folded in
    keeper.refresh()
    assert (keeper.recomputes, keeper.folds) == (1, 2)
    assert_frame_equal(keeper.frame(), compute_rollups(raw), check_exact=False, rel_tol=1e-9, abs_tol=1e-6)
    corrected = raw.slice(29, 1).with_columns(pl.lit(99.0).alias("value"))  # the same time, another value
    keeper.write(corrected)
    keeper.refresh()
    assert keeper.recomputes == 2
    expected = compute_rollups(pl.concat([raw.slice(0, 29), corrected]))
    assert_frame_equal(keeper.frame(), expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-6)


_TAGS = ("member", "asset", "asset_class")
_FIELDS = tuple(c for c in ROLLUP_SCHEMA if c not in (*_TAGS, "hour"))


def _frame_lines(frame: pl.DataFrame) -> bytes:
    """The InfluxDB keeper's rollup points of a frame of rows, as it wrote them from the frame."""
    tags = frame.select(_TAGS).rows()
    fields = frame.select(_FIELDS).rows()
    hours = frame.get_column("hour").cast(pl.Int64).to_list()
    return encode_rows("rollups", _TAGS, _FIELDS, zip(tags, fields, hours, strict=True))


def _checked_fold(carries: dict[Key, Carry], new: pl.DataFrame) -> tuple[pl.DataFrame, dict[Key, int]]:
    twin = copy.deepcopy(carries)
    frame, redo = fold(carries, new)
    rows, twin_redo = fold_rows(twin, new)
    assert (twin_redo, twin) == (redo, carries)
    assert_frame_equal(rows_frame(rows), frame, check_exact=True)
    assert rollup_lines(rows) == _frame_lines(frame)
    for row in rows:  # as a frame's rows give them: floats where the frame has Float64 (an int is written as 1i)
        assert {type(v) for v in (row[3], row[-1])} == {int} and {type(v) for v in row[4:-1]} <= {float, type(None)}
    return frame, redo


class CheckedKeeper(MiniKeeper):
    fold = staticmethod(_checked_fold)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams(), data=st.data())
def test_fold_rows_are_the_rows_of_fold_and_give_the_same_points(raw: pl.DataFrame, data: st.DataObject) -> None:
    """The InfluxDB keeper writes the tuples of fold_rows without a frame: the same rows, in the same order, the
    same carries, the same line protocol as the frame of fold."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(raw.height - 1, 1)), max_size=8)))
    keeper = CheckedKeeper()
    for lo, hi in itertools.pairwise([0, *cuts, raw.height]):
        keeper.write(raw.slice(lo, hi - lo))
        if data.draw(st.booleans()):
            keeper.refresh()
    keeper.refresh()
    assert_frame_equal(keeper.frame(), compute_rollups(raw), check_exact=False, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=100, deadline=None)
@given(raw=streams())
def test_rollups_without_gauges_are_the_rollups_with_the_gauge_columns_null(raw: pl.DataFrame) -> None:
    """A fold computes its delta without the gauge statistics (it merges them from sums of its own)."""
    gauges = [c for c in ROLLUP_SCHEMA if c.endswith(("_mean", "_min", "_max"))]
    expected = compute_rollups(raw).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in gauges)
    assert_frame_equal(compute_rollups(raw, gauges=False), expected, check_exact=True)
