"""Never silently stale, against asyncua servers built to misbehave (:mod:`testkit.misbehaving`) and a real
Mosquitto: stalled monitored items are found by the audit read, sent and recreated; queue overflows, missing
nodes and malformed MQTT input are metrics, health reasons and one log line each; a stopped server and a clean
stop leave quiet logs; after a restart, quiet series are repeated again."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import Gateway
from gateway.pseudonymise import load_key, pseudonym
from testkit.misbehaving import MisbehavingServer
from testkit.servers import MosquittoServer, free_port, require_binary

from .conftest import gateway_settings
from .hub import RawSubscriber, wait_until

pytestmark = pytest.mark.integration


def _source(server: MisbehavingServer, nodes: list[dict[str, str]], **extra: object) -> dict[str, Any]:
    return {
        "name": "halle",
        "url": server.url,
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.3,
        "audit_interval_s": 0.5,
        "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0}],
        "nodes": [{**n, "group": "fast"} for n in nodes],
        **extra,
    }


def _node(server: MisbehavingServer, machine: str, sig: str, asset: str | None = None) -> dict[str, str]:
    return {"asset": asset or machine, "signal": sig, "node": server.node_id(machine, sig)}


async def test_stalled_items_are_repaired_and_overflow_is_reported(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MisbehavingServer(free_port(), {"Ofen": ["Temp", "Power"]}, initial=20.0)
    await server.start()
    port = free_port()
    nodes = [_node(server, "Ofen", "Temp"), _node(server, "Ofen", "Power")]
    settings = gateway_settings(
        tmp_path, uplink_port=mosquitto.port, opcua=[_source(server, nodes)], extra={"health": {"port": port}}
    )
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    values = lambda: {v for *_, v in sub.samples()}  # noqa: E731
    try:
        async with Gateway(settings) as gw, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            task = asyncio.create_task(gw.run())
            src: Any = gw.sources[0]
            await wait_until(lambda: src.connected and 20.0 in values(), 15, "the initial values")
            assert (await http.get("/health")).json()["status"] == "ok"

            assert server.stall("Ofen", "Temp") == 1
            await server.write("Ofen", "Temp", 51.0)  # the server has it; its monitored item never says so
            await wait_until(lambda: src.problems.events["stalled"] >= 1, 15, "the audit to find the stall")
            await wait_until(lambda: 51.0 in values(), 10, "the value read by the audit at the hub")
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded"
            assert any("stalled" in r for r in health["reasons"]), health["reasons"]
            metrics = (await http.get("/metrics")).text
            assert 'mdh_gateway_source_input_problems_total{reason="stalled",source="halle"}' in metrics
            await wait_until(lambda: src.recreated >= 1, 10, "the stalled item to be recreated")
            await server.write("Ofen", "Temp", 52.0)  # the recreated item delivers again
            await wait_until(lambda: 52.0 in values(), 10, "a change through the recreated item")

            await server.overflow("Ofen", "Power", 1500.0)
            await wait_until(lambda: src.problems.events["overflow"] == 1, 10, "the overflow to be counted")
            await wait_until(lambda: 1.5 in values(), 10, "the overflowing item's value (good) at the hub")
            health = (await http.get("/health")).json()
            assert any("overflow" in r for r in health["reasons"]), health["reasons"]
            metrics = (await http.get("/metrics")).text
            assert 'mdh_gateway_source_input_problems_total{reason="overflow",source="halle"} 1.0' in metrics
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        await server.stop()


async def test_missing_nodes_server_stop_and_clean_stop_are_reported_quietly(
    tmp_path: Path, mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = MisbehavingServer(free_port(), {"Ofen": ["Temp"]})
    await server.start()
    nodes = [
        _node(server, "Ofen", "Temp"),
        {"asset": "Ofen", "signal": "Power", "node": f"nsu={server.uri};s=Ofen.Nope"},  # the server has no such node
        {"asset": "Ofen", "signal": "Parts", "node": "nsu=urn:nobody:here;s=Ofen.Parts"},  # nor such a namespace
    ]
    port = free_port()
    settings = gateway_settings(
        tmp_path, uplink_port=mosquitto.port, opcua=[_source(server, nodes)], extra={"health": {"port": port}}
    )
    try:
        async with Gateway(settings) as gw, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            task = asyncio.create_task(gw.run())
            src: Any = gw.sources[0]
            await wait_until(lambda: src.connected and gw.uplink.connected, 15, "the connections")
            assert src.unresolved == 2 and src.problems.nodes["missing"] == 2
            r = await http.get("/health")
            assert r.status_code == 503 and any("2 node(s) missing" in x for x in r.json()["reasons"])
            metrics = (await http.get("/metrics")).text
            assert 'mdh_gateway_source_nodes_unavailable{reason="missing",source="halle"} 2.0' in metrics
            missing_lines = [r for r in caplog.records if "node(s) missing" in r.getMessage()]
            assert len(missing_lines) == 1

            caplog.clear()
            attempts = src.attempts
            await server.stop()
            await wait_until(lambda: src.attempts >= attempts + 5, 20, "five reconnect attempts")
            asyncua_noise = [
                r for r in caplog.records if r.name.startswith("asyncua") and (r.levelno >= logging.ERROR or r.exc_info)
            ]
            assert asyncua_noise == [], [r.getMessage() for r in asyncua_noise]
            ended = [r for r in caplog.records if "session ended" in r.getMessage()]
            assert 1 <= len(ended) <= 2, [r.getMessage() for r in ended]  # the loss, then refused: not per retry

            caplog.clear()
            gw.stop()
            await asyncio.wait_for(task, 15)
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING and "disconnected" in r.getMessage()]
        assert loud == [], [r.getMessage() for r in loud]
    finally:
        await server.stop()


async def test_quiet_series_are_repeated_after_a_restart(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MisbehavingServer(free_port(), {"Presse": ["Parts"]}, initial=7)
    await server.start()
    extra = {"uplink": {"heartbeat_s": 2.0}}
    settings = gateway_settings(
        tmp_path, uplink_port=mosquitto.port, opcua=[_source(server, [_node(server, "Presse", "Parts")])], extra=extra
    )
    asset = pseudonym(load_key(tmp_path / "member.key"), "a", "Presse")
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    parts = lambda: [(ts, v) for a, s, ts, v in sub.samples() if a == asset and s == "parts_total"]  # noqa: E731
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: len(parts()) >= 1, 15, "the counter")
            gw.stop()
            await asyncio.wait_for(task, 15)
        first_ts = max(ts for ts, _ in parts())
        async with Gateway(settings) as gw:  # same buffer: the watermark says 7 was sent already
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: gw.sources[0].normaliser.dropped["replayed"] >= 1, 15, "the replayed value")
            await wait_until(lambda: any(ts > first_ts for ts, _ in parts()), 15, "the counter repeated")
            assert {v for _, v in parts()} == {7}
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        await server.stop()


def _pub(port: int, topic: str, message: str) -> None:
    cmd = [require_binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-m", message]
    subprocess.run(cmd, check=True, timeout=10)


async def test_truncated_json_is_counted_logged_and_degrades_health(
    tmp_path: Path, mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    topic = {"filter": "json/+/+", "format": "json", "asset_level": 1, "signal_level": 2, "value_path": "v"}
    source = {"name": "leitstand", "port": mosquitto.port, "client_id": "gw-malformed", "topics": [topic]}
    port = free_port()
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[source], extra={"health": {"port": port}})
    async with Gateway(settings) as gw, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        task = asyncio.create_task(gw.run())
        src: Any = gw.sources[0]
        await wait_until(lambda: src.subscribed and gw.uplink.connected, 15, "the MQTT source to subscribe")
        for _ in range(3):
            await asyncio.to_thread(_pub, mosquitto.port, "json/Presse/Power", '{"v": 12')
        await asyncio.to_thread(_pub, mosquitto.port, "json/Presse/Power", '{"v": 1250}')
        await wait_until(lambda: src.normaliser.accepted == 1, 10, "the good message after the bad ones")
        assert src.problems.events["malformed"] == 3
        r = await http.get("/health")
        assert r.status_code == 503 and any("malformed" in x for x in r.json()["reasons"])
        metrics = (await http.get("/metrics")).text
        assert 'mdh_gateway_source_input_problems_total{reason="malformed",source="leitstand"} 3.0' in metrics
        lines = [r for r in caplog.records if "malformed" in r.getMessage()]
        assert len(lines) == 1 and "not JSON" in lines[0].getMessage()  # rate-limited: one line for three
        gw.stop()
        await asyncio.wait_for(task, 15)


async def test_a_machine_clock_set_ahead_is_dropped_reported_and_does_not_block_its_series(
    tmp_path: Path, mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Readings stamped a day ahead of the gateway's clock (a machine whose clock is set wrong) never reach the broker:
    each is counted, the source's health is degraded with the reason, one log line says so; the readings stamped
    right before and after them, of the same series, go out (a reading a day ahead had become the series' newest
    mark, and everything after it was dropped as replayed)."""
    topic = {
        "filter": "json/+/+",
        "format": "json",
        "asset_level": 1,
        "signal_level": 2,
        "value_path": "v",
        "ts_path": "t",
        "ts_unit": "ms",
    }
    source = {"name": "leitstand", "port": mosquitto.port, "client_id": "gw-future", "topics": [topic]}
    port = free_port()
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[source], extra={"health": {"port": port}})
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    try:
        async with Gateway(settings) as gw, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            task = asyncio.create_task(gw.run())
            src: Any = gw.sources[0]
            await wait_until(lambda: src.subscribed and gw.uplink.connected, 15, "the MQTT source to subscribe")
            now_ms = time.time_ns() // 10**6
            stamps = [now_ms - 2000, now_ms + 86_400_000, now_ms + 86_400_000 + 1000, now_ms - 1000]
            for i, t in enumerate(stamps):
                doc = f'{{"v": {1000 * (i + 1)}, "t": {t}}}'
                await asyncio.to_thread(_pub, mosquitto.port, "json/Presse/Power", doc)
            await wait_until(lambda: len(sub.samples()) == 2, 15, "the two readings stamped right")
            assert src.normaliser.dropped == {"future": 2} and src.problems.events["future"] == 2
            r = await http.get("/health")
            assert r.status_code == 503
            assert any("future" in x and "ahead of the gateway's clock" in x for x in r.json()["reasons"])
            metrics = (await http.get("/metrics")).text
            assert 'mdh_gateway_source_input_problems_total{reason="future",source="leitstand"} 2.0' in metrics
            assert 'mdh_gateway_samples_dropped_total{reason="future",source="leitstand"} 2.0' in metrics
            lines = [r for r in caplog.records if "future" in r.getMessage()]
            assert len(lines) == 1  # rate-limited: one line for two
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
    # what reached the broker: the two readings stamped right, at their times, and nothing stamped ahead
    assert [(v, ts) for _, _, ts, v in sub.samples()] == [(1.0, stamps[0] * 10**6), (4.0, stamps[3] * 10**6)]
