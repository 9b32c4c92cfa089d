"""End-to-end benchmark, one leg: the real gateway in its own process, the ingestor and a store in
this one, and a latency probe polling the store; returns the leg's figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import cpu_s, percentile, start_py_spy
from e2e_machine import ENTRY, PUBLISHING_MS, QUEUE_SIZE, SIGNAL_MAP, URI, MachineServer, node_name

from testkit.servers import MosquittoServer

MEMBER = "m-e2e0b1"
PROBE_EVERY = 10  # every 10th asset is polled for latency
POLL_S = 0.1
DRAIN_S = 20.0


# -- the gateway (subprocess) -----------------------------------------------------------------------


def gateway_config(tmp: Path, nodes: int, opcua_port: int, mqtt_port: int, health_port: int) -> dict[str, Any]:
    return {
        "identity": {"member": MEMBER, "gateway_name": "bench-e2e-gw", "key_file": str(tmp / "member.key")},
        "policy": {"signals": {local: {"canonical": canonical} for local, canonical in SIGNAL_MAP}},
        "opcua": [
            {
                "name": "bench",
                "url": f"opc.tcp://127.0.0.1:{opcua_port}/",
                "batch_size": 1000,
                "timeout_s": 30,
                "groups": [
                    {
                        "name": "default",
                        "publishing_interval_ms": PUBLISHING_MS,
                        "sampling_interval_ms": 0,
                        "queue_size": QUEUE_SIZE,
                    }
                ],
                "nodes": [
                    {
                        "asset": f"Maschine-{i // len(SIGNAL_MAP):04d}",
                        "signal": SIGNAL_MAP[i % len(SIGNAL_MAP)][0],
                        "node": f"nsu={URI};s={node_name(i)}",
                    }
                    for i in range(nodes)
                ],
            }
        ],
        "buffer": {"path": str(tmp / "buffer.sqlite")},
        "uplink": {"host": "127.0.0.1", "port": mqtt_port, "tls": False},
        "health": {"port": health_port},
    }


def run_gateway(config: Path) -> None:
    from core.configfile import settings_from_dict
    from gateway.config import GatewaySettings
    from gateway.runner import Gateway

    logging.basicConfig(level=logging.WARNING)
    settings = settings_from_dict(GatewaySettings, json.loads(config.read_text(encoding="utf-8")), source=config)

    async def main() -> None:
        async with Gateway(settings) as gw:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, gw.stop)
            await gw.run()

    asyncio.run(main())


# -- one end-to-end leg -----------------------------------------------------------------------------


def count_stored(store: Any, start_ns: int, end_ns: int) -> int:
    from storage import SeriesQuery

    frame = store.query_series(SeriesQuery(start_ns=start_ns, end_ns=end_ns, every_s=86_400, agg="count"))
    return int(frame["value"].sum() or 0)


class LatencyProbe:
    """Polls the newest rows of a subset of series and records when each row first became visible."""

    def __init__(self, store: Any, assets: tuple[str, ...], series: int) -> None:
        self.store = store
        self.assets = assets
        self.series = series
        self.latencies: list[int] = []
        self.seen: set[tuple[str, str, int]] = set()
        self.polls = 0
        self.poll_ms: list[float] = []
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, start_ns: int) -> None:
        from storage import SeriesQuery

        last: dict[tuple[str, str], int] = {}
        cursor = start_ns
        while not self._stop.is_set():
            t = time.time_ns()
            frame = await asyncio.to_thread(self.store.query_series, SeriesQuery(assets=self.assets, start_ns=cursor))
            self.polls += 1
            self.poll_ms.append((time.time_ns() - t) / 1e6)
            if frame.height:
                cols = (frame["asset"].to_list(), frame["signal"].to_list(), frame["ts"].dt.epoch("ns").to_list())
                for asset, sig, ts in zip(*cols, strict=True):
                    key = (asset, sig, ts)
                    if key in self.seen:
                        continue
                    self.seen.add(key)
                    self.latencies.append(t - ts)
                    if ts > last.get((asset, sig), 0):
                        last[(asset, sig)] = ts
                if len(last) == self.series:
                    # Every probe series' rows arrive in order: only rows newer than the laggard matter.
                    cursor = max(cursor, min(last.values()) + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, POLL_S - (time.time_ns() - t) / 1e9))


def _py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for ``seconds`` at 200 Hz into ``out`` (raw collapsed stacks)."""
    return start_py_spy(pid, out, rate=200, flags=("-d", str(int(seconds)), "--nonblocking"))


