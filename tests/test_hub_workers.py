"""`[ingest] workers = 2`: the hub process and one worker process it starts share the subscription on a real
Mosquitto and write to a real InfluxDB; every sample is stored exactly once, each worker takes a share, and a
worker that dies is reported and restarted."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.register import dump_register
from metalldaten.hub import HubSettings, load_hub_settings, running_hub, worker_settings
from storage import SeriesQuery, StoreSettings, open_store
from testkit.mqtt import Publisher, ingest_settings, make_batch, register, wait_until
from testkit.servers import InfluxServer, MosquittoServer, free_port_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MA, MB = "m-0000aa", "m-0000bb"


def stored_by(port: int) -> int | None:
    """``mdh_ingest_samples_total`` of the process whose operators' listener is on ``port`` (None: not up)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    lines = [line for line in text.splitlines() if line.startswith("mdh_ingest_samples_total")]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def hub_settings(tmp_path: Path, mosquitto: MosquittoServer, influxdb: InfluxServer, port: int) -> HubSettings:
    (tmp_path / "members.toml").write_text(dump_register(register(MA, MB)), encoding="utf-8")
    return HubSettings(
        register_file=tmp_path / "members.toml",
        roles=["ingest"],
        metrics_listen=f"127.0.0.1:{port}",
        store=StoreSettings.model_validate(
            {
                "kind": "influxdb1",
                "url": influxdb.url,
                "database": "workers",
                "username": influxdb.username,
                "password": influxdb.password,
            }
        ),
        ingest=ingest_settings(mosquitto.port, tmp_path, workers=2, shared_group=f"t{uuid.uuid4().hex[:8]}"),
    )


def test_each_worker_has_its_own_session_dead_letters_and_listener(tmp_path: Path) -> None:
    settings = HubSettings(
        metrics_listen="127.0.0.1:9464",
        store=StoreSettings(kind="influxdb1"),
        ingest=ingest_settings(1883, tmp_path, workers=3, client_id="hub-a"),
    )
    two, three = worker_settings(settings, 2), worker_settings(settings, 3)
    assert (two.ingest.client_id, three.ingest.client_id) == ("hub-a-w2", "hub-a-w3")
    assert two.ingest.dead_letter_path == tmp_path / "dead.w2.jsonl"
    assert (two.metrics_listen, three.metrics_listen) == ("127.0.0.1:9465", "127.0.0.1:9466")
    assert two.roles == ["ingest"] and two.ingest.workers == 1
    assert two.ingest.shared_group == settings.ingest.shared_group and two.store == settings.store


def test_several_workers_on_the_embedded_store_are_refused_naming_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[store]\nkind = "duckdb"\npath = "hub.duckdb"\n\n[ingest]\nworkers = 2\n', encoding="utf-8")
    with pytest.raises(Exception) as info:
        load_hub_settings(path)
    text = str(info.value)
    assert str(path) in text and "'ingest.workers'" in text and "store.kind 'duckdb'" in text, text


async def test_two_workers_store_every_sample_once_each_takes_a_share_and_a_dead_one_is_restarted(
    mosquitto: MosquittoServer, influxdb: InfluxServer, tmp_path: Path
) -> None:
    port = free_port_pair()
    settings = hub_settings(tmp_path, mosquitto, influxdb, port)
    store = open_store(settings.store)
    pub = Publisher(mosquitto.port)
    try:
        async with running_hub(settings) as hub:
            assert hub.ingestor is not None and hub.workers is not None
            one = hub.ingestor
            await hub.wait_started()
            # worker 2 is a process of its own: healthy (connected, store writable) on the next port
            await wait_until(lambda: healthy(port + 1), within=60, what="worker 2 connected and healthy")

            def stored() -> tuple[int, int]:
                return one.stored_samples, stored_by(port + 1) or 0

            batches = [
                make_batch(MA if i % 3 else MB, f"g-{i % 4:08x}", 20, asset=f"a-{i % 5:08x}") for i in range(200)
            ]
            for b in batches:
                pub.batch(b)
            await wait_until(lambda: sum(stored()) >= 4000, within=60, what="all batches stored")
            # Anything delivered to both workers was queued before the sentinel each gets after it (the broker
            # keeps each session's messages in order): send one-sample sentinels until both stored one.
            before = stored()
            sentinels = 0
            deadline = time.monotonic() + 30
            while any(now == then for now, then in zip(stored(), before, strict=True)):
                assert time.monotonic() < deadline, f"a sentinel did not reach both workers: {stored()}"
                pub.batch(make_batch(MA, "g-0000005e", 1))
                sentinels += 1
                total = 4000 + sentinels
                await wait_until(lambda: sum(stored()) >= total, within=30, what="the sentinel stored")  # noqa: B023
            shares = stored()
            assert sum(shares) == 4000 + sentinels, f"written more than once: {shares}"
            assert all(n > 0 for n in shares), f"the load was not shared: {shares}"
            assert store.query_series(SeriesQuery()).height == 4000 + sentinels

            # A worker that dies is reported (degraded, with the reason) and restarted.
            (pid,) = hub.workers.pids()
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda: not hub.health()[0], within=10, what="the dead worker in the hub's health")
            _, doc = hub.health()
            ingest = doc["roles"]["ingest"]  # type: ignore[index]
            assert "exited with code -9" in str(ingest["workers"][0]["last_exit"]), ingest
            await wait_until(lambda: hub.health()[0], within=60, what="the worker restarted")
            assert hub.workers.pids() != [pid]
    finally:
        pub.close()
        store.close()
