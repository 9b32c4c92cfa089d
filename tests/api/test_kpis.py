"""KPI core: hand-computed values from hand-made rollups and from raw samples through a real store."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.kpis import KPIS, PERIODS, asset_totals, compute_kpis, pool
from storage import ROLLUP_SCHEMA, DuckDBStore, RollupQuery
from wire import Sample

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def rollup_row(member: str, asset: str, hour: datetime, **values: float) -> dict[str, object]:
    row: dict[str, object] = {c: 0.0 for c, t in ROLLUP_SCHEMA.items() if t == pl.Float64()}
    for g in ("power_kw", "temperature_c", "spindle_speed_rpm"):
        for stat in ("mean", "min", "max"):
            row[f"{g}_{stat}"] = None
    row.update(member=member, asset=asset, asset_class="press", hour=hour, samples=10)
    row.update(values)
    return row


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ROLLUP_SCHEMA)


def test_hand_computed_day_and_hour() -> None:
    rows = [
        rollup_row(
            "m-aaaaaa",
            "a-00000001",
            T0 + timedelta(hours=8),
            energy_kwh=30.0,
            parts_total=20.0,
            parts_scrap=2.0,
            seconds_running=3000.0,
            seconds_idle=600.0,
        ),
        # gap at 09:00: no row at all
        rollup_row(
            "m-aaaaaa",
            "a-00000001",
            T0 + timedelta(hours=10),
            energy_kwh=10.0,
            parts_total=10.0,
            parts_scrap=0.0,
            seconds_running=1800.0,
            seconds_down=900.0,
            seconds_off=900.0,
        ),
    ]
    day = compute_kpis(frame(rows), "day", {"m-aaaaaa": 0.5}, 0.38)
    assert day.height == 1
    r = day.row(0, named=True)
    assert r["period_start"] == T0
    assert r["period_end"] == T0 + timedelta(days=1)
    assert r["parts_good"] == 28.0
    assert r["energy_per_good_part_kwh"] == pytest.approx(40.0 / 28.0)
    assert r["co2e_per_good_part_kg"] == pytest.approx(40.0 * 0.5 / 28.0)
    assert r["utilisation"] == pytest.approx(4800.0 / 7200.0)
    assert r["scrap_rate"] == pytest.approx(2.0 / 30.0)
    assert r["good_parts_per_hour"] == pytest.approx(28.0 / (4800.0 / 3600.0))

    hour = compute_kpis(frame(rows), "hour", {}, 0.38)
    assert hour["period_start"].to_list() == [T0 + timedelta(hours=8), T0 + timedelta(hours=10)]
    assert hour["co2e_per_good_part_kg"].to_list() == pytest.approx([30 * 0.38 / 18, 10 * 0.38 / 10])
    assert hour["utilisation"].to_list() == pytest.approx([3000 / 3600, 1800 / 3600])


@pytest.mark.parametrize(
    ("values", "expected_nulls"),
    [
        # no parts at all: every per-part figure and the scrap rate is null; utilisation is defined
        (
            {"energy_kwh": 5.0, "seconds_running": 100.0, "seconds_idle": 100.0},
            {"energy_per_good_part_kwh", "co2e_per_good_part_kg", "scrap_rate"},
        ),
        # all parts scrapped: good = 0 -> per-good-part figures null, scrap rate 1, good parts per hour 0
        (
            {"energy_kwh": 5.0, "parts_total": 4.0, "parts_scrap": 4.0, "seconds_running": 60.0},
            {"energy_per_good_part_kwh", "co2e_per_good_part_kg"},
        ),
        # no state known: utilisation and good parts per hour are null
        ({"energy_kwh": 5.0, "parts_total": 4.0}, {"utilisation", "good_parts_per_hour"}),
    ],
)
def test_divisions_by_zero_are_null(values: dict[str, float], expected_nulls: set[str]) -> None:
    out = compute_kpis(frame([rollup_row("m-aaaaaa", "a-00000001", T0, **values)]), "day", {}, 0.38)
    nulls = {k for k in KPIS if out[k][0] is None}
    assert nulls == expected_nulls


def test_scrap_counted_after_total_never_gives_negative_good_parts() -> None:
    # The scrap counter (after a reset of the total counter) shows more scrap than parts in the period.
    out = compute_kpis(
        frame([rollup_row("m-aaaaaa", "a-00000001", T0, parts_total=2.0, parts_scrap=5.0, seconds_running=60.0)]),
        "day",
        {},
        0.38,
    )
    assert out["parts_good"][0] == 0.0
    assert out["scrap_rate"][0] == 1.0
    assert out["good_parts_per_hour"][0] == 0.0


def test_week_and_month_periods() -> None:
    rows = [
        rollup_row("m-aaaaaa", "a-00000001", datetime(2026, 3, 1, 23, tzinfo=UTC), energy_kwh=1.0),  # Sunday
        rollup_row("m-aaaaaa", "a-00000001", datetime(2026, 3, 2, 0, tzinfo=UTC), energy_kwh=2.0),  # Monday
        rollup_row("m-aaaaaa", "a-00000001", datetime(2026, 2, 28, 0, tzinfo=UTC), energy_kwh=4.0),
    ]
    week = asset_totals(frame(rows), "week", {}, 0.38)
    assert week["period_start"].to_list() == [datetime(2026, 2, 23, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)]
    assert week["energy_kwh"].to_list() == [5.0, 2.0]
    month = asset_totals(frame(rows), "month", {}, 0.38)
    assert month["period_start"].to_list() == [datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]
    assert month["period_end"].to_list() == [datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)]
    assert month["energy_kwh"].to_list() == [4.0, 3.0]


def _minute(h: int, m: int) -> int:
    return int((T0 + timedelta(hours=h, minutes=m)).timestamp() * 1e9)


def test_from_raw_samples_across_counter_resets_and_gaps(tmp_path: Path) -> None:
    """Counters reset at 10:00 (machine restart) after a gap from 08:50 to 10:00."""
    asset, cls = "a-00000001", "cnc_milling"
    samples: list[Sample] = []
    for i in range(40):  # 08:00..08:39: running, energy 100..139, parts 1000..1039
        samples += [
            Sample(ts=_minute(8, i), asset=asset, asset_class=cls, signal="state", value="running"),
            Sample(ts=_minute(8, i), asset=asset, asset_class=cls, signal="energy_kwh", value=100.0 + i),
            Sample(ts=_minute(8, i), asset=asset, asset_class=cls, signal="parts_total", value=1000 + i),
        ]
    for i in range(40, 51):  # 08:40..08:50 idle, then nothing until 10:00 (a gap)
        samples.append(Sample(ts=_minute(8, i), asset=asset, asset_class=cls, signal="state", value="idle"))
    samples += [
        Sample(ts=_minute(8, 0), asset=asset, asset_class=cls, signal="parts_scrap_total", value=50),
        Sample(ts=_minute(8, 20), asset=asset, asset_class=cls, signal="parts_scrap_total", value=51),
        Sample(ts=_minute(8, 39), asset=asset, asset_class=cls, signal="parts_scrap_total", value=52),
    ]
    for i in range(30):  # 10:00..10:29 after a restart: counters start again near zero
        samples += [
            Sample(ts=_minute(10, i), asset=asset, asset_class=cls, signal="state", value="running"),
            Sample(ts=_minute(10, i), asset=asset, asset_class=cls, signal="energy_kwh", value=0.5 + i),
            Sample(ts=_minute(10, i), asset=asset, asset_class=cls, signal="parts_total", value=1 + i),
        ]
    samples += [
        Sample(ts=_minute(10, 0), asset=asset, asset_class=cls, signal="parts_scrap_total", value=0),
        Sample(ts=_minute(10, 29), asset=asset, asset_class=cls, signal="parts_scrap_total", value=3),
        Sample(ts=_minute(10, 30), asset=asset, asset_class=cls, signal="state", value="off"),
    ]
    store = DuckDBStore(tmp_path / "hub.duckdb")
    try:
        store.write("m-aaaaaa", samples)
        rollups = store.query_rollups(RollupQuery())
    finally:
        store.close()
    out = compute_kpis(rollups, "day", {"m-aaaaaa": 0.5}, 0.38).row(0, named=True)
    energy = 39.0 + (0.5 + 29.0)  # 100->139, then reset: 0.5 counts in full, then 29 more
    parts = 39.0 + (1.0 + 29.0)
    scrap = 2.0 + (0.0 + 3.0)  # the reset to 0 adds nothing
    running = 40 * 60 + 30 * 60
    idle = 10 * 60 + 300  # the idle sample before the gap holds for at most 300 s (storage MAX_STATE_GAP_S)
    assert out["energy_kwh"] == pytest.approx(energy)
    assert out["parts_good"] == pytest.approx(parts - scrap)
    assert out["energy_per_good_part_kwh"] == pytest.approx(energy / (parts - scrap))
    assert out["co2e_per_good_part_kg"] == pytest.approx(energy * 0.5 / (parts - scrap))
    assert out["utilisation"] == pytest.approx(running / (running + idle))
    assert out["scrap_rate"] == pytest.approx(scrap / parts)
    assert out["good_parts_per_hour"] == pytest.approx((parts - scrap) / (running / 3600))


_nonneg = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@st.composite
def rollup_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(min_value=1, max_value=40))
    rows = []
    for _ in range(n):
        hour = T0 + timedelta(hours=draw(st.integers(min_value=0, max_value=24 * 70)))
        rows.append(
            rollup_row(
                draw(st.sampled_from(["m-aaaaaa", "m-bbbbbb"])),
                draw(st.sampled_from(["a-00000001", "a-00000002"])),
                hour,
                energy_kwh=draw(_nonneg),
                parts_total=draw(_nonneg),
                parts_scrap=draw(_nonneg),
                seconds_running=draw(st.floats(0, 3600)),
                seconds_idle=draw(st.floats(0, 3600)),
                seconds_off=draw(st.floats(0, 3600)),
            )
        )
    return frame(rows).unique(subset=["member", "asset", "hour"], keep="first")


@settings(max_examples=60, deadline=None)
@given(rollup_frames(), st.sampled_from(PERIODS))
def test_kpis_are_finite_and_in_range(rollups: pl.DataFrame, period: str) -> None:
    out = compute_kpis(rollups, period, {"m-aaaaaa": 0.7}, 0.38)  # type: ignore[arg-type]
    for k in KPIS:
        for v in out[k].to_list():
            assert v is None or (math.isfinite(v) and v >= 0)
    for v in out["utilisation"].drop_nulls().to_list() + out["scrap_rate"].drop_nulls().to_list():
        assert 0 <= v <= 1
    assert (out["parts_good"] >= 0).all()


@settings(max_examples=40, deadline=None)
@given(rollup_frames())
def test_totals_do_not_depend_on_period(rollups: pl.DataFrame) -> None:
    sums = {}
    for period in PERIODS:
        t = asset_totals(rollups, period, {}, 0.38)  # type: ignore[arg-type]
        sums[period] = (t["energy_kwh"].sum(), t["seconds_running"].sum(), t["parts_total"].sum())
    for period in PERIODS:
        assert sums[period] == pytest.approx(sums["hour"])


def test_pool_sums_assets_before_dividing() -> None:
    rows = [
        rollup_row("m-aaaaaa", "a-00000001", T0, energy_kwh=10.0, parts_total=10.0, seconds_running=3600.0),
        rollup_row(
            "m-aaaaaa", "a-00000002", T0, energy_kwh=30.0, parts_total=10.0, seconds_running=1800.0, seconds_idle=1800.0
        ),
    ]
    pooled = pool(asset_totals(frame(rows), "day", {}, 0.38), ["member", "period_start"])
    assert pooled["energy_per_good_part_kwh"][0] == pytest.approx(40.0 / 20.0)  # not the mean of 1.0 and 3.0
    assert pooled["utilisation"][0] == pytest.approx(5400.0 / 7200.0)


def test_kpi_rows_json_parses_as_pydantic_writes_them(filled_store: DuckDBStore) -> None:
    """The column-wise JSON of /v1/kpis rows equals pydantic's JSON of the same rows as KpiRow, downtime included."""
    import json

    from api.core.kpis import downtime_by_reason
    from api.http.kpi_json import kpi_rows_json
    from api.http.schemas import KpiRow

    frame = compute_kpis(filled_store.query_rollups(RollupQuery()), "hour", {"m-a00001": 0.5}, 0.38)
    every_third = pl.int_range(pl.len()) % 3 == 0
    frame = frame.with_columns(
        seconds_down_tooling=pl.when(every_third).then(120.25).otherwise(0.0),
        seconds_down_material=pl.when(pl.int_range(pl.len()) % 5 == 0).then(0.1 + 0.2).otherwise(0.0),
        utilisation=pl.when(every_third).then(None).otherwise(pl.col("utilisation")),
    )
    expected = [
        json.loads(KpiRow.model_validate({**r, "downtime_s": downtime_by_reason(r)}).model_dump_json())
        for r in frame.iter_rows(named=True)
    ]
    assert frame.height > 100
    assert any(e["downtime_s"] for e in expected) and any(not e["downtime_s"] for e in expected)
    assert json.loads(kpi_rows_json(frame)) == expected


