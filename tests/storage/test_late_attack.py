"""The late-sample attack through the broker: a member whose every batch carries one sample a day old, against a real
Mosquitto and the hub's ingestor, on both stores. Each such batch costs a window of the late sample's hours (the
metric shows it), never a recompute of the day up to now, and the rollups are those of a full recompute."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from storage import DuckDBStore, Ingestor, RollupQuery, SeriesQuery, Store, compute_rollups, open_store
from testkit.mqtt import Publisher, ingest_settings, make_batch, register, wait_until
from testkit.servers import MosquittoServer
from tests.storage.conftest import influx_settings
from tests.storage.test_ingestor import GA, MA, running
from wire import MACHINE_STATES, Batch, Sample

pytestmark = pytest.mark.integration

S = 10**9
H = 3600 * S
ASSET = "a-0000beef"


def _batch(samples: list[Sample]) -> Batch:
    return msgspec.structs.replace(make_batch(MA, GA, 0), samples=samples)


@pytest.mark.parametrize("kind", ["duckdb", "influxdb1"])
async def test_a_day_old_sample_in_every_batch_costs_a_window_not_the_day(
    kind: str, mosquitto: MosquittoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: Store = (
        DuckDBStore(tmp_path / "hub.duckdb")
        if kind == "duckdb"
        else open_store(influx_settings(request.getfixturevalue("influx_server")))
    )
    ing = Ingestor(ingest_settings(mosquitto.port, tmp_path), store, lambda: register(MA))
    pub = Publisher(mosquitto.port)

    def late(how: str) -> float | None:
        labels = {"instance": ing.metrics.instance, "how": how}
        return ing.registry.get_sample_value("mdh_rollup_late_recomputes_total", labels)

    end = (time.time_ns() // H - 1) * H
    day = [
        Sample(end - 24 * H + i * 60 * S, ASSET, "press", sig, v)
        for i in range(24 * 60)
        for sig, v in (
            ("energy_kwh", i * 0.5),
            ("state", MACHINE_STATES[(i // 30) % len(MACHINE_STATES)]),
            ("power_kw", float(i % 11)),
        )
    ]
    try:
        async with running(ing):
            for lo in range(0, len(day), 1000):
                pub.batch(_batch(day[lo : lo + 1000]))
            await wait_until(lambda: ing.stored_samples == len(day), what="the day stored")
            store.refresh_rollups()
            stored = len(day)
            for k in range(6):
                live = [Sample(end + (k * 10 + j) * S, ASSET, "press", "power_kw", 1.0) for j in range(10)]
                old = Sample(end - 22 * H + 3 * k * H + 30 * S, ASSET, "press", "energy_kwh", 1e4 + k)
                pub.batch(_batch([*live, old]))
                stored += 11
                await wait_until(lambda n=stored: ing.stored_samples == n, what="the batch stored")  # type: ignore[misc]
                store.refresh_rollups()
        assert (late("window"), late("full")) == (6, 0)
        raw = store.query_series(SeriesQuery()).with_columns(pl.col("ts").cast(pl.Int64))
        assert raw.height == stored
        assert_frame_equal(store.query_rollups(RollupQuery()), compute_rollups(raw), check_exact=False, abs_tol=1e-6)
    finally:
        pub.close()
        store.close()
