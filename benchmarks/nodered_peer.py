"""Benchmark: the low-code peer — Node-RED's CPU-seconds per 10,000 value changes at 10,000 changes/s.

The same asyncua server as ``gateway_cost`` (``e2e_machine``: ``--nodes`` Double variables, default 5,000,
changed round robin at ``--rate``, default 10,000 changes/s, every change with a new value and its own
SourceTimestamp) and the same InfluxDB 1.x (``testkit.servers.start_influxdb``) feed, one after the other:

* **baseline** — the bare asyncua subscription client of ``gateway_cost`` (own process, the gateway's
  subscription parameters, counting notifications), so the figure is comparable with that benchmark's
  runs on the same machine;
* **the peer** — Node-RED (own process, ``node red.js``) running ``peer/flow.json``, the flow as a careful
  user builds it: *inject* (once, on deploy) → *function* "node list" (the 5,000 node ids) →
  node-red-contrib-opcua *OpcUa-Client*, action ``subscribe`` with topic ``multiple``: all nodes in one
  monitored-item group of one subscription → *function* "to point" (one point per change: measurement
  ``machine``, tags asset and signal, field value, the change's SourceTimestamp) → core *join* (manual,
  an array of ``msg.payload``, sent after 1,000 messages or 1 s after the first of a batch) →
  node-red-contrib-influxdb *influxdb batch* (InfluxDB 1.x, precision ms). Points are built before the
  join, not after it: a join of complete messages deep-copies every DataValue of the batch.

Subscription settings of the peer: interval 100 ms (the publishing interval, which the node also uses as
the sampling interval of a ``multiple`` group; the gateway publishes every 100 ms too), timestamps Both,
security None, transport settings off (node-opcua's own buffer and message sizes; the node's 8 KiB
fields apply only when they are on). Fixed by node-red-contrib-opcua and not settable for a group: queue size 1
with discardOldest, requestedLifetimeCount 30, maxKeepAliveCount 3, maxNotificationsPerPublish 10 (the
asyncua server ignores that limit and sends every notification of an interval in one response). Each
node changes every 500 ms, so a queue of 1 holds every change as long as publishing keeps up.

CPU seconds of the Node-RED process (all its threads) are read from /proc over the production window
plus the drain (until every produced change is stored, or no new row for 3 s, at most 20 s). ``lost`` =
changes produced − rows stored with a timestamp inside the production window; InfluxDB is not polled
during the production window. InfluxDB's own CPU is reported but not part of the peer's figure.

Install the peer (Node.js >= 18.5; exact versions in ``peer/package.json``: node-red 4.1.8, the newest
release for Node.js 20, as 5.x needs >= 22.9; node-red-contrib-opcua 0.2.354; node-red-contrib-influxdb
0.7.0; the whole tree in ``peer/package-lock.json``; ``node_modules`` is not committed)::

    npm ci --prefix benchmarks/peer

Run: ``.venv/bin/python benchmarks/nodered_peer.py [--seconds 30]`` (about 80 s). The last line is JSON:
``{"changes_per_s", "lost", "nodered_cpu_s_per_10k", "bare_asyncua_cpu_s_per_10k", "nodered_version", ...}``.
Not part of the test suite; it exits with a message when node or the packages are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (the import path)
from _common import HERE, cpu_s

PEER = HERE / "peer"
FLOW = PEER / "flow.json"
PACKAGES = ("node-red", "node-red-contrib-opcua", "node-red-contrib-influxdb")
MIN_NODE = (18, 5)
DATABASE = "peer"
MEASUREMENT = "machine"
DRAIN_S = 20.0
STALL_S = 3.0

SETTINGS_JS = """module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %d,
    flowFile: "flows.json",
    credentialSecret: false,
    flowFilePretty: true,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { tours: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    telemetry: { enabled: false },
};
"""


def check_peer() -> tuple[str, dict[str, str]]:
    """The node binary and the installed package versions; exits with a message when anything is missing."""
    node = shutil.which("node")
    if node is None:
        sys.exit(
            "nodered_peer: 'node' (Node.js >= 18.5) is not on PATH; install it, then: npm ci --prefix benchmarks/peer"
        )
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    try:
        have = tuple(int(p) for p in out.lstrip("v").split(".")[:2])
    except ValueError:
        have = (0, 0)
    if have < MIN_NODE:
        sys.exit(f"nodered_peer: Node.js {out or '?'} is too old; node-red 4.1 needs >= 18.5")
    wanted = json.loads((PEER / "package.json").read_text(encoding="utf-8"))["dependencies"]
    versions: dict[str, str] = {"node": out.lstrip("v")}
    for name in PACKAGES:
        meta = PEER / "node_modules" / name / "package.json"
        if not meta.exists():
            sys.exit(f"nodered_peer: {name} is not installed in {PEER}; run: npm ci --prefix benchmarks/peer")
        version = json.loads(meta.read_text(encoding="utf-8"))["version"]
        if version != wanted[name]:
            sys.exit(
                f"nodered_peer: {name} {version} is installed, {wanted[name]} is pinned; "
                "run: npm ci --prefix benchmarks/peer"
            )
        versions[name] = version
    return node, versions


# -- InfluxDB over its HTTP API ---------------------------------------------------------------------


def influx_query(influx: Any, q: str, *, post: bool = False) -> list[Any]:
    """The rows of the first series of ``q``'s answer ([] for none)."""
    auth = urllib.parse.urlencode({"u": influx.username, "p": influx.password, "db": DATABASE})
    url = f"{influx.url}/query?{auth}"  # http://127.0.0.1:PORT; InfluxDB reads credentials from the URL only
    query = urllib.parse.urlencode({"q": q})
    req = urllib.request.Request(url, data=query.encode()) if post else urllib.request.Request(f"{url}&{query}")  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback
        body = json.loads(r.read())
    result = body["results"][0]
    if "error" in result:
        raise RuntimeError(f"InfluxDB: {result['error']}")
    series = result.get("series") or []
    return series[0]["values"] if series else []


