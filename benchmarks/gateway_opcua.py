"""Benchmark of the gateway's OPC UA source: sustained value changes/s from an asyncua
server with 5,000 nodes, and the gateway's resident memory.

Three processes on the loopback: an asyncua server (5,000 Double variables, every one changed
in turn as fast as the server can), the real gateway (``metalldaten gateway run``: subscription in
batches, normalise, pseudonymise, disk buffer, MQTT uplink) and Mosquitto. Figures come from the
gateway's own /metrics endpoint; the baseline in the same run is the rate at which the server
produced changes. The gateway's RSS is read from /proc.

Run: ``.venv/bin/python benchmarks/gateway_opcua.py [--seconds 30]``. The last line of output is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common  # noqa: F401  (the import path)

NODES = 5000
URI = "urn:metalldaten:bench"


async def serve(port: int, nodes: int, count_file: Path) -> None:
    """The machine side: change every node in turn, forever; report the count once a second."""
    import logging

    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    idx = await server.register_namespace(URI)
    folder = await server.nodes.objects.add_folder(idx, "Machines")
    ids = []
    for i in range(nodes):
        v = await folder.add_variable(ua.NodeId(f"M{i // 50:03d}.P{i % 50:02d}", idx), f"P{i}", 0.0)
        ids.append(v.nodeid)
    async with server:
        written = 0
        last_report = time.monotonic()
        value = 0.0
        while True:
            value += 1.0
            for nid in ids:
                dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double))
                await server.write_attribute_value(nid, dv)
                written += 1
                if written % 500 == 0:
                    await asyncio.sleep(0)
            now = time.monotonic()
            if now - last_report >= 1.0:
                count_file.write_text(f"{written} {time.time()}")  # noqa: ASYNC240 - a few bytes once a second
                last_report = now


def config(tmp: Path, opcua_port: int, mqtt_port: int, health_port: int) -> Path:
    from gateway.pseudonymise import generate_key

    generate_key(tmp / "member.key", key_id="k-bench")
    nodes = ",\n".join(
        f'  {{ asset = "Maschine-{i // 50:03d}", signal = "P{i % 50:02d}", '
        f'node = "nsu={URI};s=M{i // 50:03d}.P{i % 50:02d}" }}'
        for i in range(NODES)
    )
    signals = "\n".join(f'[policy.signals.P{j:02d}]\ncanonical = "power_kw"\nunit = "W"\n' for j in range(50))
    path = tmp / "gateway.toml"
    path.write_text(
        f"""
[identity]
member = "m-b3c4d5"
gateway_name = "bench-gw"
key_file = "member.key"

{signals}

[[opcua]]
name = "bench"
url = "opc.tcp://127.0.0.1:{opcua_port}/"
batch_size = 1000
timeout_s = 30
groups = [{{ name = "default", publishing_interval_ms = 200, sampling_interval_ms = 0, queue_size = 10 }}]
nodes = [
{nodes}
]

[buffer]
path = "buffer.sqlite"

[uplink]
host = "127.0.0.1"
port = {mqtt_port}
tls = false
batch_size = 5000
max_inflight = 32

[health]
port = {health_port}
""",
        encoding="utf-8",
    )
    return path


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for name in (
        "mdh_gateway_readings_total",
        "mdh_gateway_uplink_samples_acked_total",
        "mdh_gateway_samples_total",
        "mdh_gateway_source_connected",
        "mdh_gateway_buffer_samples",
    ):
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "COUNT_FILE"))
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), NODES, Path(args.serve[1])))
        return

    from testkit.servers import free_port, start_mosquitto

    tmp = Path(tempfile.mkdtemp(prefix="mdh-bench-"))
    broker = start_mosquitto(tmp / "mosquitto")
    opcua_port, health_port = free_port(), free_port()
    count_file = tmp / "written"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(opcua_port), str(count_file)])
    cli = str(Path(sys.executable).parent / "metalldaten")
    gw = None
    try:
        deadline = time.monotonic() + 60
        while not count_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = (tmp / "gateway.log").open("wb")
        gw = subprocess.Popen(
            [cli, "gateway", "run", "--config", str(config(tmp, opcua_port, broker.port, health_port))],
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() < deadline:
            try:
                if scrape(health_port)["mdh_gateway_readings_total"] >= NODES:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit("the gateway did not subscribe to 5,000 nodes within 60 s; see " + str(tmp))
        time.sleep(3)  # settle
        a, wa, ta = scrape(health_port), int(count_file.read_text().split()[0]), time.monotonic()
        peak_rss = 0.0
        end = ta + args.seconds
        while time.monotonic() < end:
            time.sleep(1)
            peak_rss = max(peak_rss, rss_mb(gw.pid))
        b, wb, tb = scrape(health_port), int(count_file.read_text().split()[0]), time.monotonic()
        dt = tb - ta
        changes = (b["mdh_gateway_readings_total"] - a["mdh_gateway_readings_total"]) / dt
        acked = (b["mdh_gateway_uplink_samples_acked_total"] - a["mdh_gateway_uplink_samples_acked_total"]) / dt
        produced = (wb - wa) / dt
        print(f"server produced   {produced:,.0f} changes/s (baseline)")
        print(f"gateway received  {changes:,.0f} changes/s from {NODES} monitored items")
        print(f"hub acknowledged  {acked:,.0f} samples/s; buffer depth {b['mdh_gateway_buffer_samples']:.0f}")
        print(f"gateway RSS       {peak_rss:.1f} MB (peak)")
        print(
            json.dumps(
                {
                    "changes_per_s": round(changes),
                    "server_changes_per_s": round(produced),
                    "acked_per_s": round(acked),
                    "nodes": NODES,
                    "rss_mb": round(peak_rss, 1),
                    "seconds": round(dt, 1),
                }
            )
        )
    finally:
        if gw is not None:
            gw.terminate()
            gw.wait(20)
        server.kill()
        server.wait(10)
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
