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

The jobs are split: :mod:`e2e_machine` (the server process and the baseline), :mod:`e2e_leg`
(one leg: gateway, ingestor, store, probe); this file runs the legs and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (the import path)
from e2e_leg import leg, run_gateway
from e2e_machine import MachineServer, baseline, serve

# -- main -------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from testkit.servers import free_port, start_mosquitto

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
