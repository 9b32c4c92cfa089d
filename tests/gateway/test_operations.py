"""Operations: health and metrics endpoints, and the CLI (keygen, reveal, check, preview, run + SIGTERM)."""

from __future__ import annotations

import asyncio
import logging
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway import Gateway
from gateway.pseudonymise import load_key, pseudonym
from testkit.machines import MachineServer
from testkit.servers import MosquittoServer, free_port

from .conftest import MEMBER, gateway_settings
from .hub import RawSubscriber, wait_until

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "metalldaten")


def _toml(tmp: Path, server: MachineServer, uplink_port: int, name: str = "gw.toml") -> Path:
    path = tmp / name
    path.write_text(
        f"""
[identity]
member = "{MEMBER}"
gateway_name = "Halle 3 Gateway"
key_file = "member.key"
journal_file = "journal.jsonl"

[[assets]]
id = "Laser-SN-555"
model = "TruLaser 3030"

[policy.asset_classes]
"TruLaser 3030" = "laser_cutting"

[policy.signals.Power]
canonical = "power_kw"
unit = "W"

[[opcua]]
name = "halle"
url = "{server.url}"
nodes = [
  {{ asset = "Laser-SN-555", signal = "Power", node = "{server.node_id("L", "Power")}" }},
  {{ asset = "Laser-SN-555", signal = "operator_name", node = "{server.node_id("L", "operator_name")}" }},
]

[uplink]
host = "127.0.0.1"
port = {uplink_port}
tls = false
backoff_max_s = 1.0

[health]
port = 0
""",
        encoding="utf-8",
    )
    return path


async def _cli(*args: str, cwd: Path, within_s: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        CLI, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within_s)
    return int(proc.returncode or 0), out.decode()


async def test_cli_keygen_check_preview_reveal_and_run(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MachineServer(
        free_port(), {"L": ["Power", "operator_name"]}, initial={"Power": 4200.0, "operator_name": 7}
    )
    await server.start()
    try:
        code, out = await _cli("gateway", "keygen", "--out", "member.key", "--key-id", "k-ops", cwd=tmp_path)
        assert code == 0 and "k-ops" in out
        assert stat.S_IMODE((tmp_path / "member.key").stat().st_mode) == 0o600
        key = load_key(tmp_path / "member.key")
        config = _toml(tmp_path, server, mosquitto.port)

        code, out = await _cli("gateway", "check", "--config", str(config), cwd=tmp_path)
        assert code == 0, out
        assert "ok    opcua halle: 2 of 2 nodes exist on the server" in out and "ok    uplink" in out
        assert "mqtt mqtt" not in out

        wrong = tmp_path / "wrong.toml"
        ghost = f"nsu={server.uri};s=L.Ghost"
        text = config.read_text().replace(
            "nodes = [\n", f'nodes = [\n  {{ asset = "L", signal = "Power", node = "{ghost}" }},\n'
        )
        wrong.write_text(text)
        code, out = await _cli("gateway", "check", "--config", str(wrong), cwd=tmp_path)
        assert code == 1 and f"FAIL  opcua halle: 2 of 3 nodes exist on the server; missing: {ghost} (Bad" in out

        dead = _toml(tmp_path, server, free_port(), name="dead.toml")
        code, out = await _cli("gateway", "check", "--config", str(dead), cwd=tmp_path)
        assert code == 1 and "FAIL  uplink" in out

        code, out = await _cli("gateway", "preview", "--config", str(config), "--seconds", "3", cwd=tmp_path)
        asset = pseudonym(key, "a", "Laser-SN-555")
        assert code == 0, out
        assert f"Laser-SN-555 / Power = 4200.0  ->  {asset} [laser_cutting] power_kw = 4.2" in out
        assert "operator_name = 7  ->  DROPPED (personal)" in out

        sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
        out_file = (tmp_path / "run.log").open("wb")
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [CLI, "gateway", "run", "--config", str(config)],
            cwd=tmp_path,
            stdout=out_file,
            stderr=subprocess.STDOUT,
        )
        try:
            await sub.wait_for(lambda: any(a == asset for a, *_ in sub.samples()), 30, "data from the CLI gateway")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            sub.stop()
        statuses = [p for t, p, _ in sub.messages if t.endswith("/status")]
        assert b'"state":"offline"' in statuses[-1]
        log = (tmp_path / "run.log").read_text()
        assert "Laser-SN-555" not in log and "Halle 3" not in log and key.secret.hex() not in log
        assert "WARNING" not in log.split("stopping: flushing and draining", 1)[1]  # a clean stop is quiet

        gw_pseudonym = pseudonym(key, "g", "Halle 3 Gateway")
        code, out = await _cli("gateway", "reveal", asset, gw_pseudonym, "--config", str(config), cwd=tmp_path)
        assert code == 0 and f"{asset}\ta\tLaser-SN-555" in out and f"{gw_pseudonym}\tg\tHalle 3 Gateway" in out
        unknown = "a-00000000deadbeef"
        code, out = await _cli("gateway", "reveal", asset, unknown, "--config", str(config), cwd=tmp_path)
        assert code == 1 and "Laser-SN-555" in out and f"{unknown}\tnot found" in out
    finally:
        await server.stop()


async def test_health_and_metrics(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MachineServer(free_port(), {"L": ["Power"]})
    await server.start()
    port = free_port()
    nodes = [
        {"asset": "L1", "signal": "Power", "node": server.node_id("L", "Power")},
        {"asset": "L1", "signal": "Secret", "node": server.node_id("L", "Power")},
    ]
    settings = gateway_settings(
        tmp_path,
        uplink_port=mosquitto.port,
        opcua=[{"name": "halle", "url": server.url, "nodes": nodes}],
        extra={"health": {"port": port}},
    )
    try:
        async with Gateway(settings) as gw, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: gw.sources[0].connected and gw.uplink.connected, 15, "connections")
            r = await http.get("/health")
            assert r.status_code == 200 and r.json()["status"] == "ok"
            assert r.json()["sources"]["halle"]["connected"] is True
            await wait_until(lambda: gw.uplink.samples_acked >= 1, 10, "a sample acknowledged")
            metrics = (await http.get("/metrics")).text
            assert 'mdh_gateway_readings_total{source="halle"} 2.0' in metrics
            assert 'mdh_gateway_samples_dropped_total{reason="not_allowed",source="halle"} 1.0' in metrics
            assert "mdh_gateway_uplink_connected 1.0" in metrics
            await server.stop()
            await wait_until(lambda: not gw.sources[0].connected, 15, "the source to notice the outage")
            r = await http.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "degraded"
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        await server.stop()


async def test_check_names_an_mqtt_source_once(
    tmp_path: Path, mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.check import run_check

    caplog.set_level(logging.INFO)
    topic = {"filter": "werk/+/+", "asset_level": 1, "signal_level": 2}
    source = {"name": "leitstand", "port": mosquitto.port, "topics": [topic]}
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[source])
    results = await run_check(settings)
    assert ("mqtt leitstand", True, "connected") in results
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "mqtt source leitstand: connected" in text and "mqtt mqtt" not in text
