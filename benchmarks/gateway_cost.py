"""Benchmark: what a point costs at the edge — CPU-seconds per 10,000 value changes at 10,000 changes/s.

An asyncua server in its own process (``e2e_machine``: ``--nodes`` Double variables, default 5,000,
changed round robin at ``--rate``, default 10,000 changes/s, every change with a new value and its own
SourceTimestamp) feeds, one after the other:

* **baseline** — a bare asyncua subscription client in its own process: the same nodes, the same
  subscription parameters as the gateway's defaults, counting the notifications and nothing else.
  Its CPU is the floor of the generic asyncua client stack on these nodes;
* **the chain** — the real gateway (own process: subscription, normalise, pseudonymise, disk buffer,
  MQTT uplink), a real Mosquitto, and the hub's ingestor (this process) writing to a real InfluxDB 1.x
  (or the embedded DuckDB store with ``--store duckdb``). The store is not polled during the window, so
  the figures are the pipeline's own. InfluxDB's own CPU is reported but not part of the chain.

CPU seconds are read from /proc for each process over the production window plus the drain.
``lost`` = changes produced − rows stored in the window. ``--profile FILE`` also records the gateway
with py-spy during the window (raw collapsed stacks; ``benchmarks/profile_breakdown.py FILE`` sums them
by stage), ``--profile-ingest FILE`` the ingest process (``profile_breakdown.py FILE --hub``).

Run: ``.venv/bin/python benchmarks/gateway_cost.py [--seconds 30]`` (about 90 s). The last line is JSON:
``{"changes_per_s", "lost", "gateway_cpu_s_per_10k", "chain_cpu_s_per_10k", "bare_asyncua_cpu_s_per_10k", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (the import path)
from _common import cpu_s
from e2e_leg import leg
from e2e_machine import MachineServer, subscribe_bare


async def bare_client(port: int, nodes: int) -> None:
    """The baseline process: subscribe like the gateway does, count notifications, answer on stdin."""
    from asyncua import Client
    from asyncua.common.subscription import DataChangeEvent

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    client = Client(f"opc.tcp://127.0.0.1:{port}/", timeout=30)
    await client.connect()
    sub = await subscribe_bare(client, nodes)
    received = 0
    initial = asyncio.Event()

    async def consume() -> None:
        nonlocal received
        async for ev in sub:
            if isinstance(ev, DataChangeEvent) and ev.data.monitored_item.Value is not None:
                received += 1
                if received == nodes:
                    initial.set()

    task = asyncio.create_task(consume())
    await initial.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)  # "count" after the window
    sys.stdout.write(f"{received - nodes}\n")
    sys.stdout.flush()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 5)


async def baseline(server: MachineServer, nodes: int, rate: float, seconds: float) -> dict[str, Any]:
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; returns at once
        [sys.executable, __file__, "--bare", str(server.port), str(nodes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 90)
        if line.strip() != "ready":
            raise RuntimeError("the bare asyncua client did not subscribe")
        c0 = cpu_s(proc.pid)
        result = await server.run(rate, seconds)
        await asyncio.sleep(1.0)  # the last publishing intervals
        c1 = cpu_s(proc.pid)
        proc.stdin.write("count\n")
        proc.stdin.flush()
        received = int(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30))
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return {
        "produced": result["written"],
        "received": received,
        "changes_per_s": result["written"] / result["seconds"],
        "cpu_s": c1 - c0,
    }


def per_10k(cpu: float, points: int) -> float:
    return round(cpu / points * 10_000, 4) if points else float("nan")


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from testkit.servers import free_port, start_mosquitto

    overrides = dict(kv.split("=", 1) for kv in args.ingest)
    broker = start_mosquitto(tmp / "mosquitto")
    server = MachineServer(free_port(), args.nodes)
    try:
        await asyncio.wait_for(asyncio.to_thread(server.ready), 90)
        base = await baseline(server, args.nodes, args.rate, args.seconds)
        bare = per_10k(base["cpu_s"], base["received"])
        print(
            f"baseline  bare asyncua client: {base['received']:,} of {base['produced']:,} changes at "
            f"{base['changes_per_s']:,.0f}/s, {base['cpu_s']:.2f} CPU-s = {bare} CPU-s per 10k",
            flush=True,
        )
        r = await leg(
            args.store,
            tmp,
            server,
            broker,
            args.nodes,
            args.rate,
            args.seconds,
            probe_latency=False,
            profile=args.profile,
            profile_ingest=args.profile_ingest,
            ingest_overrides=overrides,
        )
    finally:
        server.stop()
        broker.stop()
    cpu = r["cpu_s"]
    chain_cpu = cpu["gateway"] + cpu.get("broker", 0.0) + cpu["hub"]
    out = {
        "changes_per_s": r["changes_per_s"],
        "lost": r["lost"],
        "gateway_cpu_s_per_10k": per_10k(cpu["gateway"], r["produced"]),
        "chain_cpu_s_per_10k": per_10k(chain_cpu, r["produced"]),
        "bare_asyncua_cpu_s_per_10k": bare,
        "broker_cpu_s_per_10k": per_10k(cpu.get("broker", 0.0), r["produced"]),
        "ingest_cpu_s_per_10k": per_10k(cpu["hub"], r["produced"]),
        "store_cpu_s_per_10k": per_10k(cpu.get("influxd", 0.0), r["produced"]),
        "store": args.store,
        # the hub's first rollup refresh after its start (every asset recomputed from raw), before the window
        "startup_refresh_cpu_s": r["startup_refresh_cpu_s"],
        **({"ingest_settings": overrides} if overrides else {}),
        "nodes": args.nodes,
        "produced": r["produced"],
        "stored": r["stored"],
        # where a loss happened: readings the gateway took in, samples the broker acknowledged, and how long the
        # drain waited for the store (it gives up after e2e_leg.DRAIN_S: under heavy load "lost" can be the store's lag)
        "gateway_received": r["gateway_received"],
        "gateway_acked": r["gateway_acked"],
        "drain_s": r["drain_s"],
        "baseline_received": base["received"],
        "baseline_produced": base["produced"],
        "cpu_s": cpu,
    }
    print(
        f"chain     gateway {out['gateway_cpu_s_per_10k']} + broker {out['broker_cpu_s_per_10k']} + ingest "
        f"{out['ingest_cpu_s_per_10k']} = {out['chain_cpu_s_per_10k']} CPU-s per 10k at {r['changes_per_s']:,} "
        f"changes/s; lost {r['lost']:,} (stored {r['stored']:,} of {r['produced']:,})",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--store", choices=("influxdb1", "duckdb"), default="influxdb1")
    parser.add_argument("--profile", type=Path, help="record the gateway with py-spy into this file")
    parser.add_argument(
        "--profile-ingest", type=Path, help="record the ingest process (this one) with py-spy into this file"
    )
    parser.add_argument(
        "--ingest",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an [ingest] setting for the hub's ingestor, for a diagnostic run (e.g. rollup_refresh_s=15)",
    )
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "NODES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        asyncio.run(bare_client(int(args.bare[0]), int(args.bare[1])))
        return
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="mdh-bench-cost-"))
    t0 = time.monotonic()
    try:
        out = asyncio.run(bench(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["total_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
