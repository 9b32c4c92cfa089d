"""Reliability with real processes: InfluxDB down mid-stream, and two ingestors sharing one subscription."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import pytest

from storage import DuckDBStore, Ingestor, RollupQuery, SeriesQuery, StoreSettings, StoreUnavailable, open_store
from testkit.mqtt import Publisher, ingest_settings, make_batch, register, wait_until
from testkit.servers import InfluxServer, MosquittoServer
from tests.storage.test_ingestor import running
from wire import Sample, encode_batch, samples_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MA, MB = "m-0000aa", "m-0000bb"


async def test_influxdb_down_for_more_than_10s_mid_stream_loses_nothing(
    mosquitto: MosquittoServer, influxdb: InfluxServer, tmp_path: Path
) -> None:
    store = open_store(
        StoreSettings(
            kind="influxdb1",
            url=influxdb.url,
            database="outage",
            username=influxdb.username,
            password=influxdb.password,
            timeout_s=2,
            write_attempts=1,
        )
    )  # type: ignore[arg-type]
    settings = ingest_settings(mosquitto.port, tmp_path, max_inflight_messages=20, max_pending_messages=40)
    ing = Ingestor(settings, store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    batches = [make_batch(MA if i % 2 else MB, "g-00000001", 100, asset=f"a-{i % 7:08x}") for i in range(90)]
    max_pending = 0
    try:
        async with running(ing):
            t0 = time.monotonic()
            down_at, up_at = t0 + 2.0, None
            for b in batches:
                pub.publish(samples_topic(b.member, b.gateway), encode_batch(b), wait=False)
                max_pending = max(max_pending, ing.pending_messages)
                now = time.monotonic()
                if influxdb.proc is not None and up_at is None and now >= down_at:
                    await asyncio.to_thread(influxdb.stop)
                    up_at = time.monotonic() + 11.0
                if up_at is not None and influxdb.proc is None and now >= up_at:
                    await asyncio.to_thread(influxdb.start)
                await asyncio.sleep(0.15)
            while influxdb.proc is None:
                max_pending = max(max_pending, ing.pending_messages)
                if time.monotonic() >= (up_at or 0):
                    await asyncio.to_thread(influxdb.start)
                await asyncio.sleep(0.1)
            assert not ing.store_ok or ing.registry.get_sample_value(
                "mdh_ingest_store_errors_total", {"instance": ing.metrics._instance, "kind": "unavailable"}
            )
            # wait on the store itself: the ingestor's count also counts batches written again after a
            # redelivery (idempotent in the store), so it can reach 9000 before the store does
            await wait_until(
                lambda: store.query_series(SeriesQuery()).height >= 9000,
                within=60,
                what="the backlog written after the outage",
            )
        errors = ing.registry.get_sample_value(
            "mdh_ingest_store_errors_total", {"instance": ing.metrics._instance, "kind": "unavailable"}
        )
        assert errors and errors > 0, "the outage was not noticed"
        assert max_pending <= 40, f"{max_pending} messages held in memory, over the bound"
        got = store.query_series(SeriesQuery())
        assert got.height == 9000
        expected = pl.DataFrame(
            {"ts": [s.ts for b in batches for s in b.samples], "member": [b.member for b in batches for _ in b.samples]}
        ).sort("ts")
        assert got.select(pl.col("ts").cast(pl.Int64), "member").sort("ts").equals(expected)
    finally:
        pub.close()
        store.close()


async def test_two_ingestors_on_one_shared_subscription_store_every_sample_once(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    regs = lambda: register(MA, MB)  # noqa: E731
    one = Ingestor(ingest_settings(mosquitto.port, tmp_path / "1"), store, regs)
    two = Ingestor(ingest_settings(mosquitto.port, tmp_path / "2"), store, regs)
    pub = Publisher(mosquitto.port)
    try:
        async with running(one), running(two):
            batches = [make_batch(MA if i % 3 else MB, f"g-{i % 4:08x}", 20) for i in range(200)]
            for b in batches:
                pub.batch(b)
            await wait_until(lambda: one.stored_samples + two.stored_samples >= 4000, what="all batches stored")
            # Anything delivered twice was queued for an ingestor before the sentinel that ingestor gets after it
            # (the broker keeps each client's messages in order): send one-sample sentinels until both stored one.
            before = (one.stored_samples, two.stored_samples)
            sentinels = 0
            deadline = time.monotonic() + 20
            while one.stored_samples == before[0] or two.stored_samples == before[1]:
                assert time.monotonic() < deadline, "a sentinel did not reach both ingestors"
                pub.batch(make_batch(MA, "g-0000005e", 1))
                sentinels += 1
                total = 4000 + sentinels
                await wait_until(lambda: one.stored_samples + two.stored_samples >= total, what="the sentinel stored")  # noqa: B023
        assert one.stored_samples + two.stored_samples == 4000 + sentinels
        assert one.stored_samples > 0 and two.stored_samples > 0, "the load was not shared"
        assert store.count() == 4000 + sentinels
    finally:
        pub.close()
        store.close()


class SwitchableStore:
    """A real DuckDB store behind a switch: while ``down`` every write fails as unavailable."""

    def __init__(self, inner: DuckDBStore, *, error: Exception | None = None) -> None:
        self.inner = inner
        self.down = False
        self.error = error or StoreUnavailable("switched off")

    def write(self, member: str, samples: Sequence[Sample]) -> int:
        if self.down:
            raise self.error
        return self.inner.write(member, samples)

    def write_many(self, batches: Mapping[str, Sequence[Sample]]) -> int:
        if self.down:
            raise self.error
        return self.inner.write_many(batches)

    def query_series(self, query: SeriesQuery) -> pl.DataFrame:
        return self.inner.query_series(query)

    def query_rollups(self, query: RollupQuery) -> pl.DataFrame:
        return self.inner.query_rollups(query)

    def refresh_rollups(self) -> int:
        return self.inner.refresh_rollups()

    @property
    def retention_ns(self) -> int | None:
        return self.inner.retention_ns

    @property
    def late_recomputes(self) -> dict[str, int]:
        return self.inner.late_recomputes

    def enforce_retention(self, now_ns: int | None = None) -> int:
        return self.inner.enforce_retention(now_ns)

    def close(self) -> None:
        self.inner.close()


async def test_memory_stays_bounded_and_shed_messages_are_redelivered(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    store = SwitchableStore(DuckDBStore(tmp_path / "hub.duckdb"))
    store.down = True
    settings = ingest_settings(mosquitto.port, tmp_path, max_inflight_messages=5, max_pending_messages=10)
    ing = Ingestor(settings, store, lambda: register(MA))
    pub = Publisher(mosquitto.port)
    max_pending = 0
    try:
        async with running(ing):
            for _ in range(120):
                pub.publish(samples_topic(MA, "g-00000001"), encode_batch(make_batch(MA, "g-00000001", 10)), wait=False)
                max_pending = max(max_pending, ing.pending_messages)
                await asyncio.sleep(0.01)
            shed = lambda: ing.registry.get_sample_value(  # noqa: E731
                "mdh_ingest_messages_total", {"instance": ing.metrics._instance, "result": "shed"}
            )

            def window_full() -> bool:
                nonlocal max_pending
                max_pending = max(max_pending, ing.pending_messages)
                return ing.pending_messages >= 5

            # While the store is down nothing is acknowledged: the broker fills the receive window (5) and stops.
            await wait_until(window_full, within=15, what="the broker's window of 5 messages held unacknowledged")
            assert ing.stored_samples == 0
            store.down = False
            await wait_until(lambda: store.inner.count() == 1200, within=30, what="every batch stored after recovery")
        assert max_pending <= 10
        assert store.inner.count() == 1200
        assert (shed() or 0) > 0, "the bound was never reached, so shedding and redelivery went untested"
    finally:
        pub.close()
        store.close()


async def test_an_unexpected_store_error_is_retried_not_fatal(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    store = SwitchableStore(DuckDBStore(tmp_path / "hub.duckdb"), error=RuntimeError("a bug nobody wrapped"))
    store.down = True
    ing = Ingestor(ingest_settings(mosquitto.port, tmp_path), store, lambda: register(MA))
    pub = Publisher(mosquitto.port)
    try:
        async with running(ing):
            for _ in range(5):
                pub.batch(make_batch(MA, "g-00000001", 10))
            errors = lambda: ing.registry.get_sample_value(  # noqa: E731
                "mdh_ingest_store_errors_total", {"instance": ing.metrics._instance, "kind": "unexpected"}
            )
            await wait_until(lambda: (errors() or 0) >= 2, what="repeated unexpected errors")
            store.down = False
            stored = lambda: ing.registry.get_sample_value(  # noqa: E731
                "mdh_ingest_messages_total", {"instance": ing.metrics._instance, "result": "stored"}
            )
            # The rows are in the store before the writer's coroutine resumes and records the success, so wait on
            # the acknowledgement the ingestor counts after it has marked the store healthy again.
            await wait_until(lambda: (stored() or 0) >= 5, what="the five messages stored once the error is gone")
            assert store.inner.count() == 50
            assert ing.store_ok
    finally:
        pub.close()
        store.close()


class GatedStore(SwitchableStore):
    """A real DuckDB store whose first write waits until the test opens the gate (a slow InfluxDB request)."""

    def __init__(self, inner: DuckDBStore) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def write_many(self, batches: Mapping[str, Sequence[Sample]]) -> int:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
        if first and not self.gate.wait(30):
            raise StoreUnavailable("the gate stayed closed")
        return self.inner.write_many(batches)


async def test_a_batch_is_acknowledged_after_its_own_write_while_an_earlier_one_is_still_written(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    store = GatedStore(DuckDBStore(tmp_path / "hub.duckdb"))
    # every message is a batch of its own (10 samples), two writes in flight
    settings = ingest_settings(mosquitto.port, tmp_path, batch_max_samples=10, max_writes_in_flight=2)
    ing = Ingestor(settings, store, lambda: register(MA))
    pub = Publisher(mosquitto.port)
    stored = lambda: ing.registry.get_sample_value(  # noqa: E731
        "mdh_ingest_messages_total", {"instance": ing.metrics._instance, "result": "stored"}
    )
    try:
        async with running(ing):
            pub.batch(make_batch(MA, "g-00000001", 10))
            await wait_until(lambda: store.calls == 1, what="the first write under way (held at the gate)")
            pub.batch(make_batch(MA, "g-00000001", 10))
            await wait_until(lambda: (stored() or 0) == 1, what="the second batch written beside the first")
            assert store.inner.count() == 10
            assert ing.pending_messages == 1, "the first batch's message must stay unacknowledged"
            store.gate.set()
            await wait_until(lambda: (stored() or 0) == 2, what="the first batch written once the gate opened")
            assert store.inner.count() == 20 and ing.pending_messages == 0
    finally:
        store.gate.set()
        pub.close()
        store.close()
