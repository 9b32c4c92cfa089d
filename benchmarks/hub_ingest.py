"""Hub ingest benchmark: MQTT → hub ingest → store, acknowledged after the write, against the store's own ceiling.

For each store (InfluxDB 1.x started from the Debian package, and the embedded DuckDB
store) the script measures, in the same run:

* the *ceiling*: the same samples written straight into the store in bulk. InfluxDB:
  pre-encoded line protocol POSTed to ``/write`` in 10,000-point requests by one poster,
  and by two concurrent posters, each into a fresh database, before and after the
  pipelines; the best of the four is the ceiling (``ceiling_one_poster`` and
  ``ceiling_two_posters`` are the best of each kind). DuckDB: one bulk ``INSERT`` of the
  whole frame into the same table;
* the *pipeline*: the hub's ingest role (``running_hub``, product defaults) with one and
  with two ingest workers on the shared subscription (InfluxDB; the embedded store takes
  one). Once every worker is connected, a publisher process sends the samples as wire
  batches (1,000 samples each, QoS 1) to a real Mosquitto as fast as it takes them; the
  clock runs from the first publish until every sample is stored and its message
  acknowledged. CPU-seconds of the ingest processes, InfluxDB and Mosquitto meanwhile.

Prints a table and, as its last line, JSON: ``{"influxdb": {"points_per_s", "ceiling_points_per_s", "ratio",
"workers", "ingest_cpu_s", ..., "ceiling_one_poster", "ceiling_two_posters", "by_workers": {...}},
"embedded": {...}}`` (``influxdb`` shows the better of the worker counts).
Run: ``.venv/bin/python benchmarks/hub_ingest.py [--samples N] [--store influxdb|embedded] [--workers 1 2]
[--profile FILE]`` (default 1,000,000 samples; about 70-110 s on 2 cores). ``--profile`` records the first
InfluxDB leg's process with py-spy and adds its stage breakdown (``profile_breakdown.hub_breakdown``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common  # (also the import path)
import duckdb
import httpx
from _common import cpu_s
from profile_breakdown import hub_breakdown

from core.register import Member, Register, dump_register
from metalldaten.hub import HubSettings, running_hub
from storage import IngestSettings, StoreSettings
from storage.base import samples_frame
from storage.duckdb.store import _DDL
from storage.influx.lineprotocol import SampleEncoder
from testkit.mqtt import Publisher
from testkit.servers import free_port_pair, start_influxdb, start_mosquitto
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


def influx_ceiling(url: str, user: str, password: str, batches: list[Batch], posters: int, run: int = 0) -> float:
    """Points/s of pre-encoded 10,000-point requests POSTed by ``posters`` concurrent clients (a fresh database)."""
    database = f"ceiling{posters}r{run}"
    with httpx.Client(auth=(user, password), timeout=60) as http:
        http.post(f"{url}/query", data={"q": f"CREATE DATABASE {database}"}).raise_for_status()
    encoder = SampleEncoder()
    flat = [s for b in batches for s in b.samples]
    bodies = [encoder.encode(MEMBER, flat[i : i + 10_000]) for i in range(0, len(flat), 10_000)]
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    clients = [httpx.Client(auth=(user, password), timeout=60) for _ in range(posters)]

    def post(http: httpx.Client) -> None:
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            r = http.post(f"{url}/write", params={"db": database, "precision": "ns"}, content=body)
            if r.status_code != 204:
                raise RuntimeError(f"ceiling write failed: {r.status_code} {r.text[:200]}")

    try:
        with ThreadPoolExecutor(max_workers=posters) as pool:
            t0 = time.perf_counter()
            for f in [pool.submit(post, http) for http in clients]:
                f.result()
            return len(flat) / (time.perf_counter() - t0)
    finally:
        for http in clients:
            http.close()


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


def worker_stored(port: int) -> int:
    """Samples an ingest worker process has stored, from its operators' ``/metrics``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith("mdh_ingest_samples_total")
    )


