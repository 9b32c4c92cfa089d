"""What the ingestor takes of a member, against a real Mosquitto: sample times within the hub's clock plus its
allowance and the store's retention, a quota of assets and gateways per member, and gateways whose clock runs
ahead."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import polars as pl
import pytest

from storage import DuckDBStore, Ingestor, SeriesQuery, StoreSettings, open_store
from storage.deadletter import read_dead_letters
from testkit.mqtt import Publisher, ingest_settings, make_batch, register, wait_until
from testkit.servers import MosquittoServer
from tests.storage.conftest import influx_settings
from tests.storage.test_ingestor import GA, GB, MA, MB, running
from wire import Batch, Sample, encode_batch

pytestmark = pytest.mark.integration


def stamped(member: str, gateway: str, *times: int, asset: str = "a-0000beef") -> Batch:
    """A batch of ``member`` with one power sample of ``asset`` at each of ``times``."""
    b = make_batch(member, gateway, len(times), asset=asset)
    return msgspec.structs.replace(
        b, samples=[Sample(t, asset, "press", "power_kw", float(i)) for i, t in enumerate(times)]
    )


async def test_a_batch_stamped_ahead_of_the_hubs_clock_is_dead_lettered_and_poisons_nothing(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """A member (or a gateway whose clock is set wrong) sends samples stamped a day ahead: the batch is dead-lettered
    with the code ``future`` and nothing of it is stored, so its asset's rollups never hold a day to come and the
    member's next batches of that asset, stamped right, are stored and folded as usual. A sample at the edge of the
    allowance (``max_ahead_s``) is taken."""
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = ingest_settings(mosquitto.port, tmp_path, max_ahead_s=60.0)
    ing = Ingestor(settings, store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    try:
        async with running(ing):
            now = time.time_ns()
            ahead = stamped(MA, GA, now - 10**9, now + 86_400 * 10**9)
            pub.batch(ahead)
            right = stamped(MA, GA, now, now + 10**9)
            edge = stamped(MB, GB, now + 50 * 10**9)  # inside the 60 s allowance
            pub.batch(right)
            pub.batch(edge)
            await wait_until(
                lambda: ing.stored_samples == 3 and ing.dead_lettered == 1,
                what="the batches stamped right stored and the one stamped ahead dead-lettered",
            )
            assert ing.refusals == {"future": 1}
        letters = read_dead_letters(settings.dead_letter_path)
        assert [d["code"] for d in letters] == ["future"] and "ahead" in letters[0]["reason"]
        assert letters[0]["payload"] == encode_batch(ahead)  # kept whole: it can be replayed once the clock is right
        got = store.query_series(SeriesQuery(members=(MA,)))
        assert got["ts"].dt.epoch("us").to_list() == [now // 1000, (now + 10**9) // 1000]
        edge_got = store.query_series(SeriesQuery(members=(MB,)))
        assert edge_got["ts"].dt.epoch("us").to_list() == [(now + 50 * 10**9) // 1000]
    finally:
        pub.close()
        store.close()


@pytest.mark.parametrize("kind", ["duckdb", "influxdb1"])
async def test_a_sample_older_than_the_stores_retention_is_dead_lettered_before_any_write(
    kind: str, mosquitto: MosquittoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A member (or a gateway back from an outage longer than the retention) sends a batch with one sample older than
    the store keeps raw data. InfluxDB refuses such a request as a partial write: the flush failed, every message in
    it (an honest member's too) was written again one by one, and the old batch was dead-lettered as
    ``store_rejected`` while its other samples were stored all the same; DuckDB stored it until the next
    housekeeping. A member could slow everyone's ingest that way with one old sample per batch. Now such a batch is
    refused before any write (``expired``), whole, and the other batches are stored as they come."""
    day = 86_400 * 10**9
    if kind == "duckdb":
        store = open_store(StoreSettings(kind="duckdb", path=tmp_path / "hub.duckdb", retention_days=1))
    else:
        store = open_store(influx_settings(request.getfixturevalue("influx_server"), retention_days=1))
    settings = ingest_settings(mosquitto.port, tmp_path)
    ing = Ingestor(settings, store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    try:
        async with running(ing):
            now = time.time_ns()
            old = stamped(MA, GA, now - 10**9, now - 2 * day, now)
            honest = stamped(MB, GB, now - 10**9, now)
            edge = stamped(MB, GB, now - day + 2 * 3600 * 10**9)  # inside the retention, by more than the hour
            for b in (old, honest, edge):
                pub.batch(b)
            await wait_until(
                lambda: ing.stored_samples == 3 and ing.dead_lettered == 1,
                what="the honest batches stored and the one with an expired sample dead-lettered",
            )
            assert ing.refusals == {"expired": 1}
        letters = read_dead_letters(settings.dead_letter_path)
        assert [d["code"] for d in letters] == ["expired"] and "retention" in letters[0]["reason"]
        assert store.query_series(SeriesQuery(members=(MA,))).height == 0  # refused whole: nothing of it stored
        got = store.query_series(SeriesQuery(members=(MB,)))["ts"].dt.epoch("us").to_list()
        assert sorted(got) == sorted(t // 1000 for b in (honest, edge) for t in (s.ts for s in b.samples))
    finally:
        pub.close()
        store.close()


async def test_a_member_inventing_assets_and_gateways_is_held_to_its_quota(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """A member floods the hub with batches of new asset pseudonyms, and publishes under ever new gateway pseudonyms:
    each new asset is new series in the store and a rollup carry in memory, each gateway a tracker state and a metrics
    label. Past its quota every such batch is dead-lettered (``quota``), whole; the member's batches of known assets
    and gateways are still taken, and an honest member loses nothing."""
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = ingest_settings(mosquitto.port, tmp_path, max_assets_per_member=40, max_gateways_per_member=3)
    ing = Ingestor(settings, store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    now = time.time_ns()
    flood = [stamped(MA, GA, now, asset=f"a-{k:08x}") for k in range(100)]  # one new asset a batch
    gateways = [stamped(MA, f"g-{k:08x}", now, asset="a-00000000") for k in range(1, 10)]  # known asset, new gateway
    honest = [stamped(MB, GB, now + i, asset=f"a-{k:08x}") for i, k in enumerate(range(30))]
    try:
        async with running(ing):
            for b in [*flood, *gateways, *honest]:
                pub.batch(b)
            pub.batch(stamped(MA, GA, now + 5, asset="a-00000001"))  # a known asset of a known gateway
            refused = len(flood) - 40 + len(gateways) - 2  # GA and two more gateways fit
            await wait_until(
                lambda: ing.stored_samples == 40 + 2 + 30 + 1 and ing.dead_lettered == refused,
                what="every batch within the quota stored and every other one dead-lettered",
            )
            assert ing.refusals == {"quota": refused}
            assert ing.quota.counts(MA) == (40, 3) and ing.quota.counts(MB) == (30, 1)
            assert {(g.member, g.gateway) for g in ing.gateways()} == {
                (MA, GA),
                (MA, "g-00000001"),
                (MA, "g-00000002"),
                (MB, GB),
            }
        frame = store.query_series(SeriesQuery())
        per_member = {m: n for m, n in frame.group_by("member").agg(pl.col("asset").n_unique()).iter_rows()}
        assert per_member == {MA: 40, MB: 30}
        letters = read_dead_letters(settings.dead_letter_path)
        assert {d["code"] for d in letters} == {"quota"} and "max_assets_per_member" in letters[0]["reason"]
    finally:
        pub.close()
        store.close()


async def test_a_gateway_whose_clock_runs_ahead_is_reported_before_its_samples_are_refused(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """A gateway sealing its batches two minutes ahead of the hub's clock: its samples are still taken (within the
    allowance), and the hub's health names the gateway and the lead, and its gauge shows it, until it seals right."""
    store = DuckDBStore(tmp_path / "hub.duckdb")
    ing = Ingestor(ingest_settings(mosquitto.port, tmp_path), store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    gauge = "mdh_ingest_gateway_clock_ahead_seconds"
    try:
        async with running(ing):
            ahead = msgspec.structs.replace(make_batch(MA, GA, 3), sent_ns=time.time_ns() + 120 * 10**9)
            pub.batch(ahead)
            pub.batch(make_batch(MB, GB, 2))  # sealed now
            await wait_until(lambda: ing.stored_samples == 5, what="both batches stored")
            health = ing.health()
            assert health["ok"] is True and health["status"] == "degraded"
            [reason] = health["reasons"]  # type: ignore[misc]
            assert reason.startswith(f"gateway {GA} of {MA}: its clock runs at least 1") and "NTP" in reason
            labels = {"instance": ing.metrics._instance, "member": MA, "gateway": GA}
            assert 100 < (ing.registry.get_sample_value(gauge, labels) or 0) <= 120
            other = ing.registry.get_sample_value(gauge, {**labels, "member": MB, "gateway": GB})
            assert other is not None and -5 < other <= 0
            pub.batch(make_batch(MA, GA, 1))  # its clock set right
            await wait_until(lambda: ing.stored_samples == 6, what="the next batch stored")
            assert ing.health()["status"] == "ok" and ing.health()["reasons"] == []
    finally:
        pub.close()
        store.close()
