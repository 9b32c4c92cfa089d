"""Late samples recompute only their windows (storage.late), and the rows equal compute_rollups over all samples.

A small keeper makes the stores' decisions: an asset with a carry whose pending samples come (partly) before its
folded time recomputes each cluster of late samples over its window and leaves its carry as it is, when
window_end bounds it; it folds the rest; otherwise it recomputes from the late hour on, as before.
"""

from __future__ import annotations

import functools

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from storage import compute_rollups
from storage.base import RAW_SCHEMA
from storage.incremental import Key
from storage.late import (
    CLUSTER_GAP_NS,
    LateRange,
    late_ranges,
    read_end,
    recompute_windows,
    window_end,
    window_rows,
    worth_windows,
)
from storage.rollups import GAP_NS, HOUR_NS, LOOKBACK_NS
from wire import Sample

from .test_incremental import REASONS, STATES, MiniKeeper, draw_value

S = 10**9
T0 = 1_767_571_200 * S  # an hour start
KEY = ("m-aaaaaa", "a-00000001")
_CLOSE = {"check_exact": False, "rel_tol": 1e-9, "abs_tol": 1e-6}


def _samples(frame: pl.DataFrame) -> list[Sample]:
    return [
        Sample(r["ts"], r["asset"], r["asset_class"], r["signal"], r["text"] if r["value"] is None else r["value"])
        for r in frame.iter_rows(named=True)
    ]


class LateKeeper(MiniKeeper):
    """MiniKeeper with the late path of both stores' keepers."""

    def __init__(self, *, read_back: bool = False) -> None:
        super().__init__()
        self.windows = 0
        self.window_rows_read = 0
        #: as for a batch another writer wrote: the late samples not known, only the pending range
        self.read_back = read_back

    def _window(self, key: Key, r: LateRange) -> bool:
        raw = self.raw.filter((pl.col("member") == key[0]) & (pl.col("asset") == key[1]))

        def preds(before: int) -> pl.DataFrame:
            return (
                raw.filter(
                    (pl.col("ts") < before)
                    & (pl.col("ts") >= before - LOOKBACK_NS)
                    & (pl.col("quality") < 2)
                    & pl.col("signal").is_in(["energy_kwh", "parts_total", "parts_scrap_total", *_STATE_SIGNALS])
                )
                .sort("ts")
                .group_by("signal", maintain_order=True)
                .last()
                .select(list(RAW_SCHEMA))
            )

        start = r.start  # not widened: see storage.late
        p = preds(start)
        end_ns = read_end(r)
        span = raw.filter((pl.col("ts") >= start) & (pl.col("ts") < end_ns))
        end = window_end(span, r, self.carries[key], end_ns)
        if end is None:
            return False
        rows = window_rows(pl.concat([p, span]), start, end, end_ns)
        for k in [k for k in self.rows if k[:2] == key and start <= k[2] < end]:
            del self.rows[k]
        self._put(rows)
        self.windows += 1
        self.window_rows_read += span.height
        return True

    def refresh(self) -> None:
        if not self.pending:
            return
        chunk = pl.concat(self.pending)
        late_keys = []
        for m, a in chunk.select("member", "asset").unique().iter_rows():
            carry = self.carries.get((m, a))
            mine = chunk.filter((pl.col("member") == m) & (pl.col("asset") == a))
            if carry is None or int(mine["ts"].min()) >= carry.folded_ns:  # type: ignore[arg-type]
                continue
            if self.read_back:
                lo, hi = int(mine["ts"].min()), int(mine["ts"].max())  # type: ignore[arg-type]
                ranges = [LateRange(lo, hi, None)] if hi < carry.folded_ns else []
                if not ranges:
                    continue
            else:
                ranges = late_ranges(_samples(mine), carry.folded_ns)
            if recompute_windows(ranges, carry.folded_ns, functools.partial(self._window, (m, a))):
                late_keys.append((m, a, carry.folded_ns))
        if late_keys:  # the rest of those assets' samples is folded; their late ones are done
            keep = pl.lit(True)
            for m, a, folded in late_keys:
                keep = keep & ~((pl.col("member") == m) & (pl.col("asset") == a) & (pl.col("ts") < folded))
            self.pending = [chunk.filter(keep)] if chunk.filter(keep).height else []
        super().refresh()


_STATE_SIGNALS = ("state", "downtime_reason")