def test_kpis_say_how_fresh_they_are_and_refresh_only_the_callers_assets(tmp_path: Path) -> None:
    """A member's request folds in its own pending data only; a request over more pending assets than
    rollup_refresh_max_assets reads the rollups as kept, and as_of says they predate the new samples."""
    from tests.api.conftest import PLANS, REGISTER, STEP, STEPS, T0, make_hub, samples_of

    store = DuckDBStore(tmp_path / "hub.duckdb")
    try:
        plans = [p for p in PLANS if p.asset in ("a-00000a01", "a-00000b01")]
        for plan in plans:
            store.write(plan.member, samples_of(plan))
        store.refresh_rollups()
        hub = make_hub(tmp_path, store, register_provider=lambda: REGISTER, rollup_refresh_max_assets=1)
        url = "/v1/kpis?period=day&start=2026-03-02T00:00:00Z&end=2026-03-07T00:00:00Z"
        with hub.client:

            def energy(who: str, asset: str) -> tuple[float, datetime]:
                body = hub.client.get(url, headers=hub.auth(who)).json()
                total = sum(r["energy_kwh"] for r in body["data"] if r["asset"] == asset)
                return total, datetime.fromisoformat(body["as_of"])

            before, as_of_before = energy("analyst", "a-00000a01")
            written = datetime.now(UTC)
            late = int((T0 + STEPS * STEP).timestamp() + 60) * 10**9
            for plan in plans:  # 10 kWh more on each asset
                last = samples_of(plan)[-4]  # the energy_kwh sample of the last step
                assert last.signal == "energy_kwh"
                bump = Sample(ts=late, asset=plan.asset, asset_class=plan.asset_class, signal="energy_kwh",
                              value=float(last.value) + 10)  # fmt: skip
                store.write(plan.member, [bump])
            # two assets pending, one allowed: the analyst's answer is the kept one, and says so
            kept, as_of_kept = energy("analyst", "a-00000a01")
            assert kept == before and as_of_kept <= as_of_before < written
            # the member's request folds in its own asset, and its as_of is after the write
            mine, as_of_mine = energy("member_a", "a-00000a01")
            assert mine == pytest.approx(before + 10) and as_of_mine > written
            # ... and did not refresh the other member's asset (asked for by asset filter, not readable)
            assert hub.client.get(url + "&asset=a-00000b01", headers=hub.auth("member_a")).json()["data"] == []
            assert store.refresh_rollups() == 1
    finally:
        store.close()
