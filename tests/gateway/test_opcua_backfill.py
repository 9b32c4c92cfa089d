"""Backfill from the server's history against a real asyncua server with historised nodes: a gateway stopped
while the machine kept changing reads the gap on its next start (continuation points, a page limit), sends
each change once, leaves nodes the server does not historise alone and never reads further back than
``max_gap_s``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import Gateway
from gateway.metrics import health
from testkit.historian import HistorisedMachineServer
from testkit.servers import free_port, start_mosquitto
from testkit.waiting import wait_until

from .conftest import gateway_settings
from .hub import RawSubscriber

pytestmark = pytest.mark.integration


def _source(server: HistorisedMachineServer, **backfill: Any) -> dict[str, Any]:
    return {
        "name": "m",
        "url": server.url,
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
        "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0, "queue_size": 100}],
        "nodes": [
            {"asset": "Ofen-1", "signal": "Temp", "node": server.node_id("Ofen", "Temp"), "group": "fast"},
            {"asset": "Ofen-1", "signal": "Power", "node": server.node_id("Ofen", "Power"), "group": "fast"},
        ],
        "backfill": {"enabled": True, "values_per_request": 7, "max_requests_per_s": 200, **backfill},
    }


async def _run_once(settings: Any, until: Any) -> dict[str, Any]:
    """Run a gateway until ``until(gw)`` holds, stop it cleanly and return its source's backfill counters."""
    async with Gateway(settings) as gw:
        task = asyncio.create_task(gw.run())
        await wait_until(lambda: until(gw), 20, "the gateway's samples")
        gw.stop()
        await asyncio.wait_for(task, 15)
        stats = gw.sources[0].backfill  # type: ignore[attr-defined]
        return {k: getattr(stats, k) for k in ("samples", "requests", "gaps", "gaps_cut", "failed", "historised")}


async def test_gap_of_a_stopped_gateway_is_read_from_history_once(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = HistorisedMachineServer(
        free_port(), {"Ofen": ["Temp", "Power"]}, response_size=5, historised={("Ofen", "Temp")}
    )
    await server.start()
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    settings = gateway_settings(tmp_path, uplink_port=broker.port, opcua=[_source(server)])
    try:
        await server.write("Ofen", "Temp", 500.0)
        first = await _run_once(settings, lambda gw: 500.0 in {v for *_, v in sub.samples()})
        assert first["samples"] == 0 and first["gaps"] == 0  # nothing known yet: no watermark, no gap
        # the gateway is stopped; the furnace keeps changing
        written = [await server.write("Ofen", "Temp", 600.0 + i) for i in range(23)]
        power_gap = [await server.write("Ofen", "Power", 1000.0 + i) for i in range(5)]
        reads_before = server.history_reads
        second = await _run_once(settings, lambda gw: {622.0, 1.004} <= {v for *_, v in sub.samples()})
        temps = sorted(ts for _, sig, ts, _ in sub.samples() if sig == "temperature_c")
        expected = {int(t.timestamp() * 1e6) * 1000 for t in written}
        assert expected <= set(temps), "a change of the gap is missing"
        assert len(temps) == len(set(temps)), "a change was sent twice"
        assert second["historised"] == 1 and second["gaps"] == 1 and second["failed"] == 0
        assert second["samples"] == 23
        # 23 values at most 7 per request and 5 per response: continuation points and full pages were followed
        assert second["requests"] >= 5 and server.history_reads - reads_before >= 5
        # Power is not historised: only its current value arrives, the 4 changes before it are not invented
        powers = [v for _, sig, _, v in sub.samples() if sig == "power_kw"]  # W -> kW by the policy
        assert 1.004 in powers and not {1.0, 1.001, 1.002, 1.003} & set(powers)
        assert len(power_gap) == 5
    finally:
        sub.stop()
        await server.stop()
        broker.stop()


async def test_a_gap_longer_than_max_gap_is_cut_and_counted(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = HistorisedMachineServer(free_port(), {"Ofen": ["Temp", "Power"]}, response_size=50)
    await server.start()
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    settings = gateway_settings(tmp_path, uplink_port=broker.port, opcua=[_source(server, max_gap_s=30)])
    now = datetime.now(UTC)
    try:
        await server.write("Ofen", "Temp", 1.0, ts=now - timedelta(seconds=100))
        await server.write("Ofen", "Power", 1.0, ts=now - timedelta(seconds=100))
        await _run_once(settings, lambda gw: {1.0, 0.001} <= {v for *_, v in sub.samples()})
        old = [now - timedelta(seconds=s) for s in (90, 60, 40)]
        recent = [now - timedelta(seconds=s) for s in (20, 10, 1)]
        await server.prefill("Ofen", "Temp", [(t, 2.0 + i) for i, t in enumerate(old + recent)])
        await server.write("Ofen", "Temp", 9.0)
        stats = await _run_once(settings, lambda gw: 9.0 in {v for *_, v in sub.samples()})
        got = {ts for _, sig, ts, _ in sub.samples() if sig == "temperature_c"}
        assert {int(t.timestamp() * 1e6) * 1000 for t in recent} <= got
        assert not {int(t.timestamp() * 1e6) * 1000 for t in old} & got, "read further back than max_gap_s"
        assert stats["gaps_cut"] == 2  # Temp and Power both stopped 100 s ago
        assert stats["samples"] == 4  # three recent values and the current one, all from history
    finally:
        sub.stop()
        await server.stop()
        broker.stop()


async def test_a_server_refusing_history_reads_goes_live_and_degrades_health(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = HistorisedMachineServer(free_port(), {"Ofen": ["Temp", "Power"]})
    await server.start()
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    settings = gateway_settings(tmp_path, uplink_port=broker.port, opcua=[_source(server)])
    try:
        await server.write("Ofen", "Temp", 1.0)
        await _run_once(settings, lambda gw: 1.0 in {v for *_, v in sub.samples()})
        await server.write("Ofen", "Temp", 2.0)  # in the gap, which the server will not give out
        server.refuse_reads = True
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            src = gw.sources[0]
            await wait_until(lambda: src.backfill.failed >= 1, 20, "the refused read")  # type: ignore[attr-defined]
            await server.write("Ofen", "Temp", 3.0)  # live again despite the refusal
            await wait_until(lambda: 3.0 in {v for *_, v in sub.samples()}, 20, "live values after the refusal")
            ok, doc = health(gw)
            assert not ok and any("history reads refused" in r for r in doc["reasons"]), doc["reasons"]
            gw.stop()
            await asyncio.wait_for(task, 15)
        assert server.history_reads >= 1
    finally:
        sub.stop()
        await server.stop()
        broker.stop()
