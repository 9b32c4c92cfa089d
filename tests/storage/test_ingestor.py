"""The ingestor against a real Mosquitto: storing, acknowledging, dead letters, gateway status, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard
from prometheus_client import generate_latest

from core.register import with_member_changed
from storage import DuckDBStore, Ingestor, SeriesQuery
from storage.deadletter import read_dead_letters
from testkit.mqtt import Publisher, ingest_settings, make_batch, register, wait_until
from testkit.servers import MosquittoServer
from wire import Status, encode_batch, encode_status, samples_topic, status_topic
from wire.codec import MAGIC

pytestmark = pytest.mark.integration

MA, MB, MX = "m-0000aa", "m-0000bb", "m-0000ff"
GA, GB = "g-000000a1", "g-000000b1"


@contextlib.asynccontextmanager
async def running(ingestor: Ingestor) -> AsyncIterator[Ingestor]:
    async with ingestor:
        task = asyncio.create_task(ingestor.run())
        try:
            await asyncio.wait_for(ingestor.connected.wait(), 10)
            yield ingestor
        finally:
            ingestor.stop()
            await asyncio.wait_for(task, 10)


async def test_batches_are_stored_and_gateways_tracked(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    ing = Ingestor(ingest_settings(mosquitto.port, tmp_path), store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    try:
        async with running(ing):
            pub.status(MA, GA, "online")
            batches = [make_batch(MA, GA, 100), make_batch(MB, GB, 50), make_batch(MA, GA, 25)]
            for b in batches:
                pub.batch(b)
            pub.batch(batches[0])  # a redelivered batch is harmless
            await wait_until(lambda: ing.stored_samples >= 275, what="all samples stored")
            pub.status(MA, GA, "offline")
            await wait_until(lambda: any(g.deaths for g in ing.gateways()), what="death message")
            assert store.count() == 175
            states = {(g.member, g.gateway): g for g in ing.gateways()}
            assert states[(MA, GA)].online is False and states[(MA, GA)].births == 1
            assert states[(MB, GB)].online is True and states[(MB, GB)].last_seen_ns is not None
            samples = ing.registry.get_sample_value
            assert samples("mdh_ingest_samples_total", {"instance": ing.metrics._instance}) == 275
            assert samples("mdh_ingest_messages_total", {"instance": ing.metrics._instance, "result": "stored"}) == 4
            assert ing.dead_lettered == 0
            got = store.query_series(SeriesQuery(members=(MB,)))
            assert got["value"].to_list() == [float(i) for i in range(50)]
    finally:
        pub.close()
        store.close()


def _bomb() -> bytes:
    """A valid zstd frame that expands to 256 MiB of zeros and does not declare its size."""
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=False)
    chunk = b"\0" * (1 << 20)
    out = cctx.compressobj()
    frame = b"".join(out.compress(chunk) for _ in range(256)) + out.flush()
    return MAGIC + frame


async def test_hostile_payloads_are_dead_lettered_and_the_ingestor_lives_on(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = ingest_settings(mosquitto.port, tmp_path, max_payload_bytes=64 * 1024)
    ing = Ingestor(settings, store, lambda: register(MA, MB, inactive=(MX,)))
    pub = Publisher(mosquitto.port)
    bomb = _bomb()
    assert len(bomb) < 64 * 1024
    hostile = [
        (samples_topic(MA, GA), b"\x00\xffnot a batch", "magic"),
        (samples_topic(MA, GA), MAGIC + b"\x28\xb5\x2f\xfd garbage", "decompress"),
        (samples_topic(MA, GA), b"MDZ1" + b"x" * (70 * 1024), "too_large"),
        (samples_topic(MA, GA), bomb, "too_large"),
        (samples_topic(MA, GA), encode_batch(make_batch(MB, GA, 3)), "member_mismatch"),
        (samples_topic(MX, GA), encode_batch(make_batch(MX, GA, 3)), "member"),
        (samples_topic("m-0000cc", GA), encode_batch(make_batch("m-0000cc", GA, 3)), "member"),
        ("mdh/v1/m-0000aa/not-a-gateway/samples", encode_batch(make_batch(MA, GA, 3)), "topic"),
        (f"mdh/v1/{MA}/{GA}/status", b'{"schema":1}', "decode"),
    ]
    try:
        async with running(ing):
            for topic, payload, _ in hostile:
                pub.publish(topic, payload)
            good = make_batch(MA, GA, 10)
            pub.batch(good)
            await wait_until(
                lambda: ing.stored_samples == 10 and ing.dead_lettered == len(hostile),
                what="the good batch stored and every hostile one dead-lettered",
            )
            health = ing.health()
            assert health["ok"] is True and health["status"] == "degraded"  # working, and saying what it refuses
            assert [r.split(" since start")[0] for r in health["reasons"]] == [  # type: ignore[union-attr]
                f"{n} message(s) refused as {code}" for code, n in sorted(Counter(code for *_, code in hostile).items())
            ]
        letters = read_dead_letters(settings.dead_letter_path)
        assert [d["code"] for d in letters] == [code for *_, code in hostile]
        assert [d["topic"] for d in letters] == [topic for topic, *_ in hostile]
        assert letters[0]["payload"] == hostile[0][1] and letters[0]["size"] == len(hostile[0][1])
        assert all(d["reason"] and d["time"] for d in letters)
        assert store.count() == 10
        assert (
            ing.registry.get_sample_value(
                "mdh_ingest_dead_letters_total", {"instance": ing.metrics._instance, "code": "too_large"}
            )
            == 2
        )
    finally:
        pub.close()
        store.close()


def _status(member: str, gateway: str, *, schema: int = 1, ts_ns: int = 1_767_571_200 * 10**9) -> bytes:
    return encode_status(Status(schema=schema, member=member, gateway=gateway, state="online", ts_ns=ts_ns))


async def test_status_messages_are_validated_like_batches(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = ingest_settings(mosquitto.port, tmp_path)
    ing = Ingestor(settings, store, lambda: register(MA, MB))
    pub = Publisher(mosquitto.port)
    topic = status_topic(MA, GA)
    hostile = [
        (_status(MA, GA, schema=99, ts_ns=-5), "schema"),
        (_status(MA, GA, ts_ns=-5), "invalid"),
        (_status(MA, GA, ts_ns=0), "invalid"),
        (_status(MA, GA, ts_ns=5_000_000_000 * 10**9), "invalid"),  # year 2128
        (_status(MB, GA), "member_mismatch"),
        (_status(MA, GB), "gateway_mismatch"),
        (_status("m-0000aa\n", GA), "invalid"),
        (b'{"schema":1,"member":"m-0000aa","gateway":"g-000000a1","state":"online","ts_ns":1.5}', "decode"),
    ]
    try:
        async with running(ing):
            for payload, _ in hostile:
                pub.publish(topic, payload)
            pub.publish(topic, _status(MA, GA))
            await wait_until(
                lambda: ing.dead_lettered == len(hostile) and any(g.births for g in ing.gateways()),
                what="every bad status dead-lettered and the good one taken",
            )
            state = {(g.member, g.gateway): g for g in ing.gateways()}
            # Only the valid status counted as a birth; the refused ones changed no gateway's state.
            assert list(state) == [(MA, GA)] and state[(MA, GA)].births == 1
        letters = read_dead_letters(settings.dead_letter_path)
        assert [d["code"] for d in letters] == [code for _, code in hostile]
        assert "schema version 99" in str(letters[0]["reason"]) and "-5" in str(letters[1]["reason"])
        value = ing.registry.get_sample_value
        instance = ing.metrics._instance
        for reason, n in (("schema", 1), ("invalid", 4), ("member_mismatch", 1), ("gateway_mismatch", 1)):
            assert value("mdh_ingest_refused_total", {"instance": instance, "reason": reason}) == n, reason
        assert value("mdh_ingest_messages_total", {"instance": instance, "result": "status"}) == 1
        assert ing.refusals["schema"] == 1 and ing.health()["refused"] == dict(sorted(ing.refusals.items()))
    finally:
        pub.close()
        store.close()


async def test_retained_messages_are_never_stored(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    """A retained message is refused live (MQTT 5 keeps the publisher's retain flag), and those planted before an
    ingestor subscribes are not replayed to it (MQTT 5) or refused when they are (MQTT 3.1.1)."""
    store = DuckDBStore(tmp_path / "hub.duckdb")
    pub = Publisher(mosquitto.port)
    planted = "a-00000dead"
    pub.publish(samples_topic(MA, GA), encode_batch(make_batch(MA, GA, 7, asset=planted)), retain=True)
    pub.publish(status_topic(MA, GA), _status(MA, GA), retain=True)
    try:
        # MQTT 5: nothing replayed; the live retained batch is refused. MQTT 3.1.1 (no shared group, so the broker
        # replays): the two planted messages and the batch retained in the first round are refused.
        for protocol, expected in (("5", 1), ("3.1.1", 3)):
            settings = ingest_settings(
                mosquitto.port,
                tmp_path / protocol,
                protocol=protocol,
                shared_group="ingest" if protocol == "5" else None,
            )
            ing = Ingestor(settings, store, lambda: register(MA, MB))
            async with running(ing):
                if protocol == "5":
                    pub.publish(samples_topic(MB, GB), encode_batch(make_batch(MB, GB, 5, asset=planted)), retain=True)
                # On the topics of the retained ones: MQTT delivers these after whatever the broker replays.
                pub.batch(make_batch(MA, GA, 3))
                pub.batch(make_batch(MB, GB, 2))
                await wait_until(
                    lambda: ing.stored_samples == 5 and ing.dead_lettered >= expected,  # noqa: B023
                    what="the live batches stored and the retained ones refused",
                )
            assert ing.refusals == {"retained": expected}, protocol
            assert ing.dead_lettered == expected
            assert (
                ing.registry.get_sample_value(
                    "mdh_ingest_refused_total", {"instance": ing.metrics._instance, "reason": "retained"}
                )
                == expected
            )
            letters = read_dead_letters(settings.dead_letter_path)
            assert [d["code"] for d in letters] == ["retained"] * expected
            assert all(g.births == 0 for g in ing.gateways())  # the retained birth message was not taken
        assert store.count() == 10
        assert store.query_series(SeriesQuery(assets=(planted,))).height == 0
    finally:
        pub.close()
        store.close()


async def test_a_suspended_members_gateway_status_is_forgotten(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    current = {"register": register(MA, MB)}
    store = DuckDBStore(tmp_path / "hub.duckdb")
    ing = Ingestor(ingest_settings(mosquitto.port, tmp_path), store, lambda: current["register"])
    pub = Publisher(mosquitto.port)
    try:
        async with running(ing):
            pub.status(MA, GA, "online")
            pub.batch(make_batch(MA, GA, 2))
            pub.status(MB, GB, "online")
            await wait_until(lambda: len(ing.gateways()) == 2 and ing.stored_samples == 2, what="both gateways heard")

            def series_of(member: str) -> list[str]:
                text = generate_latest(ing.registry).decode()
                return [line.split("{")[0] for line in text.splitlines() if f'member="{member}"' in line]

            assert sorted(series_of(MA)) == [
                "mdh_ingest_gateway_clock_ahead_seconds",
                "mdh_ingest_gateway_last_seen_timestamp_seconds",
            ]
            current["register"] = with_member_changed(current["register"], MA, suspended=True)
            pub.status(MB, GB, "online")  # the next message makes the ingestor read the register
            await wait_until(lambda: [g.member for g in ing.gateways()] == [MB], what="MA's status forgotten")
            assert series_of(MA) == []  # nor do its pseudonyms stay in the metrics
            assert series_of(MB) == ["mdh_ingest_gateway_last_seen_timestamp_seconds"]
    finally:
        pub.close()
        store.close()