def publish_file(mqtt_port: int, path: Path, started: Any) -> None:
    """A publisher process: publish the (topic, payload) pairs pickled in ``path`` with QoS 1, as fast as the
    broker takes them; ``started`` receives the monotonic time of the first publish."""
    payloads = pickle.loads(path.read_bytes())  # noqa: S301 (written by the benchmark itself a moment ago)
    pub = Publisher(mqtt_port)
    started.put(time.monotonic())
    infos = [pub.publish(topic, payload, wait=False) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(120)
    pub.close()


async def pipeline(
    store: StoreSettings,
    mqtt_port: int,
    work: Path,
    batches: list[Batch],
    *,
    workers: int = 1,
    profile: Path | None = None,
    cpu_of: dict[str, int] | None = None,
) -> tuple[float, dict[str, float]]:
    """Run the hub's ingest role with ``workers`` ingestors on the shared subscription (the first in this process,
    the others as the hub's worker processes); once every worker is connected, a publisher process sends every
    batch as fast as the broker takes it, and the clock runs from its first publish until every sample is stored
    (and acknowledged: a sample counts once its write returned). ``profile`` records this process with py-spy."""
    total = sum(len(b.samples) for b in batches)
    tag = uuid.uuid4().hex[:6]
    register = work / f"members-{tag}.toml"
    register.write_text(dump_register(Register(member=[Member(pseudonym=MEMBER, group="grp-bench")])))
    codec = Codec()
    payloads = work / f"payloads-{tag}.pickle"
    payloads.write_bytes(pickle.dumps([(samples_topic(b.member, b.gateway), codec.encode(b)) for b in batches]))
    port = free_port_pair()
    settings = HubSettings(
        register_file=register,
        roles=["ingest"],
        metrics_listen=f"127.0.0.1:{port}",
        store=store,
        ingest=IngestSettings(
            host="127.0.0.1",
            port=mqtt_port,
            tls=False,
            username=None,
            client_id=f"bench-{tag}",
            dead_letter_path=work / f"dead-{tag}.jsonl",
            rollup_refresh_s=None,
            shared_group=f"bench{tag}",
            workers=workers,
        ),  # batching, in-flight and memory bounds: the product defaults
    )
    context = multiprocessing.get_context("spawn")
    started: Any = context.Queue()
    async with running_hub(settings) as hub:
        assert hub.ingestor is not None
        ingestor = hub.ingestor
        await hub.wait_started()
        await wait_workers(port, workers)
        others = [port + k - 1 for k in range(2, workers + 1)]

        def stored() -> int:
            return ingestor.stored_samples + sum(worker_stored(p) for p in others)

        spy = None if profile is None else start_py_spy(os.getpid(), profile)
        children = hub.workers.pids() if hub.workers is not None else []
        pids = {"ingest": os.getpid(), **{f"worker{k}": pid for k, pid in enumerate(children, 2)}, **(cpu_of or {})}
        publisher = context.Process(target=publish_file, args=(mqtt_port, payloads, started))
        publisher.start()
        t0 = await asyncio.to_thread(started.get, True, 60)
        cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
        deadline = t0 + 90
        done = 0
        while done < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {total} samples stored after 90 s")
            await asyncio.sleep(0.05)  # each look at a worker's /metrics costs it CPU: twenty a second at most
            done = await asyncio.to_thread(stored)
        elapsed = time.monotonic() - t0
        cpu = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
        ingest_cpu = sum(v for k, v in cpu.items() if k == "ingest" or k.startswith("worker"))
        figures = {"ingest_cpu_s": round(ingest_cpu, 1)}
        figures |= {f"{k}_cpu_s": round(v, 1) for k, v in cpu.items() if k in (cpu_of or {})}
        if spy is not None:
            stop_py_spy(spy)
        await asyncio.to_thread(publisher.join, 30)
        if ingestor.dead_lettered:
            raise RuntimeError(f"{ingestor.dead_lettered} batches were dead-lettered")
    if done != total:
        raise RuntimeError(f"{done} samples stored for {total} published (some twice)")
    return total / elapsed, figures


async def wait_workers(port: int, workers: int) -> None:
    """Wait until the hub's worker processes answer healthy on their operators' listeners."""
    async with asyncio.timeout(60):
        for k in range(2, workers + 1):
            while True:
                try:
                    r = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port + k - 1}/healthz", timeout=2)
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)