async def leg(
    kind: str,
    tmp: Path,
    server: MachineServer,
    broker: MosquittoServer,
    nodes: int,
    rate: float,
    seconds: float,
    *,
    probe_latency: bool = True,
    profile: Path | None = None,
    profile_ingest: Path | None = None,
    ingest_overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One leg. ``probe_latency=False`` leaves the store unpolled (for CPU figures of the pipeline alone);
    ``profile`` records the gateway process with py-spy (raw collapsed stacks) during the window,
    ``profile_ingest`` this process (the ingestor and its store); ``ingest_overrides`` sets [ingest] keys."""
    from gateway_opcua import scrape

    from core.register import Member, Register
    from gateway.pseudonymise import generate_key
    from storage import Ingestor, IngestSettings, SeriesQuery, StoreSettings, open_store
    from testkit.servers import InfluxServer, free_port, start_influxdb

    work = tmp / kind
    work.mkdir()
    influx: InfluxServer | None = None
    if kind == "duckdb":
        store_settings = StoreSettings(kind="duckdb", path=work / "hub.duckdb")
    else:
        influx = start_influxdb(work / "influxdb")
        store_settings = StoreSettings(
            kind="influxdb1",
            url=influx.url,
            database="e2e",
            username=influx.username,
            password=influx.password,  # type: ignore[arg-type]
        )
    store = open_store(store_settings)
    register = Register(member=[Member(pseudonym=MEMBER, group="grp-bench")])
    ingest = IngestSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": broker.port,
            "tls": False,
            "username": None,
            "client_id": f"e2e-{kind}-{uuid.uuid4().hex[:6]}",
            "shared_group": f"e2e{kind}",
            "dead_letter_path": work / "dead.jsonl",
            **(ingest_overrides or {}),
        }
    )
    health_port = free_port()
    generate_key(work / "member.key", key_id="k-e2e")
    config = work / "gateway.json"
    config.write_text(json.dumps(gateway_config(work, nodes, server.port, broker.port, health_port)), encoding="utf-8")
    gw: subprocess.Popen[bytes] | None = None
    try:
        async with Ingestor(ingest, store, lambda: register) as ingestor:
            ingest_task = asyncio.create_task(ingestor.run())
            await asyncio.wait_for(ingestor.connected.wait(), 15)
            with (work / "gateway.log").open("wb") as log:
                gw = subprocess.Popen(  # noqa: ASYNC220 - started once; returns at once
                    [sys.executable, str(ENTRY), "--gateway", str(config)],
                    cwd=work,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            # The gateway is subscribed when the initial value of every node has reached the store.
            deadline = time.monotonic() + 60
            while ingestor.stored_samples < nodes:
                if time.monotonic() > deadline or gw.poll() is not None:
                    raise RuntimeError(f"the initial values did not reach the store; see {work / 'gateway.log'}")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            assets = sorted(set((await asyncio.to_thread(store.query_series, SeriesQuery()))["asset"].to_list()))
            probe_assets = tuple(assets[::PROBE_EVERY])
            probe = LatencyProbe(store, probe_assets, len(probe_assets) * len(SIGNAL_MAP))
            # The first rollup refresh after a start recomputes every asset's open hour from raw (there are no
            # carries yet): a cost once per process start, not per point. It is run here, before the window, and
            # reported on its own; the periodic refresh then goes on incrementally inside the window.
            refresh0 = cpu_s(os.getpid())
            if ingest.rollup_refresh_s:
                await asyncio.to_thread(store.refresh_rollups)
            startup_refresh_cpu_s = cpu_s(os.getpid()) - refresh0
            procs = {"server": server.proc.pid, "gateway": gw.pid, "hub": os.getpid()}
            if broker.proc is not None:
                procs["broker"] = broker.proc.pid
            if influx is not None and influx.proc is not None:
                procs["influxd"] = influx.proc.pid
            cpu0 = {k: cpu_s(p) for k, p in procs.items()}
            m0, stored0 = scrape(health_port), ingestor.stored_samples
            start_ns = time.time_ns()
            probe_task = asyncio.create_task(probe.run(start_ns) if probe_latency else asyncio.sleep(0))
            spies = [
                _py_spy(pid, out, seconds)
                for pid, out in ((gw.pid, profile), (os.getpid(), profile_ingest))
                if out is not None
            ]
            t0 = time.monotonic()
            result = await server.run(rate, seconds)
            produced = result["written"]
            # Drain: wait until the ingestor has written as many samples as were produced (or give up).
            deadline = time.monotonic() + DRAIN_S
            while ingestor.stored_samples - stored0 < produced and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            drained_s = time.monotonic() - t0 - result["seconds"]
            await asyncio.sleep(0.5)  # a last probe poll
            cpu1 = {k: cpu_s(p) for k, p in procs.items()}
            m1 = scrape(health_port)
            for spy in spies:
                await asyncio.to_thread(spy.wait, 60)
            probe.stop()
            await probe_task
            ingestor.stop()
            await ingest_task
        stored = await asyncio.to_thread(count_stored, store, result["first_ns"], result["last_ns"] + 1)
        probe_stored = await asyncio.to_thread(
            lambda: (
                store.query_series(
                    SeriesQuery(assets=probe_assets, start_ns=result["first_ns"], end_ns=result["last_ns"] + 1)
                ).height
            )
        )
    finally:
        if gw is not None:
            gw.terminate()
            try:
                gw.wait(30)
            except subprocess.TimeoutExpired:
                gw.kill()
                gw.wait(5)
        store.close()
        if influx is not None:
            influx.stop()
    lat = sorted(probe.latencies)
    dt = result["seconds"]
    cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in procs}
    received, acked = "mdh_gateway_readings_total", "mdh_gateway_uplink_samples_acked_total"
    return {
        "store": kind,
        "changes_per_s": round(produced / dt),
        "stored_per_s": round(stored / dt),
        "produced": produced,
        "stored": stored,
        "lost": produced - stored,
        "gateway_received": round(m1[received] - m0[received]),
        "gateway_acked": round(m1[acked] - m0[acked]),
        "dead_lettered": ingestor.dead_lettered,
        "p50_ms": round(percentile(lat, 0.50) / 1e6, 1),
        "p95_ms": round(percentile(lat, 0.95) / 1e6, 1),
        "p99_ms": round(percentile(lat, 0.99) / 1e6, 1),
        "max_ms": round(lat[-1] / 1e6, 1) if lat else None,
        "latency_samples": len(lat),
        "probe_stored": probe_stored,
        "probe_polls": probe.polls,
        "poll_p50_ms": round(percentile(probe.poll_ms, 0.5), 1),
        "drain_s": round(drained_s, 2),
        "seconds": round(dt, 1),
        "cpu_s": cpu,
        "startup_refresh_cpu_s": round(startup_refresh_cpu_s, 2),
    }