def count_rows(influx: Any, start_ns: int | None = None, end_ns: int | None = None) -> int:
    where = f" WHERE time >= {start_ns} AND time <= {end_ns}" if start_ns is not None else ""
    rows = influx_query(influx, f'SELECT count("value") FROM "{MEASUREMENT}"{where}')
    return int(rows[0][1]) if rows else 0


# -- Node-RED ---------------------------------------------------------------------------------------


async def namespace_index(port: int) -> int:
    from asyncua import Client
    from e2e_machine import URI

    client = Client(f"opc.tcp://127.0.0.1:{port}/", timeout=30)
    await client.connect()
    try:
        return int((await client.get_namespace_array()).index(URI))
    finally:
        await client.disconnect()


def start_nodered(node: str, user_dir: Path, env: dict[str, str], influx: Any) -> subprocess.Popen[bytes]:
    from testkit.servers import free_port

    user_dir.mkdir(parents=True)
    flow = json.loads(FLOW.read_text(encoding="utf-8"))
    (user_dir / "flows.json").write_text(json.dumps(flow, indent=4), encoding="utf-8")
    db_config = next(n["id"] for n in flow if n["type"] == "influxdb")
    creds = {db_config: {"username": influx.username, "password": influx.password}}
    (user_dir / "flows_cred.json").write_text(json.dumps(creds), encoding="utf-8")
    settings = user_dir / "settings.js"
    settings.write_text(SETTINGS_JS % free_port(), encoding="utf-8")
    red = PEER / "node_modules" / "node-red" / "red.js"
    with (user_dir / "node-red.log").open("wb") as log:
        return subprocess.Popen(
            [node, str(red), "--userDir", str(user_dir), "--settings", str(settings)],
            cwd=user_dir,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def log_errors(log: Path) -> list[str]:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if "[error]" in line]