@st.composite
def long_streams(draw: st.DrawFn) -> pl.DataFrame:
    """One asset over about ten hours: counters with resets, states with gaps, gauges, some of bad quality."""
    rows: list[dict[str, object]] = []
    ts = T0 + draw(st.integers(0, 3000)) * S
    energy = 0.0
    for _ in range(draw(st.integers(20, 120))):
        signal = draw(st.sampled_from(["energy_kwh", "parts_total", "state", "downtime_reason", "power_kw"]))
        ts += draw(st.sampled_from([0, 1, 60, 299, 301, 900, 1700])) * S + draw(st.integers(0, 999))
        value, text, energy = draw_value(draw, signal, energy)
        rows.append(
            {"member": KEY[0], "asset": KEY[1], "asset_class": "press", "signal": signal, "ts": ts}
            | {"value": value, "text": text, "quality": draw(st.sampled_from([0, 0, 0, 1, 2]))}
        )
    return pl.DataFrame(rows, schema=RAW_SCHEMA).unique(["signal", "ts"], keep="last").sort("ts")


def _late_then_live(raw: pl.DataFrame, data: st.DataObject, *, read_back: bool) -> None:
    cut = data.draw(st.integers(max(1, raw.height // 2), raw.height))
    old, live = raw.slice(0, cut), raw.slice(cut)
    times = old["ts"].to_list()
    newest = int(old["ts"].max())  # type: ignore[arg-type]
    # read back: one backfill, its samples within half an hour (else mostly wider than a window can be)
    lo = data.draw(st.integers(T0, newest)) if read_back else T0
    hi = min(newest, lo + 1800 * S) if read_back else newest
    late_rows = []
    for _ in range(data.draw(st.integers(1, 4))):
        near = [t for t in times if lo <= t <= hi]
        at_kept = bool(near) and data.draw(st.booleans())  # at the time of a kept sample: another value
        ts = data.draw(st.sampled_from(near)) if at_kept else data.draw(st.integers(lo, hi))
        signal = data.draw(st.sampled_from(["energy_kwh", "parts_total", "state", "downtime_reason", "power_kw"]))
        text = data.draw(st.sampled_from(STATES)) if signal == "state" else None
        text = data.draw(st.sampled_from(REASONS)) if signal == "downtime_reason" else text
        value = None if text is not None else data.draw(st.integers(0, 4000)) / 8
        late_rows.append(
            {"member": KEY[0], "asset": KEY[1], "asset_class": "press", "signal": signal, "ts": ts}
            | {"value": value, "text": text, "quality": data.draw(st.sampled_from([0, 0, 1, 2]))}
        )
    late = pl.DataFrame(late_rows, schema=RAW_SCHEMA).unique(["signal", "ts"], keep="last")
    keeper = LateKeeper(read_back=read_back)
    keeper.write(old)
    keeper.refresh()
    keeper.write(late)
    if live.height and data.draw(st.booleans()):  # late and live samples pending together (read back: no window)
        keeper.write(live.slice(0, 1))
    keeper.refresh()
    event(f"windows: {keeper.windows > 0}")
    assert_frame_equal(keeper.frame(), compute_rollups(keeper.raw), **_CLOSE)
    if live.height:
        keeper.write(live)
        keeper.refresh()
        assert_frame_equal(keeper.frame(), compute_rollups(keeper.raw), **_CLOSE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=long_streams(), data=st.data())
def test_late_windows_give_the_rows_of_a_full_recompute(raw: pl.DataFrame, data: st.DataObject) -> None:
    """Written in order and refreshed, then late samples (new ones, and some at the time of one kept, with
    another value), then live ones: every row equals compute_rollups over all samples, and so does every row
    after the next live chunk (the carry the window left alone still folds right)."""
    _late_then_live(raw, data, read_back=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=long_streams(), data=st.data())
def test_late_windows_of_a_batch_read_back_give_the_rows_of_a_full_recompute(
    raw: pl.DataFrame, data: st.DataObject
) -> None:
    """The same for a backfill another writer wrote: only its range is known, its signals are those read."""
    _late_then_live(raw, data, read_back=True)


def _day(late_at: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An asset sending energy, state and power every 20 s for a day, and one energy sample ``late_at``."""
    rows = []
    for i in range(24 * 180):
        ts = T0 + i * 20 * S
        rows += [
            ("energy_kwh", ts, i * 0.25, None),
            ("state", ts, None, STATES[(i // 90) % 3]),
            ("power_kw", ts, float(i % 13), None),
        ]
    frame = pl.DataFrame(
        [
            {"member": KEY[0], "asset": KEY[1], "asset_class": "press", "signal": s, "ts": t, "value": v}
            | {"text": x, "quality": 0}
            for s, t, v, x in rows
        ],
        schema=RAW_SCHEMA,
    )
    late = frame.filter((pl.col("signal") == "energy_kwh") & (pl.col("ts") == late_at)).with_columns(
        pl.col("value") + 1000.0
    )
    return frame, late


def _written_then_late(base: pl.DataFrame, late: pl.DataFrame) -> LateKeeper:
    """A keeper that was given ``base`` and refreshed, then ``late`` and refreshed; its rows equal a full recompute."""
    keeper = LateKeeper()
    keeper.write(base)
    keeper.refresh()
    keeper.write(late)
    keeper.refresh()
    assert_frame_equal(keeper.frame(), compute_rollups(keeper.raw), **_CLOSE)
    return keeper


def test_a_sample_a_day_late_recomputes_a_window_of_hours_not_the_day() -> None:
    frame, late = _day(T0 + 3 * HOUR_NS + 600 * S)  # 03:10 on a day up to 23:59:40
    keeper = _written_then_late(frame, late)
    assert (keeper.recomputes, keeper.windows) == (1, 1)  # the one recompute: the day's first refresh
    assert keeper.window_rows_read <= 3 * 3 * 180 + 3 * 15  # three hours of three signals, and a few predecessors


def test_late_samples_hours_apart_are_two_windows() -> None:
    frame, late = _day(T0 + 3 * HOUR_NS)
    _, other = _day(T0 + 15 * HOUR_NS)
    assert late_ranges(_samples(pl.concat([late, other])), T0 + 24 * HOUR_NS) == [
        LateRange(T0 + 3 * HOUR_NS, T0 + 3 * HOUR_NS, frozenset({"energy_kwh"})),
        LateRange(T0 + 15 * HOUR_NS, T0 + 15 * HOUR_NS, frozenset({"energy_kwh"})),
    ]
    keeper = _written_then_late(frame, pl.concat([late, other]))
    assert (keeper.recomputes, keeper.windows) == (1, 2)


def test_clusters_split_only_beyond_the_cluster_gap() -> None:
    samples = [
        Sample(T0 + d, "a-00000001", "press", "power_kw", 1.0) for d in (0, CLUSTER_GAP_NS, 2 * CLUSTER_GAP_NS + 1)
    ]
    assert [(r.lo - T0, r.hi - T0) for r in late_ranges(samples, T0 + 10 * CLUSTER_GAP_NS)] == [
        (0, CLUSTER_GAP_NS),
        (2 * CLUSTER_GAP_NS + 1, 2 * CLUSTER_GAP_NS + 1),
    ]
    assert late_ranges(samples, T0) == []  # nothing before the folded time: nothing late
    assert late_ranges(samples, T0 + 1) == [LateRange(T0, T0, frozenset({"power_kw"}))]


def test_a_late_sample_newer_than_its_series_newest_is_not_bounded() -> None:
    """A counter that went quiet an hour ago and now gets a sample from after its last one: that sample is the
    newest of its series, which the carry holds, so the window cannot leave the carry alone."""
    frame, _ = _day(T0)
    quiet = frame.filter(~((pl.col("signal") == "energy_kwh") & (pl.col("ts") > T0 + 20 * HOUR_NS)))
    late = frame.filter((pl.col("signal") == "energy_kwh") & (pl.col("ts") == T0 + 21 * HOUR_NS))
    keeper = LateKeeper()
    keeper.write(quiet)
    keeper.refresh()
    carry = keeper.carries[KEY]
    r = late_ranges(_samples(late), carry.folded_ns)[0]
    span = keeper.raw.filter(pl.col("ts") >= r.start)
    assert window_end(span, r, carry, read_end(r)) is None
    keeper.write(late)
    keeper.refresh()
    assert (keeper.recomputes, keeper.windows) == (2, 0)
    assert_frame_equal(keeper.frame(), compute_rollups(keeper.raw), **_CLOSE)


def test_a_window_reaching_a_kept_hour_is_not_bounded() -> None:
    frame, _ = _day(T0)
    folded = int(frame["ts"].max())  # type: ignore[arg-type]
    late = frame.filter((pl.col("signal") == "power_kw") & (pl.col("ts") == folded - HOUR_NS // 2))
    keeper = LateKeeper()
    keeper.write(frame)
    keeper.refresh()
    carry = keeper.carries[KEY]
    r = late_ranges(_samples(late.with_columns(pl.col("value") + 1)), carry.folded_ns)[0]
    span = keeper.raw.filter(pl.col("ts") >= r.start)
    assert window_end(span, r, carry, read_end(r)) is None
    assert GAP_NS < HOUR_NS // 2


def test_a_late_state_near_the_end_of_an_hour_recomputes_the_next_hour_too() -> None:
    """A state sample at 10:58:30 amid a silence of the state holds until 11:03:30: its window takes hour 11."""
    frame, _ = _day(T0)
    gap = (pl.col("ts") > T0 + 10 * HOUR_NS + 3480 * S) & (pl.col("ts") < T0 + 11 * HOUR_NS + 600 * S)
    quiet = frame.filter(~((pl.col("signal") == "state") & gap))
    late = quiet.filter((pl.col("signal") == "state") & (pl.col("ts") == T0 + 10 * HOUR_NS + 3460 * S))
    late = late.with_columns(pl.col("ts") + 50 * S, pl.lit("down").alias("text"))
    keeper = _written_then_late(quiet, late)
    assert (keeper.recomputes, keeper.windows) == (1, 1)


def test_a_late_counter_sample_recomputes_the_hour_of_its_series_next_sample() -> None:
    """An energy sample at 10:50 whose series next reports at 11:20: the increase of 11:20 changes too."""
    frame, _ = _day(T0)
    gap = (pl.col("ts") > T0 + 10 * HOUR_NS + 2400 * S) & (pl.col("ts") < T0 + 11 * HOUR_NS + 1200 * S)
    quiet = frame.filter(~((pl.col("signal") == "energy_kwh") & gap))
    late = quiet.filter((pl.col("signal") == "power_kw") & (pl.col("ts") == T0 + 10 * HOUR_NS + 3000 * S))
    late = late.with_columns(pl.lit("energy_kwh").alias("signal"), pl.lit(1e6).alias("value"))
    keeper = _written_then_late(quiet, late)
    assert (keeper.recomputes, keeper.windows) == (1, 1)


def test_a_late_state_before_a_long_silence_holds_for_the_state_gap_only() -> None:
    """A state sample at 09:59:50 before four hours without a state: its successor lies beyond what the window
    reads, and it still holds for the 300 s of the state gap, into hour 10, as in the whole series."""
    frame, _ = _day(T0)
    silence = (pl.col("ts") >= T0 + 10 * HOUR_NS) & (pl.col("ts") < T0 + 14 * HOUR_NS)
    quiet = frame.filter(~((pl.col("signal") == "state") & silence))
    late = quiet.filter((pl.col("signal") == "state") & (pl.col("ts") == T0 + 10 * HOUR_NS - 20 * S))
    late = late.with_columns(pl.col("ts") + 10 * S, pl.lit("down").alias("text"))
    keeper = _written_then_late(quiet, late)
    assert (keeper.recomputes, keeper.windows) == (1, 1)


def test_windows_are_taken_only_where_they_read_less_than_the_recompute_up_to_now() -> None:
    folded = T0 + 24 * HOUR_NS
    one = [LateRange(T0 + 3 * HOUR_NS, T0 + 3 * HOUR_NS, frozenset({"power_kw"}))]
    assert worth_windows(one, folded)  # about four hours against 21
    recent = [LateRange(folded - 3 * HOUR_NS, folded - 3 * HOUR_NS, frozenset({"power_kw"}))]
    assert not worth_windows(recent, folded)  # about four hours against three
    spread = [LateRange(T0 + h * HOUR_NS, T0 + h * HOUR_NS, frozenset({"power_kw"})) for h in range(0, 24, 3)]
    assert not worth_windows(spread, folded)  # eight windows of about four hours against a day
    assert worth_windows(spread[:4], folded)


def test_late_samples_spread_over_the_day_are_recomputed_at_once() -> None:
    frame, _ = _day(T0)
    late = pl.concat([_day(T0 + h * HOUR_NS + 600 * S)[1] for h in range(0, 24, 3)])
    keeper = _written_then_late(frame, late)
    assert (keeper.recomputes, keeper.windows) == (2, 0)
