"""Downtime by reason per asset: from ``downtime_reason`` samples through a real store, the rollups and
``/v1/kpis``; a reason holds like a machine state (at most 300 s without news), ``none`` is no downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.kpis import compute_kpis, downtime_by_reason
from storage import DOWNTIME_COLUMNS, DuckDBStore, RollupQuery, compute_rollups
from wire import DOWNTIME_REASONS, Sample

from .conftest import make_hub

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
ASSET, CLS = "a-0000d0d0", "press"
MEMBER = "m-a00001"


def _ts(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1e9)


def _samples() -> list[Sample]:
    """08:00 running; 08:10 down (tooling) until 08:25; running; 08:50 down (material) until 09:20; running to 09:30.

    The gateway repeats the reason at least once a minute (its heartbeat), as here every minute."""
    out: list[Sample] = []
    for minute in range(91):
        if 10 <= minute < 25:
            state, reason = "down", "tooling"
        elif 50 <= minute < 80:
            state, reason = "down", "material"
        else:
            state, reason = "running", "none"
        kw = {"ts": _ts(minute), "asset": ASSET, "asset_class": CLS}
        out.append(Sample(**kw, signal="state", value=state))  # type: ignore[arg-type]
        out.append(Sample(**kw, signal="downtime_reason", value=reason))  # type: ignore[arg-type]
    return out


def test_downtime_by_reason_from_raw_samples(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    try:
        store.write(MEMBER, _samples())
        rollups = store.query_rollups(RollupQuery())
    finally:
        store.close()
    hours = rollups.sort("hour")
    # 08:00-09:00: tooling 15 min, material 10 min (08:50-09:00); 09:00-10:00: material 20 min
    assert hours["seconds_down_tooling"].to_list() == [900.0, 0.0]
    assert hours["seconds_down_material"].to_list() == [600.0, 1200.0]
    assert hours["seconds_down"].to_list() == [1500.0, 1200.0]
    day = compute_kpis(rollups, "day", {}, 0.38).row(0, named=True)
    assert downtime_by_reason(day) == {"tooling": 900.0, "material": 1800.0}


def test_kpis_route_returns_downtime_by_reason(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    try:
        store.write(MEMBER, _samples())
        hub = make_hub(tmp_path, store)
        with hub.client:
            r = hub.client.get(
                "/v1/kpis?period=hour&start=2026-03-02T08:00:00Z&end=2026-03-02T10:00:00Z", headers=hub.auth("member_a")
            )
    finally:
        store.close()
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [row["downtime_s"] for row in rows] == [{"tooling": 900.0, "material": 600.0}, {"material": 1200.0}]
    schema = hub.app.openapi()["components"]["schemas"]["KpiRow"]["properties"]
    assert "downtime_s" in schema


def test_a_reason_without_news_holds_for_at_most_300_s() -> None:
    raw = pl.DataFrame(
        {
            "member": [MEMBER] * 2,
            "asset": [ASSET] * 2,
            "asset_class": [CLS] * 2,
            "signal": ["downtime_reason"] * 2,
            "ts": [_ts(0), _ts(30)],
            "value": [None, None],
            "text": ["breakdown", "none"],
            "quality": [0, 0],
        },
        schema_overrides={"value": pl.Float64, "text": pl.String, "quality": pl.UInt8, "ts": pl.Int64},
    )
    out = compute_rollups(raw)
    assert out["seconds_down_breakdown"].to_list() == [300.0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7200), st.sampled_from(DOWNTIME_REASONS)), min_size=1, max_size=40))
def test_downtime_never_exceeds_the_time_covered(events: list[tuple[int, str]]) -> None:
    """Per hour, downtime over all reasons is at most an hour; in total at most the span plus one hold."""
    ts = sorted({t for t, _ in events})
    reasons = dict(events)
    raw = pl.DataFrame(
        {
            "member": [MEMBER] * len(ts),
            "asset": [ASSET] * len(ts),
            "asset_class": [CLS] * len(ts),
            "signal": ["downtime_reason"] * len(ts),
            "ts": [_ts(t / 60) for t in ts],
            "value": [None] * len(ts),
            "text": [reasons[t] for t in ts],
            "quality": [0] * len(ts),
        },
        schema_overrides={"value": pl.Float64, "text": pl.String, "quality": pl.UInt8, "ts": pl.Int64},
    )
    out = compute_rollups(raw)
    total = out.select(pl.sum_horizontal(list(DOWNTIME_COLUMNS.values()))).to_series()
    assert all(0 <= v <= 3600 + 1e-6 for v in total.to_list())
    assert total.sum() <= ts[-1] - ts[0] + 1e-6
    assert out["seconds_running"].sum() == pytest.approx(0.0)  # the reason is not a machine state