async def peer(
    node: str, tmp: Path, server: Any, influx: Any, ns: int, nodes: int, rate: float, seconds: float
) -> dict[str, Any]:
    env = {
        "OPCUA_URL": f"opc.tcp://127.0.0.1:{server.port}/",
        "OPCUA_NS": str(ns),
        "OPCUA_NODES": str(nodes),
        "INFLUX_PORT": str(influx.port),
        "INFLUX_DB": DATABASE,
    }
    user_dir = tmp / "node-red"
    proc = start_nodered(node, user_dir, env, influx)
    log = user_dir / "node-red.log"
    try:
        # Subscribed when the initial value of every node is in InfluxDB.
        t_start = time.monotonic()
        deadline = t_start + 90
        while (initial := await asyncio.to_thread(count_rows, influx)) < nodes:
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else ""
                raise RuntimeError(f"Node-RED stored {initial} of {nodes} initial values:\n{tail}")
            await asyncio.sleep(0.5)
        subscribed_s = time.monotonic() - t_start
        await asyncio.sleep(1.5)  # the join's last timeout and the batch write
        errors0 = len(log_errors(log))
        procs = {"nodered": proc.pid, "influxd": influx.proc.pid, "server": server.proc.pid}
        cpu0 = {k: cpu_s(p) for k, p in procs.items()}
        t0 = time.monotonic()
        result = await server.run(rate, seconds)
        produced = result["written"]
        # Rows carry the change's SourceTimestamp cut to milliseconds: the window starts at its millisecond.
        start_ns, end_ns = result["first_ns"] // 1_000_000 * 1_000_000, result["last_ns"]
        # Drain: until every change is stored, or no new row for STALL_S, or DRAIN_S.
        deadline, last, last_t = time.monotonic() + DRAIN_S, -1, time.monotonic()
        while time.monotonic() < deadline:
            stored = await asyncio.to_thread(count_rows, influx, start_ns, end_ns)
            now = time.monotonic()
            if stored >= produced:
                break
            if stored != last:
                last, last_t = stored, now
            elif now - last_t >= STALL_S:
                break
            await asyncio.sleep(0.25)
        drain_s = time.monotonic() - t0 - result["seconds"]
        cpu1 = {k: cpu_s(p) for k, p in procs.items()}
        stored = await asyncio.to_thread(count_rows, influx, start_ns, end_ns)
        errors = log_errors(log)[errors0:]
        alive = proc.poll() is None
    finally:
        stop(proc)
    return {
        "produced": produced,
        "stored": stored,
        "changes_per_s": round(produced / result["seconds"]),
        "seconds": round(result["seconds"], 1),
        "drain_s": round(drain_s, 2),
        "subscribed_s": round(subscribed_s, 1),
        "cpu_s": {k: round(cpu1[k] - cpu0[k], 2) for k in procs},
        "errors": len(errors),
        "first_errors": errors[:3],
        "alive": alive,
    }


def per_10k(cpu: float, points: int) -> float:
    return round(cpu / points * 10_000, 4) if points else float("nan")


async def bench(args: argparse.Namespace, node: str, versions: dict[str, str], tmp: Path) -> dict[str, Any]:
    from e2e_machine import MachineServer
    from gateway_cost import baseline

    from testkit.servers import free_port, start_influxdb

    influx = start_influxdb(tmp / "influxdb")
    server = MachineServer(free_port(), args.nodes)
    try:
        influx_query(influx, f'CREATE DATABASE "{DATABASE}"', post=True)
        await asyncio.wait_for(asyncio.to_thread(server.ready), 90)
        ns = await namespace_index(server.port)
        base = await baseline(server, args.nodes, args.rate, args.seconds)
        bare = per_10k(base["cpu_s"], base["received"])
        print(
            f"baseline  bare asyncua client: {base['received']:,} of {base['produced']:,} changes at "
            f"{base['changes_per_s']:,.0f}/s, {base['cpu_s']:.2f} CPU-s = {bare} CPU-s per 10k",
            flush=True,
        )
        r = await peer(node, tmp, server, influx, ns, args.nodes, args.rate, args.seconds)
    finally:
        server.stop()
        influx.stop()
    cpu = r["cpu_s"]
    out = {
        "changes_per_s": r["changes_per_s"],
        "lost": r["produced"] - r["stored"],
        "nodered_cpu_s_per_10k": per_10k(cpu["nodered"], r["produced"]),
        "bare_asyncua_cpu_s_per_10k": bare,
        "nodered_version": versions["node-red"],
        "node_red_contrib_opcua_version": versions["node-red-contrib-opcua"],
        "node_red_contrib_influxdb_version": versions["node-red-contrib-influxdb"],
        "node_version": versions["node"],
        "store_cpu_s_per_10k": per_10k(cpu["influxd"], r["produced"]),
        "nodes": args.nodes,
        "produced": r["produced"],
        "stored": r["stored"],
        "drain_s": r["drain_s"],
        "subscribed_s": r["subscribed_s"],
        "nodered_errors": r["errors"],
        "nodered_first_errors": r["first_errors"],
        "nodered_alive": r["alive"],
        "baseline_received": base["received"],
        "baseline_produced": base["produced"],
        "cpu_s": cpu,
    }
    print(
        f"peer      Node-RED {out['nodered_cpu_s_per_10k']} CPU-s per 10k at {r['changes_per_s']:,} changes/s "
        f"(bare asyncua {bare}); lost {out['lost']:,} (stored {r['stored']:,} of {r['produced']:,}), "
        f"drain {r['drain_s']} s",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (Node-RED's log and flow)")
    args = parser.parse_args()
    node, versions = check_peer()
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="mdh-bench-peer-"))
    t0 = time.monotonic()
    try:
        out = asyncio.run(bench(args, node, versions, tmp))
    finally:
        if args.keep:
            print(f"work folder kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["total_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
