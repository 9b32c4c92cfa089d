"""End-to-end benchmark: OPC UA server → gateway → Mosquitto → ingestor → store.

Four parts on the loopback, each in its own process where they would be in production:

* an asyncua server (subprocess) with ``--nodes`` Double variables (default 2,000) that changes them
  round robin at a fixed target rate (default 10,000 changes/s, i.e. 5 changes/s per node) for
  ``--seconds`` (default 30). Every change has a new value (a per-node sequence number) and its own
  SourceTimestamp, so no two changes of a node are alike and none may legitimately be coalesced;
* the real gateway (subprocess; :class:`gateway.runner.Gateway` with settings built in code): one
  subscription over all nodes, publishing interval 100 ms, sampling interval 0 (the server reports
  every write), queue size 10; normalise, pseudonymise, disk buffer and MQTT uplink with their
  default settings. Every node maps to its own (asset, canonical signal), so the store keeps one
  row per change;
* a real Mosquitto, tuned as in ``broker_config/``;
* the ingestor with its default batching, in this process, writing to the embedded DuckDB store and,
  in a second leg with a new gateway, to a real InfluxDB 1.x (``--store duckdb|influxdb1``: one leg).

Figures of the end-to-end leg:

* produced: the changes the server wrote (counted by the server); stored: rows in the store with a
  timestamp inside the production window, counted with a store query after the pipeline drained;
  lost = produced − stored. The gateway's own counters (readings received, samples acknowledged by
  the broker) say where any loss happened;
* latency: a probe subset of the series (every 10th asset) is polled through ``query_series``
  every 100 ms; a row first seen by a poll that started at T has latency T − source timestamp.
  The poll period bounds the error: figures are conservative by up to 100 ms;
* CPU seconds used by each process during the leg (from /proc), to show where the time goes.

Baseline in the same run: the same server changing its nodes as fast as it can for
``--baseline-seconds`` while a bare asyncua client (same subscription parameters, no gateway,
broker, ingestor or store) counts the notifications it receives: the ceiling of the OPC UA side
on this machine, and the latency floor of the subscription.

Run: ``.venv/bin/python benchmarks/end_to_end.py [--store duckdb|influxdb1|both]`` (about 85 s for
both legs, 50 s for one; ``--rate 0``: the server as fast as it can). The last line of output is JSON;
its top-level figures are those of the first leg, ``legs`` holds every leg's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:
    from tests.servers import MosquittoServer

URI = "urn:metalldaten:bench-e2e"
MEMBER = "m-e2e0b1"
#: Local signal name on the server -> canonical signal; node i is signal i % 5 of asset i // 5.
SIGNAL_MAP = (
    ("Power", "power_kw"),
    ("Temp", "temperature_c"),
    ("Speed", "spindle_speed_rpm"),
    ("Energy", "energy_kwh"),
    ("Parts", "parts_total"),
)
PUBLISHING_MS = 100
QUEUE_SIZE = 10
PROBE_EVERY = 10  # every 10th asset is polled for latency
POLL_S = 0.1
DRAIN_S = 20.0


def node_name(i: int) -> str:
    return f"M{i // len(SIGNAL_MAP):04d}.{SIGNAL_MAP[i % len(SIGNAL_MAP)][0]}"


# -- the machine side (subprocess) ------------------------------------------------------------------


async def produce(server: Any, ids: list[Any], counter: int, rate: float, seconds: float) -> tuple[int, dict]:
    """Write changes round robin at ``rate`` per second (0: as fast as possible) for ``seconds``."""
    from asyncua import ua

    n = len(ids)
    written = 0
    first_ns = last_ns = time.time_ns()
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        todo = min(int((now - t0) * rate) - written, 200) if rate > 0 else 200
        if todo <= 0:
            await asyncio.sleep(0.002)
            continue
        for _ in range(todo):
            j = counter % n
            ts = datetime.now(UTC)
            dv = ua.DataValue(
                ua.Variant(float(counter // n + 1), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=ts
            )
            await server.write_attribute_value(ids[j], dv)
            counter += 1
            written += 1
        last_ns = time.time_ns()
        await asyncio.sleep(0)
    elapsed = time.monotonic() - t0
    return counter, {"written": written, "seconds": elapsed, "first_ns": first_ns, "last_ns": last_ns}


async def serve(port: int, nodes: int) -> None:
    """The server process: build the address space, then obey ``run RATE SECONDS`` lines on stdin."""
    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    idx = await server.register_namespace(URI)
    folder = await server.nodes.objects.add_folder(idx, "Machines")
    ids = []
    for i in range(nodes):
        v = await folder.add_variable(ua.NodeId(node_name(i), idx), node_name(i), 0.0)
        ids.append(v.nodeid)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line)
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()

    def reply(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async with server:
        reply({"ready": nodes})
        counter = 0
        while True:
            cmd = (await commands.get()).split()
            if not cmd or cmd[0] != "run":
                break
            counter, result = await produce(server, ids, counter, float(cmd[1]), float(cmd[2]))
            reply(result)


class MachineServer:
    """Handle on the server subprocess."""

    def __init__(self, port: int, nodes: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), str(nodes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _line(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the OPC UA server process ended")
        return json.loads(line)

    def ready(self) -> None:
        self._line()

    async def run(self, rate: float, seconds: float) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {rate} {seconds}\n")
        self.proc.stdin.flush()
        return await asyncio.to_thread(self._line)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- baseline: a bare subscription client ---------------------------------------------------------


async def baseline(server: MachineServer, nodes: int, seconds: float) -> dict[str, float]:
    from asyncua import Client, ua
    from asyncua.common.subscription import DataChangeEvent, OverflowPolicy

    client = Client(f"opc.tcp://127.0.0.1:{server.port}/", timeout=30)
    await client.connect()
    try:
        idx = (await client.get_namespace_array()).index(URI)
        sub = await client.create_subscription(
            PUBLISHING_MS, handler=None, queue_maxsize=max(100_000, 4 * nodes), overflow=OverflowPolicy.WARN
        )
        for start in range(0, nodes, 1000):
            part = [client.get_node(ua.NodeId(node_name(i), idx)) for i in range(start, min(nodes, start + 1000))]
            await sub.subscribe_data_change(part, queuesize=QUEUE_SIZE, sampling_interval=0)
        received = 0
        latencies: list[int] = []
        window = [0, 0]

        async def consume() -> None:
            nonlocal received
            async for ev in sub:
                if not isinstance(ev, DataChangeEvent):
                    continue
                dv = ev.data.monitored_item.Value
                ts = dv.SourceTimestamp
                ns = int(ts.timestamp() * 1e9) if ts is not None else 0
                if window[0] <= ns <= window[1]:
                    received += 1
                    if received % 10 == 0:
                        latencies.append(time.time_ns() - ns)

        window[:] = [time.time_ns(), 2**62]
        task = asyncio.create_task(consume())
        result = await server.run(0, seconds)
        window[1] = result["last_ns"]
        await asyncio.sleep(1.0)  # the last publishing intervals
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)
    produced = result["written"]
    lat = sorted(latencies)
    return {
        "server_changes_per_s": produced / result["seconds"],
        "changes_per_s": received / result["seconds"],
        "produced": produced,
        "received": received,
        "p50_ms": pct(lat, 0.50) / 1e6,
        "p99_ms": pct(lat, 0.99) / 1e6,
    }


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    return float(values[min(len(values) - 1, int(q * len(values)))])


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


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def leg(
    kind: str, tmp: Path, server: MachineServer, broker: MosquittoServer, nodes: int, rate: float, seconds: float
) -> dict[str, Any]:
    from gateway_opcua import scrape

    from core.register import Member, Register
    from gateway.pseudonymise import generate_key
    from storage import Ingestor, IngestSettings, SeriesQuery, StoreSettings, open_store
    from tests.servers import InfluxServer, free_port, start_influxdb

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
    ingest = IngestSettings(
        host="127.0.0.1",
        port=broker.port,
        tls=False,
        username=None,
        client_id=f"e2e-{kind}-{uuid.uuid4().hex[:6]}",
        shared_group=f"e2e{kind}",
        dead_letter_path=work / "dead.jsonl",
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
                    [sys.executable, __file__, "--gateway", str(config)], cwd=work, stdout=log, stderr=subprocess.STDOUT
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
            procs = {"server": server.proc.pid, "gateway": gw.pid, "hub": os.getpid()}
            if broker.proc is not None:
                procs["broker"] = broker.proc.pid
            if influx is not None and influx.proc is not None:
                procs["influxd"] = influx.proc.pid
            cpu0 = {k: cpu_s(p) for k, p in procs.items()}
            m0, stored0 = scrape(health_port), ingestor.stored_samples
            start_ns = time.time_ns()
            probe_task = asyncio.create_task(probe.run(start_ns))
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
        "p50_ms": round(pct(lat, 0.50) / 1e6, 1),
        "p95_ms": round(pct(lat, 0.95) / 1e6, 1),
        "p99_ms": round(pct(lat, 0.99) / 1e6, 1),
        "max_ms": round(lat[-1] / 1e6, 1) if lat else None,
        "latency_samples": len(lat),
        "probe_stored": probe_stored,
        "probe_polls": probe.polls,
        "poll_p50_ms": round(pct(sorted(probe.poll_ms), 0.5), 1),
        "drain_s": round(drained_s, 2),
        "seconds": round(dt, 1),
        "cpu_s": cpu,
    }


# -- main -------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from tests.servers import free_port, start_mosquitto

    t_start = time.monotonic()
    broker = start_mosquitto(tmp / "mosquitto")
    server = MachineServer(free_port(), args.nodes)
    try:
        await asyncio.wait_for(asyncio.to_thread(server.ready), 60)
        base = await baseline(server, args.nodes, args.baseline_seconds)
        print(
            f"baseline  server {base['server_changes_per_s']:>9,.0f} changes/s flat out; bare client received "
            f"{base['changes_per_s']:,.0f}/s ({base['received']:,} of {base['produced']:,}); "
            f"p50 {base['p50_ms']:.0f} ms, p99 {base['p99_ms']:.0f} ms",
            flush=True,
        )
        legs = []
        for kind in ("duckdb", "influxdb1") if args.store == "both" else (args.store,):
            r = await leg(kind, tmp, server, broker, args.nodes, args.rate, args.seconds)
            legs.append(r)
            print(
                f"{kind:9s} server {r['changes_per_s']:>9,} changes/s; stored {r['stored_per_s']:,}/s "
                f"({r['stored']:,} of {r['produced']:,}, lost {r['lost']:,}; gateway received "
                f"{r['gateway_received']:,}, broker acked {r['gateway_acked']:,}); latency p50 {r['p50_ms']} ms, "
                f"p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms over {r['latency_samples']:,} "
                f"probe rows; CPU s {r['cpu_s']}",
                flush=True,
            )
    finally:
        server.stop()
        broker.stop()
    first = legs[0]
    out: dict[str, Any] = {
        "changes_per_s": first["changes_per_s"],
        "stored_per_s": first["stored_per_s"],
        "lost": first["lost"],
        "p50_ms": first["p50_ms"],
        "p95_ms": first["p95_ms"],
        "p99_ms": first["p99_ms"],
        "store": first["store"],
        "baseline_changes_per_s": round(base["changes_per_s"]),
        "baseline_server_changes_per_s": round(base["server_changes_per_s"]),
        "baseline_p99_ms": round(base["p99_ms"], 1),
        "target_changes_per_s": args.rate,
        "nodes": args.nodes,
        "target_met": all(
            r["stored_per_s"] >= 0.99 * args.rate and r["lost"] == 0 and r["p99_ms"] < 2000 for r in legs
        ),
        "legs": legs,
        "total_s": round(time.monotonic() - t_start, 1),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=10_000, help="target value changes per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--store", choices=("duckdb", "influxdb1", "both"), default="both")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "NODES"), help=argparse.SUPPRESS)
    parser.add_argument("--gateway", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), int(args.serve[1])))
        return
    if args.gateway:
        run_gateway(Path(args.gateway))
        return
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="mdh-bench-e2e-"))
    try:
        out = asyncio.run(bench(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
