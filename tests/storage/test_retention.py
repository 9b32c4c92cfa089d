"""Retention settings: DuckDB deletes old rows; InfluxDB 1.x gets retention policies with the configured durations."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage import RollupQuery, SeriesQuery, StoreSettings, open_store
from storage.duckdb import DuckDBStore
from storage.influx import InfluxStore
from testkit.servers import InfluxServer
from tests.storage.conftest import influx_settings
from wire import Sample

DAY = 86_400 * 10**9


def smp(ts: int) -> Sample:
    return Sample(ts=ts, asset="a-00000001", asset_class="press", signal="power_kw", value=1.0)


def test_duckdb_drops_raw_samples_and_rollups_past_their_retention(tmp_path: Path) -> None:
    now = time.time_ns()
    store = open_store(
        StoreSettings(kind="duckdb", path=tmp_path / "h.duckdb", retention_days=10, rollup_retention_days=100)
    )
    assert isinstance(store, DuckDBStore)
    try:
        store.write("m-aaaaaa", [smp(now - 200 * DAY), smp(now - 50 * DAY), smp(now - 1 * DAY)])
        assert store.query_rollups(RollupQuery()).height == 3
        assert store.enforce_retention(now) == 2
        assert store.query_series(SeriesQuery()).height == 1
        assert store.query_rollups(RollupQuery()).height == 2  # the 50-day-old hour keeps its rollup
    finally:
        store.close()


@pytest.mark.integration
def test_influxdb1_retention_policies_follow_the_settings(influx_server: InfluxServer) -> None:
    settings = influx_settings(influx_server, retention_days=30, rollup_retention_days=400)
    store = open_store(settings)
    assert isinstance(store, InfluxStore)
    try:
        store.write("m-aaaaaa", [smp(time.time_ns())])
        rows = store.execute(f'SHOW RETENTION POLICIES ON "{settings.database}"').columns
        policies = dict(zip(rows["name"], zip(rows["duration"], rows["default"], strict=True), strict=True))
        assert policies["raw"] == ("720h0m0s", True)
        assert policies["rollups"] == ("9600h0m0s", False)
    finally:
        store.close()
    # Reopening with other durations alters the policies in place.
    store = open_store(settings.model_copy(update={"retention_days": 60}))
    try:
        store.query_series(SeriesQuery(limit=1))
        rows = store.execute(f'SHOW RETENTION POLICIES ON "{settings.database}"').columns
        assert dict(zip(rows["name"], rows["duration"], strict=True))["raw"] == "1440h0m0s"
    finally:
        store.close()
