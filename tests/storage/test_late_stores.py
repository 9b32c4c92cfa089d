"""Both stores' keepers recompute late samples over their windows only (storage.late), with the rows a full
recompute gives: the attack of a member that sends one sample a day old in every live batch costs the hub a few
hours of one asset's raw rows per batch, not the day up to now."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from storage import DuckDBStore, Ingestor, RollupQuery, SeriesQuery, Store, compute_rollups
from testkit.mqtt import ingest_settings, register
from wire import MACHINE_STATES, Sample

from .test_contract import A1, A2, M1, M2, T0, H, S, smp


def _day(asset: str, hours: int = 24, step_s: int = 20) -> list[Sample]:
    out: list[Sample] = []
    for i in range(hours * 3600 // step_s):
        ts = T0 + i * step_s * S
        out += [
            smp(ts, asset, "energy_kwh", i * 0.25),
            smp(ts, asset, "state", MACHINE_STATES[(i // 90) % len(MACHINE_STATES)]),
            smp(ts, asset, "power_kw", float(i % 13)),
        ]
    return out


def _stored(store: Store) -> pl.DataFrame:
    return store.query_series(SeriesQuery()).with_columns(pl.col("ts").cast(pl.Int64))


def _equal_to_full_recompute(store: Store) -> None:
    assert_frame_equal(
        store.query_rollups(RollupQuery()), compute_rollups(_stored(store)), check_exact=False, abs_tol=1e-6
    )


def test_one_day_old_sample_in_every_live_batch_is_recomputed_over_its_window(store: Store) -> None:
    for asset in (A1, A2):
        day = _day(asset)
        for lo in range(0, len(day), 6000):
            store.write(M1, day[lo : lo + 6000])
    store.write(M2, _day(A1, hours=2))  # another member's asset of the same name: untouched
    store.refresh_rollups()
    assert store.late_recomputes == {}
    end = T0 + 24 * H
    for k in range(6):
        live = [smp(end + (k * 10 + j) * S, A1, "power_kw", 5.0) for j in range(10)]
        old = T0 + (3 + 3 * k) * H + 610 * S  # hours back, every batch another hour
        late = [
            smp(old, A1, "energy_kwh", 1e4 + k),  # changes its hour and its successor's increase
            smp(old + 5 * S, A1, "state", "down"),  # cuts the state before it, holds until the next
            smp(old + 7 * S, A2, "power_kw", 99.0),  # another asset's gauge, late only
        ]
        store.write(M1, live + late)
        store.refresh_rollups()
    assert store.late_recomputes == {"window": 12}
    _equal_to_full_recompute(store)
    live = [smp(end + 100 * S + j * S, a, "energy_kwh", 1e6 + j) for a in (A1, A2) for j in range(3)]
    store.write(M1, live)  # the carries the windows left alone still fold
    store.refresh_rollups()
    assert store.late_recomputes == {"window": 12}
    _equal_to_full_recompute(store)


def test_a_late_sample_that_is_its_series_newest_falls_back_to_a_recompute_up_to_now(store: Store) -> None:
    day = [s for s in _day(A1, hours=6) if not (s.signal == "energy_kwh" and s.ts > T0 + 3 * H)]
    store.write(M1, day)
    store.refresh_rollups()
    store.write(M1, [smp(T0 + 4 * H, A1, "energy_kwh", 10_000.0)])  # after the counter's last sample
    store.refresh_rollups()
    assert store.late_recomputes == {"full": 1}
    _equal_to_full_recompute(store)


def test_a_replayed_old_batch_is_recomputed_over_its_window(store: Store) -> None:
    """An old batch sent again (the embedded file keeps the samples it has, InfluxDB overwrites them with the same
    values), together with the newest samples again and a live one: a window, the rows of a full recompute."""
    day = _day(A1)
    for lo in range(0, len(day), 6000):
        store.write(M1, day[lo : lo + 6000])
    store.refresh_rollups()
    replay = [*day[9000:9060], *day[-3:], smp(T0 + 24 * H + 5 * S, A1, "power_kw", 4.0)]
    store.write(M1, replay)
    store.refresh_rollups()
    assert store.late_recomputes == {"window": 1}
    _equal_to_full_recompute(store)
    store.write(M1, [smp(T0 + 24 * H + 25 * S, A1, "energy_kwh", 1e5)])
    store.refresh_rollups()
    _equal_to_full_recompute(store)


def test_the_ingestor_shows_how_late_samples_were_recomputed(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "hub.duckdb"))
    ing = Ingestor(ingest_settings(1, tmp_path), store, lambda: register(M1))

    def count(how: str) -> float | None:
        labels = {"instance": ing.metrics.instance, "how": how}
        return ing.registry.get_sample_value("mdh_rollup_late_recomputes_total", labels)

    assert (count("window"), count("full")) == (0, 0)
    store.write(M1, _day(A1, hours=6))
    store.refresh_rollups()
    store.write(M1, [smp(T0 + H + 15 * S, A1, "power_kw", 3.0)])
    store.refresh_rollups()
    store.write(M1, [smp(T0 + 5 * H + 55 * 60 * S, A1, "power_kw", 3.0)])  # in the open hour: up to now
    store.refresh_rollups()
    assert (count("window"), count("full")) == (1, 1)
    store.close()
