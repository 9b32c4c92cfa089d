"""Hourly rollups from raw samples: counters with resets, states across hour boundaries and gaps, gauges."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.rollups import HOUR_NS, MAX_STATE_GAP_S, compute_rollups

T0 = 1_700_000_000 // 3600 * 3600 * 10**9
S = 10**9


def raw(rows: list[tuple[str, int, float | None, str | None]], quality: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "member": ["m-aaaaaa"] * len(rows),
            "asset": ["a-00000000"] * len(rows),
            "asset_class": ["press"] * len(rows),
            "signal": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "text": [r[3] for r in rows],
            "quality": [quality] * len(rows),
        },
        schema_overrides={"value": pl.Float64, "text": pl.String, "quality": pl.UInt8, "ts": pl.Int64},
    )


def by_hour(frame: pl.DataFrame, column: str) -> list[float]:
    return frame.sort("hour")[column].to_list()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([100.0, 110.0, 125.0], [25.0]),  # plain increases
        ([100.0, 110.0, 3.0, 8.0], [18.0]),  # reset to 0 then 3: 10 + 3 + 5
        ([100.0], [0.0]),  # first sample has no predecessor
        ([100.0, 100.0, 100.0], [0.0]),  # standing still
    ],
)
def test_counter_deltas_and_resets(values: list[float], expected: list[float]) -> None:
    rows = [("energy_kwh", T0 + i * 60 * S, v, None) for i, v in enumerate(values)]
    assert by_hour(compute_rollups(raw(rows)), "energy_kwh") == expected


def test_counter_increase_across_a_gap_is_booked_once_to_the_later_hour() -> None:
    rows = [("parts_total", T0, 1000.0, None), ("parts_total", T0 + 3 * HOUR_NS + S, 1060.0, None)]
    out = compute_rollups(raw(rows))
    assert by_hour(out, "parts_total") == [0.0, 60.0]


def test_state_split_at_hour_and_spilling_into_an_hour_without_samples() -> None:
    rows = [
        ("state", T0, None, "running"),
        ("state", T0 + HOUR_NS - 60 * S, None, "running"),
        ("state", T0 + 2 * HOUR_NS + 10 * S, None, "idle"),
    ]
    out = compute_rollups(raw(rows))
    assert by_hour(out, "seconds_running") == [MAX_STATE_GAP_S + 60.0, MAX_STATE_GAP_S - 60.0, 0.0]
    assert by_hour(out, "samples") == [2, 0, 1]


def test_bad_quality_is_ignored() -> None:
    good = compute_rollups(raw([("power_kw", T0, 10.0, None)]))
    bad = compute_rollups(raw([("power_kw", T0, 10.0, None)], quality=2))
    assert good["power_kw_mean"].to_list() == [10.0]
    assert bad.height == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.sampled_from(["running", "idle", "down"])), min_size=2, max_size=60))
def test_state_seconds_never_exceed_the_covered_time(steps: list[tuple[int, str]]) -> None:
    ts, rows = T0, []
    for gap, state in steps:
        rows.append(("state", ts, None, state))
        ts += gap * S
    out = compute_rollups(raw(rows))
    total = sum(out[f"seconds_{s}"].sum() for s in ("running", "idle", "down", "setup", "off"))
    span = (rows[-1][1] - rows[0][1]) / S
    assert total <= span + 1e-6
    assert all(v <= 3600.0 + 1e-6 for s in ("running", "idle", "down") for v in out[f"seconds_{s}"].to_list())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_counter_deltas_are_never_negative(values: list[float]) -> None:
    rows = [("energy_kwh", T0 + i * 600 * S, v, None) for i, v in enumerate(values)]
    out = compute_rollups(raw(rows))
    assert (out["energy_kwh"] >= 0).all()
