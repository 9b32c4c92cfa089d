"""The store contract: every store (embedded DuckDB, InfluxDB) answers the same questions the same way."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from storage import ROLLUP_SCHEMA, SERIES_SCHEMA, ReleasedCell, RollupQuery, SeriesQuery, Store, compute_rollups
from storage.duckdb import samples_frame
from wire import MACHINE_STATES, Sample

M1, M2 = "m-aaaaaa", "m-bbbbbb"
A1, A2, A3 = "a-00000001", "a-00000002", "a-00000003"
T0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) * 10**9
S = 10**9
H = 3600 * S


def smp(ts: int, asset: str, signal: str, value: float | int | str, *, cls: str = "press", q: int = 0) -> Sample:
    return Sample(ts=ts, asset=asset, asset_class=cls, signal=signal, value=value, quality=q)


def fixture_data() -> dict[str, list[Sample]]:
    return {
        M1: [
            smp(T0 + 0 * S, A1, "power_kw", 10.0),
            smp(T0 + 0 * S, A1, "state", "running"),
            smp(T0 + 0 * S, A1, "parts_total", 100),
            smp(T0 + 60 * S, A1, "power_kw", 20.0),
            smp(T0 + 60 * S, A1, "parts_total", 110),
            smp(T0 + 120 * S, A1, "power_kw", 30.0, q=1),
            smp(T0 + 120 * S, A1, "state", "idle"),
            smp(T0 + 180 * S, A1, "state", "running", q=2),
            smp(T0 + 30 * S, A2, "temperature_c", -5.5, cls="welding"),
        ],
        M2: [
            smp(T0 + 0 * S, A3, "power_kw", 1.25),
            smp(T0 + 60 * S, A3, "power_kw", 2.5),
            smp(T0 + 60 * S, A3, "energy_kwh", 7),
        ],
    }


def write_fixture(store: Store) -> None:
    for member, samples in fixture_data().items():
        assert store.write(member, samples) == len(samples)


def expected_series() -> pl.DataFrame:
    frames = [samples_frame(m, s) for m, s in fixture_data().items()]
    return (
        pl.concat(frames)
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .select([pl.col(c).cast(t) for c, t in SERIES_SCHEMA.items()])
        .sort(["ts", "member", "asset", "signal"])
    )


def test_a_flush_of_several_members_stores_what_their_writes_one_by_one_store(store: Store) -> None:
    data = fixture_data()
    assert store.write_many(data) == sum(len(s) for s in data.values())
    assert store.write_many({M1: data[M1][:2], M2: []}) == 2  # sent again, and an empty batch: nothing new
    assert store.write_many({}) == 0
    assert_frame_equal(store.query_series(SeriesQuery()), expected_series())
    expected = compute_rollups(_stored_raw(store))
    assert_frame_equal(store.query_rollups(RollupQuery()), expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_empty_store_answers_with_empty_frames_of_the_schema(store: Store) -> None:
    series = store.query_series(SeriesQuery())
    assert series.schema == pl.Schema(SERIES_SCHEMA) and series.height == 0
    rollups = store.query_rollups(RollupQuery())
    assert rollups.schema == pl.Schema(ROLLUP_SCHEMA) and rollups.height == 0


def test_written_samples_come_back_exactly_once_in_order(store: Store) -> None:
    write_fixture(store)
    write_fixture(store)  # redelivery: nothing duplicated
    got = store.query_series(SeriesQuery())
    assert got.schema == pl.Schema(SERIES_SCHEMA)
    assert_frame_equal(got, expected_series())
    assert got.filter(pl.col("signal") == "state")["value"].null_count() == 3
    assert got.filter(pl.col("signal") == "parts_total")["value"].to_list() == [100.0, 110.0]


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        (SeriesQuery(signals=("power_kw",)), lambda f: f.filter(pl.col("signal") == "power_kw")),
        (SeriesQuery(members=(M2,)), lambda f: f.filter(pl.col("member") == M2)),
        (SeriesQuery(assets=(A2, A3)), lambda f: f.filter(pl.col("asset").is_in([A2, A3]))),
        (SeriesQuery(asset_classes=("welding",)), lambda f: f.filter(pl.col("asset_class") == "welding")),
        (
            SeriesQuery(start_ns=T0 + 30 * S, end_ns=T0 + 120 * S),
            lambda f: f.filter(pl.col("ts").cast(pl.Int64).is_between(T0 + 30 * S, T0 + 120 * S, closed="left")),
        ),
        (SeriesQuery(signals=()), lambda f: f.head(0)),
        (
            SeriesQuery(members=(M1,), signals=("state",), limit=2),
            lambda f: f.filter((pl.col("member") == M1) & (pl.col("signal") == "state")).head(2),
        ),
    ],
)
def test_filters(store: Store, query: SeriesQuery, expect) -> None:  # type: ignore[no-untyped-def]
    write_fixture(store)
    assert_frame_equal(store.query_series(query), expect(expected_series()))


@pytest.mark.parametrize("agg", ["mean", "min", "max", "sum", "count", "last"])
def test_downsampling(store: Store, agg: str) -> None:
    write_fixture(store)
    got = store.query_series(SeriesQuery(every_s=120, agg=agg, members=(M1,), assets=(A1,)))  # type: ignore[arg-type]
    power = got.filter(pl.col("signal") == "power_kw")
    expected = {
        "mean": [15.0, 30.0],
        "min": [10.0, 30.0],
        "max": [20.0, 30.0],
        "sum": [30.0, 30.0],
        "count": [2.0, 1.0],
        "last": [20.0, 30.0],
    }[agg]
    assert power["value"].to_list() == expected
    assert power["ts"].cast(pl.Int64).to_list() == [T0, T0 + 120 * S]
    assert power["quality"].to_list() == [0, 1]
    state = got.filter(pl.col("signal") == "state")
    assert state["text"].to_list() == ["running", "running"]  # last state of each bucket
    if agg == "count":
        assert state["value"].to_list() == [1.0, 2.0]


def test_pages_with_after_and_limit_cover_everything_once(store: Store) -> None:
    rng = random.Random(7)
    samples = [
        smp(
            T0 + rng.randrange(0, 20) * S,
            f"a-{rng.randrange(0, 6):08x}",
            rng.choice(["power_kw", "temperature_c"]),
            rng.random(),
        )
        for _ in range(300)
    ]
    store.write(M1, samples)
    store.write(M2, samples[:50])
    everything = store.query_series(SeriesQuery())
    pages = []
    after = None
    for _ in range(100):
        page = store.query_series(SeriesQuery(limit=17, after=after))
        if page.height == 0:
            break
        assert page.height <= 17
        pages.append(page)
        last = page.row(-1, named=True)
        after = (page["ts"].cast(pl.Int64)[-1], last["member"], last["asset"], last["signal"])
    assert_frame_equal(pl.concat(pages), everything)


def test_rollups_counters_states_gauges(store: Store) -> None:
    h1 = T0 + H
    samples = [
        # parts counter: 100 -> 130 in hour 0, reset to 5 and on to 12 in hour 1
        smp(T0 + 10 * S, A1, "parts_total", 100),
        smp(T0 + 1800 * S, A1, "parts_total", 130),
        smp(h1 + 10 * S, A1, "parts_total", 5),
        smp(h1 + 70 * S, A1, "parts_total", 12),
        smp(T0 + 10 * S, A1, "parts_scrap_total", 3),
        smp(h1 + 70 * S, A1, "parts_scrap_total", 4),
        smp(T0 + 10 * S, A1, "energy_kwh", 1000.0),
        smp(h1 + 70 * S, A1, "energy_kwh", 1002.5),
        # running from 59:00 to 61:00 (split), idle from 61:00 for 60 s, then a running sample opening nothing yet
        smp(h1 - 60 * S, A1, "state", "running"),
        smp(h1 + 60 * S, A1, "state", "idle"),
        smp(h1 + 120 * S, A1, "state", "down"),
        # a 10-minute silence: only 300 s of "down" count
        smp(h1 + 720 * S, A1, "state", "running"),
        smp(h1 + 750 * S, A1, "state", "off"),
        smp(T0 + 5 * S, A1, "power_kw", 4.0),
        smp(T0 + 65 * S, A1, "power_kw", 8.0),
        smp(T0 + 125 * S, A1, "power_kw", 1000.0, q=2),  # bad quality: ignored
    ]
    store.write(M1, samples)
    got = store.query_rollups(RollupQuery(members=(M1,)))
    assert got.schema == pl.Schema(ROLLUP_SCHEMA)
    assert got["hour"].cast(pl.Int64).to_list() == [T0, h1]
    r0, r1 = got.row(0, named=True), got.row(1, named=True)
    assert (r0["parts_total"], r1["parts_total"]) == (30.0, 12.0)
    assert (r0["parts_scrap"], r1["parts_scrap"]) == (0.0, 1.0)
    assert (r0["energy_kwh"], r1["energy_kwh"]) == (0.0, 2.5)
    assert (r0["seconds_running"], r1["seconds_running"]) == (60.0, 60.0 + 30.0)
    assert (r0["seconds_idle"], r1["seconds_idle"], r1["seconds_down"]) == (0.0, 60.0, 300.0)
    assert (r0["power_kw_mean"], r0["power_kw_min"], r0["power_kw_max"]) == (6.0, 4.0, 8.0)
    assert r1["power_kw_mean"] is None
    assert (r0["asset_class"], r0["samples"]) == ("press", 7)


def test_rollups_follow_incremental_and_late_writes(store: Store) -> None:
    rng = random.Random(11)
    all_samples: dict[str, list[Sample]] = {M1: [], M2: []}
    counters = {}
    for _ in range(400):
        member = rng.choice([M1, M2])
        asset = rng.choice([A1, A2])
        ts = T0 + rng.randrange(0, 3 * 3600) * S
        kind = rng.choice(["parts_total", "state", "power_kw", "energy_kwh"])
        if kind == "state":
            value: float | int | str = rng.choice(MACHINE_STATES)
        elif kind == "power_kw":
            value = rng.uniform(0, 50)
        else:
            counters[(member, asset, kind)] = counters.get((member, asset, kind), 0) + rng.randrange(0, 5)
            value = counters[(member, asset, kind)] if rng.random() > 0.05 else 0  # occasional reset
        all_samples[member].append(smp(ts, asset, kind, value, q=rng.choice([0, 0, 0, 1, 2])))
    # Write in random chunks, querying rollups in between (each query refreshes what is dirty).
    for member, samples in all_samples.items():
        rng.shuffle(samples)
        for start in range(0, len(samples), 37):
            store.write(member, samples[start : start + 37])
            if start % 3 == 0:
                store.query_rollups(RollupQuery())
    raw = pl.concat([samples_frame(m, s) for m, s in all_samples.items()]).unique(
        ["member", "asset", "signal", "ts"], keep="last"
    )
    assert raw.height == store.query_series(SeriesQuery()).height
    got = store.query_rollups(RollupQuery())
    expected = compute_rollups(_stored_raw(store))
    assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    assert got.height >= 6


def _stored_raw(store: Store) -> pl.DataFrame:
    series = store.query_series(SeriesQuery())
    return series.with_columns(pl.col("ts").cast(pl.Int64))


def test_rollup_filters(store: Store) -> None:
    write_fixture(store)
    all_rows = store.query_rollups(RollupQuery())
    assert sorted(all_rows["asset"].to_list()) == [A1, A2, A3]
    assert store.query_rollups(RollupQuery(asset_classes=("welding",)))["asset"].to_list() == [A2]
    assert store.query_rollups(RollupQuery(members=(M2,)))["asset"].to_list() == [A3]
    assert store.query_rollups(RollupQuery(assets=())).height == 0
    assert store.query_rollups(RollupQuery(start_ns=T0 + H)).height == 0
    assert store.query_rollups(RollupQuery(end_ns=T0 + H)).height == 3


def _ledger_entry(start_day: int, *, period: str = "day", mean: float = 1.5, kpi: str = "scrap_rate") -> ReleasedCell:
    day_ns = 86_400 * 10**9
    start = 1_772_323_200 * 10**9 + start_day * day_ns  # 2026-03-01
    length = {"day": 1, "week": 7, "month": 31}[period] * day_ns
    return ReleasedCell(
        kpi=kpi,
        asset_class="press",
        period=period,
        period_start_ns=start,
        period_end_ns=start + length,
        status="published",
        figures={"mean": mean, "median": mean * 0.9},
        contributors="10–19",
        digest="d" * 32,
        released_at_ns=start + 8 * day_ns,
        rules_version="2",
        excluded=1,
        groups=("grp-a", "grp-b", 'grp-"c"\n'),
        values=(0.5, 1.5, 2.5),
    )


def test_release_ledger_keeps_the_first_release_and_finds_overlapping_periods(store: Store) -> None:
    first = [_ledger_entry(0), _ledger_entry(1), _ledger_entry(0, period="week"), _ledger_entry(0, period="month")]
    store.release(first)
    # a second release of the same cells (late data, another process) changes nothing
    store.release([_ledger_entry(0, mean=99.0), _ledger_entry(1, mean=99.0)])
    day = 86_400 * 10**9
    t0 = first[0].period_start_ns
    days = store.released_cells("scrap_rate", "press", t0, t0 + 2 * day, "day")
    assert days == first[:2]
    # all periods overlapping day 1: the day itself, its week and its month (found although they began before)
    around = store.released_cells("scrap_rate", "press", t0 + day, t0 + 2 * day)
    assert sorted((c.period, c.period_start_ns) for c in around) == sorted(
        (c.period, c.period_start_ns) for c in (first[1], first[2], first[3])
    )
    assert store.released_cells("scrap_rate", "press", t0 + 40 * day, t0 + 41 * day) == []
    assert store.released_cells("utilisation", "press", t0, t0 + 2 * day) == []
    assert store.released_cells("scrap_rate", "welding", t0, t0 + 2 * day) == []


def member_rows_everywhere(store: Store, member: str) -> dict[str, int]:
    """Rows of ``member`` in every table (DuckDB) or measurement (InfluxDB) the store has, found by listing them."""
    from storage import DuckDBStore, InfluxStore
    from storage.influx.influxql import time_range

    if isinstance(store, DuckDBStore):
        cur = store.cursor()
        try:
            tables = [
                t
                for (t,) in cur.execute(
                    "SELECT DISTINCT table_name FROM information_schema.columns WHERE column_name = 'member'"
                ).fetchall()
            ]
            return {
                t: int(cur.execute(f'SELECT count(*) FROM "{t}" WHERE member = ?', [member]).fetchone()[0])
                for t in tables
            }  # type: ignore[index]
        finally:
            cur.close()
    assert isinstance(store, InfluxStore)
    found: dict[str, int] = {}
    for rp in {store.raw_rp, store.rollup_rp, store.ledger_rp}:
        measurements = store.execute("SHOW MEASUREMENTS").columns.get("name", [])
        for m in measurements:
            src = f'"{rp}"."{m}"' if rp else f'"{m}"'
            rows = store.execute(f"SELECT * FROM {src} WHERE \"member\" = '{member}' AND {time_range(None, None)}")
            found[f"{rp}.{m}"] = rows.n
    return found


def test_deleting_a_member_leaves_no_row_of_it_and_every_row_of_the_others(store: Store) -> None:
    write_fixture(store)
    store.refresh_rollups()
    mine = _ledger_entry(0, kpi="energy_per_good_part_kwh")
    other = replace(_ledger_entry(0), groups=("grp-b", "grp-x"))
    store.release([mine, other])
    before_rollups = store.query_rollups(RollupQuery(members=(M2,)))
    assert store.query_rollups(RollupQuery(members=(M1,))).height > 0
    assert sum(member_rows_everywhere(store, M1).values()) > 0

    counts = store.delete_member(M1, group="grp-a", now_ns=T0 + 9 * H)

    assert counts["samples"] == len(fixture_data()[M1])
    assert counts["rollups"] > 0 and counts["release_ledger"] == 1
    assert {k: v for k, v in member_rows_everywhere(store, M1).items() if v} == {}
    assert store.query_series(SeriesQuery(members=(M1,))).height == 0
    assert store.query_rollups(RollupQuery(members=(M1,))).height == 0
    # the other member's data is untouched
    assert_frame_equal(store.query_series(SeriesQuery()), expected_series().filter(pl.col("member") == M2))
    assert_frame_equal(store.query_rollups(RollupQuery(members=(M2,))), before_rollups)
    # released cells stay with their published figures; only the cell of the member's group loses its values
    at = mine.period_start_ns
    cells = {c.kpi: c for c in store.released_cells("energy_per_good_part_kwh", "press", at, at + 1)}
    cells |= {c.kpi: c for c in store.released_cells("scrap_rate", "press", at, at + 1)}
    assert cells["energy_per_good_part_kwh"] == replace(mine, values=(), values_erased_ns=T0 + 9 * H)
    assert cells["scrap_rate"] == other
    # a second deletion finds nothing more
    assert store.delete_member(M1, group="grp-a") == dict.fromkeys(counts, 0)


def _live_stream(assets: tuple[str, ...], seconds: int, t0: int) -> list[Sample]:
    """In-order samples every 10 s across an hour boundary: counters (with a reset), state, reason, a gauge."""
    out: list[Sample] = []
    for i in range(0, seconds, 10):
        ts = t0 + i * S
        for k, asset in enumerate(assets):
            out += [
                smp(ts, asset, "energy_kwh", float(i if i < 1500 else i - 1500) / 10),
                smp(ts, asset, "power_kw", float((i + k) % 23)),
            ]
            if i % 40 == 0:
                out.append(smp(ts, asset, "state", MACHINE_STATES[(i // 400 + k) % len(MACHINE_STATES)]))
            if i % 120 == 0:
                out.append(smp(ts, asset, "downtime_reason", "tooling" if (i // 120) % 3 == 0 else "none"))
    return out


def test_live_ingest_is_folded_in_and_equals_a_full_recompute(store: Store) -> None:
    """Batches in order, a refresh after each (the fold path), then a backfill and a redelivery (recomputes)."""
    samples = _live_stream((A1, A2), 2400, T0 + H - 1200 * S)
    for lo in range(0, len(samples), 60):
        store.write(M1, samples[lo : lo + 60])
        assert store.refresh_rollups() == 2
    assert_frame_equal(
        store.query_rollups(RollupQuery()), compute_rollups(_stored_raw(store)), check_exact=False, abs_tol=1e-6
    )
    store.write(M1, [smp(T0 + H - 1195 * S, A1, "state", "down"), smp(T0 + H + 5 * S, A2, "energy_kwh", 0.0)])
    store.write(M1, samples[100:160])
    assert store.refresh_rollups() == 2
    got = store.query_rollups(RollupQuery())
    assert_frame_equal(got, compute_rollups(_stored_raw(store)), check_exact=False, abs_tol=1e-6)
    assert got.height == 4


def test_a_query_refreshes_only_the_assets_it_asks_for(store: Store) -> None:
    store.write(M1, [smp(T0, A1, "power_kw", 1.0), smp(T0 + 60 * S, A1, "power_kw", 3.0)])
    store.write(M2, [smp(T0, A3, "power_kw", 5.0)])
    mine = store.read_rollups(RollupQuery(members=(M1,)))
    assert mine.frame["asset"].to_list() == [A1]
    assert mine.as_of_ns is not None
    assert store.refresh_rollups() == 1  # M2's asset was left pending
    # more pending assets than a query may refresh: it reads the rows as kept and says since when
    store.write(M1, [smp(T0 + 120 * S, A1, "power_kw", 8.0)])
    store.write(M2, [smp(T0 + 60 * S, A3, "power_kw", 7.0)])
    kept = store.read_rollups(RollupQuery(refresh_max_assets=1))
    assert kept.frame.sort("asset")["power_kw_max"].to_list() == [3.0, 5.0]
    assert kept.as_of_ns is not None and kept.as_of_ns < time.time_ns()
    fresh = store.read_rollups(RollupQuery(refresh_max_assets=2))
    assert fresh.frame.sort("asset")["power_kw_max"].to_list() == [8.0, 7.0]
    assert fresh.as_of_ns is not None and fresh.as_of_ns > kept.as_of_ns
