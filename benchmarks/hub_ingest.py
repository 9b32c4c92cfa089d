"""Hub ingest benchmark: MQTT → ingestor → store, acknowledged after the write, against the store's own ceiling.

For each store (InfluxDB 1.x started from the Debian package, and the embedded DuckDB
store) the script measures, in the same run:

* the *ceiling*: the same samples written straight into the store in bulk — for
  InfluxDB pre-encoded line protocol POSTed to ``/write`` in 10,000-point requests, one
  request at a time (the ingestor writes one at a time too); for DuckDB one bulk
  ``INSERT`` of the whole frame into the same table;
* the *pipeline*: the samples published as wire batches (1,000 samples each, QoS 1) to
  a real Mosquitto while the ingestor's session is away, then the ingestor started and
  timed until every sample is in the store and every message acknowledged.

Prints a table and, as its last line, JSON:
``{"influxdb": {"points_per_s", "ceiling_points_per_s", "ratio"}, "embedded": {...}}``.
Run: ``.venv/bin/python benchmarks/hub_ingest.py [--samples N]`` (default 1,500,000; about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _common  # noqa: F401  (the import path)
import duckdb
import httpx

from core.register import Member, Register
from storage import DuckDBStore, Ingestor, IngestSettings, Store, StoreSettings, open_store
from storage.duckdb.store import _DDL, samples_frame
from storage.influx.lineprotocol import SampleEncoder
from testkit.mqtt import Publisher
from testkit.servers import start_influxdb, start_mosquitto
from wire import SCHEMA_VERSION, Batch, Codec, Sample, samples_topic

MEMBER = "m-0be4c1"
GATEWAYS = [f"g-{i:08x}" for i in range(4)]
BATCH = 1000
SIGNALS = ("power_kw", "temperature_c", "spindle_speed_rpm", "energy_kwh", "parts_total", "parts_scrap_total", "state")
STATES = ("running", "idle", "setup", "down", "off")


def make_batches(total: int) -> list[Batch]:
    """Realistic batches: 50 assets × 7 signals, one sample per series per second, 1,000 samples a batch."""
    t0 = 1_767_571_200 * 10**9
    samples: list[Sample] = []
    i = 0
    while len(samples) < total:
        second = t0 + i * 10**9
        for a in range(50):
            asset = f"a-{a:08x}"
            for s in SIGNALS:
                value: float | str
                if s == "state":
                    value = STATES[(i // 60 + a) % 5]
                elif s in ("energy_kwh", "parts_total", "parts_scrap_total"):
                    value = float(i * (a + 1))
                else:
                    value = 10.0 + (i * 7 + a) % 97 / 3
                samples.append(Sample(ts=second, asset=asset, asset_class="cnc_milling", signal=s, value=value))
        i += 1
    samples = samples[:total]
    return [
        Batch(
            schema=SCHEMA_VERSION,
            batch_id=uuid.uuid4().hex,
            member=MEMBER,
            gateway=GATEWAYS[k % len(GATEWAYS)],
            key_id="k1",
            sent_ns=time.time_ns(),
            samples=samples[j : j + BATCH],
        )
        for k, j in enumerate(range(0, len(samples), BATCH))
    ]


def influx_ceiling(url: str, user: str, password: str, batches: list[Batch]) -> float:
    with httpx.Client(auth=(user, password), timeout=60) as http:
        http.post(f"{url}/query", data={"q": "CREATE DATABASE ceiling"}).raise_for_status()
        encoder = SampleEncoder()
        flat = [s for b in batches for s in b.samples]
        bodies = [encoder.encode(MEMBER, flat[i : i + 10_000]) for i in range(0, len(flat), 10_000)]
        t0 = time.perf_counter()
        for body in bodies:
            r = http.post(f"{url}/write", params={"db": "ceiling", "precision": "ns"}, content=body)
            if r.status_code != 204:
                raise RuntimeError(f"ceiling write failed: {r.status_code} {r.text[:200]}")
        return len(flat) / (time.perf_counter() - t0)


def duckdb_ceiling(path: Path, batches: list[Batch]) -> float:
    frame = samples_frame(MEMBER, [s for b in batches for s in b.samples])
    con = duckdb.connect(str(path))
    con.execute(_DDL)
    t0 = time.perf_counter()
    con.register("incoming", frame)
    con.execute("INSERT INTO samples BY NAME SELECT * FROM incoming ON CONFLICT DO NOTHING")
    con.unregister("incoming")
    con.commit()
    elapsed = time.perf_counter() - t0
    con.close()
    return frame.height / elapsed


async def pipeline(store: Store, mqtt_port: int, work: Path, batches: list[Batch]) -> float:
    """Queue every batch at the broker for the ingestor's session, then time the ingestor draining it."""
    total = sum(len(b.samples) for b in batches)
    settings = IngestSettings(
        host="127.0.0.1",
        port=mqtt_port,
        tls=False,
        username=None,
        client_id=f"bench-{uuid.uuid4().hex[:6]}",
        dead_letter_path=work / "dead.jsonl",
        rollup_refresh_s=None,
        shared_group=f"bench{uuid.uuid4().hex[:6]}",
    )  # batching, in-flight and memory bounds: the product defaults
    register = Register(member=[Member(pseudonym=MEMBER, group="grp-bench")])
    ingestor = Ingestor(settings, store, lambda: register)
    async with ingestor:  # create the session and its subscription, then go away
        await asyncio.wait_for(ingestor.connected.wait(), 10)
    codec = Codec()
    payloads = [(samples_topic(b.member, b.gateway), codec.encode(b)) for b in batches]
    pub = Publisher(mqtt_port)
    infos = [pub.publish(topic, payload, wait=False) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(60)
    pub.close()
    ingestor = Ingestor(settings, store, lambda: register)
    async with ingestor:
        task = asyncio.create_task(ingestor.run())
        t0 = time.perf_counter()
        deadline = t0 + 90
        while ingestor.stored_samples < total:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {ingestor.stored_samples} of {total} samples stored after 90 s")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        ingestor.stop()
        await task
    if ingestor.dead_lettered:
        raise RuntimeError(f"{ingestor.dead_lettered} batches were dead-lettered")
    return total / elapsed


def leg(name: str, points: float, ceiling: float) -> dict[str, float]:
    ratio = points / ceiling
    print(f"{name:10s} pipeline {points:>12,.0f} points/s   ceiling {ceiling:>12,.0f} points/s   ratio {ratio:.2f}")
    return {"points_per_s": round(points), "ceiling_points_per_s": round(ceiling), "ratio": round(ratio, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_500_000)
    parser.add_argument("-v", action="store_true", help="log at INFO level")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if "-v" in sys.argv else logging.WARNING)
    batches = make_batches(args.samples)
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mdh-bench-") as tmp:
        work = Path(tmp)
        mosquitto = start_mosquitto(work / "mosquitto")
        influx = start_influxdb(work / "influxdb")
        try:
            ceiling = influx_ceiling(influx.url, influx.username, influx.password, batches)
            store = open_store(
                StoreSettings(
                    kind="influxdb1",
                    url=influx.url,
                    database="bench",
                    username=influx.username,
                    password=influx.password,
                )
            )  # type: ignore[arg-type]
            try:
                points = asyncio.run(pipeline(store, mosquitto.port, work, batches))
            finally:
                store.close()
            result["influxdb"] = leg("influxdb", points, ceiling)
            ceiling = duckdb_ceiling(work / "ceiling.duckdb", batches)
            duck = DuckDBStore(work / "hub.duckdb")
            try:
                points = asyncio.run(pipeline(duck, mosquitto.port, work, batches))
            finally:
                duck.close()
            result["embedded"] = leg("embedded", points, ceiling)
        finally:
            influx.stop()
            mosquitto.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