SPY_FLAGS = ("--idle", "--threads", "--nonblocking")


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return _common.start_py_spy(pid, out, rate=100, flags=SPY_FLAGS)


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    spy.wait(30)


def leg(name: str, points: float, ceiling: float, **extra: float) -> dict[str, float]:
    ratio = points / ceiling
    print(f"{name:22s} pipeline {points:>12,.0f} points/s   ceiling {ceiling:>12,.0f} points/s   ratio {ratio:.2f}")
    return {"points_per_s": round(points), "ceiling_points_per_s": round(ceiling), "ratio": round(ratio, 3), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--store", choices=("influxdb", "embedded", "both"), default="both")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="InfluxDB legs: ingest workers")
    parser.add_argument("--profile", type=Path, help="record the first InfluxDB leg's ingest with py-spy (raw stacks)")
    parser.add_argument("-v", action="store_true", help="log at INFO level")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.v else logging.WARNING)
    batches = make_batches(args.samples)
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="mdh-bench-") as tmp:
        work = Path(tmp)
        mosquitto = start_mosquitto(work / "mosquitto")
        influx = start_influxdb(work / "influxdb")
        try:
            if args.store in ("influxdb", "both"):
                assert influx.proc is not None and mosquitto.proc is not None
                servers = {"influxdb": influx.proc.pid, "mosquitto": mosquitto.proc.pid}
                # The ceiling is measured before and after the pipelines, and the best of each kind counts:
                # a load spike from elsewhere on the machine cannot lower it to the pipelines' advantage.
                ceilings = [
                    influx_ceiling(influx.url, influx.username, influx.password, batches, posters=n, run=run)
                    for run, n in ((0, 1), (0, 2))
                ]
                legs: dict[int, dict[str, float]] = {}
                runs: dict[int, tuple[float, dict[str, float]]] = {}
                for n in args.workers:
                    store = StoreSettings(
                        kind="influxdb1",
                        url=influx.url,
                        database=f"bench{n}",
                        username=influx.username,
                        password=influx.password,
                    )  # type: ignore[arg-type]
                    profile = args.profile if n == args.workers[0] else None
                    runs[n] = asyncio.run(
                        pipeline(store, mosquitto.port, work, batches, workers=n, profile=profile, cpu_of=servers)
                    )
                ceilings += [
                    influx_ceiling(influx.url, influx.username, influx.password, batches, posters=n, run=run)
                    for run, n in ((1, 1), (1, 2))
                ]
                one, two = max(ceilings[0], ceilings[2]), max(ceilings[1], ceilings[3])
                ceiling = max(one, two)
                for n, (points, cpu) in runs.items():
                    legs[n] = leg(f"influxdb, {n} worker(s)", points, ceiling, workers=n, **cpu)
                best = max(legs.values(), key=lambda x: x["points_per_s"])
                result["influxdb"] = {
                    **best,
                    "ceiling_one_poster": round(one),
                    "ceiling_two_posters": round(two),
                    "by_workers": {
                        str(n): {"points_per_s": x["points_per_s"], "ratio": x["ratio"]} for n, x in legs.items()
                    },
                }
            if args.store in ("embedded", "both"):
                ceiling = duckdb_ceiling(work / "ceiling.duckdb", batches)
                store = StoreSettings(kind="duckdb", path=work / "hub.duckdb")
                points, cpu = asyncio.run(pipeline(store, mosquitto.port, work, batches))
                result["embedded"] = leg("embedded", points, ceiling, workers=1, **cpu)
        finally:
            influx.stop()
            mosquitto.stop()
    if args.profile is not None:
        result["profile"] = hub_breakdown(args.profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
