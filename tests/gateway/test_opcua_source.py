"""OPC UA source against real asyncua servers: restarts with reordered namespaces, status codes,
browse paths, polling, and 5,000 monitored items."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import Gateway
from gateway.pseudonymise import load_key, pseudonym
from testkit.machines import URI, MachineServer
from testkit.servers import MosquittoServer, free_port
from wire import Quality

from .conftest import gateway_settings
from .hub import RawSubscriber, values_forwarded

pytestmark = pytest.mark.integration


def _nodes(server: MachineServer, group: str = "default") -> list[dict[str, str]]:
    return [
        {"asset": m, "signal": s, "node": server.node_id(m, s), "group": group}
        for m, sigs in server.machines.items()
        for s in sigs
    ]


def _source(server: MachineServer, nodes: list[dict[str, str]], **extra: object) -> dict[str, object]:
    return {
        "name": "halle",
        "url": server.url,
        "backoff_min_s": 0.1,
        "backoff_max_s": 1.0,
        "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0}],
        "nodes": nodes,
        **extra,
    }


async def test_restart_with_reordered_namespaces_and_status_codes(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MachineServer(free_port(), {"Fraese-SN-4711": ["Power", "State"]}, initial={"State": 0})
    await server.start()
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, opcua=[_source(server, _nodes(server, "fast"))])
    key = load_key(tmp_path / "member.key")
    asset = pseudonym(key, "a", "Fraese-SN-4711")
    sub = RawSubscriber("127.0.0.1", mosquitto.port).start()
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            src = gw.sources[0]
            await sub.wait_for(lambda: src.connected, 10, "the source to connect")
            await server.write("Fraese-SN-4711", "Power", 1500.0)
            await server.write("Fraese-SN-4711", "Power", 1600.0, status=0x40000000)  # Uncertain
            await server.write("Fraese-SN-4711", "Power", 1700.0, status=0x80000000)  # Bad
            await server.write("Fraese-SN-4711", "State", 2)
            await sub.wait_for(lambda: {1.5, 1.6}.issubset({v for *_, v in sub.samples()}), 10, "power readings")
            # a Bad status arrives without a value (OPC UA servers drop it): counted, never sent
            await sub.wait_for(lambda: src.normaliser.dropped["no_value"] == 1, 10, "the bad reading to be counted")
            first_index = server.ns_index
            await server.restart(reorder=True)
            assert server.ns_index != first_index
            await sub.wait_for(lambda: src.connected and src.reconnects >= 1, 20, "a reconnect after the restart")
            await server.write("Fraese-SN-4711", "Power", 2500.0)
            await sub.wait_for(lambda: 2.5 in {v for *_, v in sub.samples()}, 10, "a value after the restart")
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        await server.stop()
    samples = [s for b in sub.unique_batches().values() for s in b.samples]
    power = {s.value: s for s in samples if s.signal == "power_kw"}
    assert power[1.5].quality == Quality.GOOD
    assert power[1.6].quality == Quality.UNCERTAIN
    assert 1.7 not in power
    assert power[2.5].quality == Quality.GOOD
    assert {s.asset for s in samples} == {asset}
    assert {s.asset_class for s in samples} == {"other"}
    assert "running" in {s.value for s in samples if s.signal == "state"}
    # the source timestamp is kept: power 2.5 was written after the restart, 1.5 before
    assert power[2.5].ts > power[1.5].ts


async def test_browse_paths_and_polling(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MachineServer(free_port(), {"Presse7": ["Parts", "Temp"]}, initial=0)
    await server.start()
    nodes = [
        {"asset": "Presse7", "signal": s, "path": f"Machines/Presse7/{s}", "path_nsu": URI, "group": "slow"}
        for s in ("Parts", "Temp")
    ]
    source = _source(server, nodes, groups=[{"name": "slow", "mode": "poll", "poll_interval_s": 0.1}])
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, opcua=[source])
    sub = RawSubscriber("127.0.0.1", mosquitto.port).start()
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await sub.wait_for(lambda: gw.sources[0].connected, 10, "the source to connect")
            for i in range(1, 4):
                await server.write("Presse7", "Parts", i)
                # The next value only once this one was polled and forwarded (a poll every 0.1 s).
                await sub.wait_for(
                    lambda: i in {v for a, s, t, v in sub.samples() if s == "parts_total"},  # noqa: B023
                    10,
                    f"count {i}",
                )
            await sub.wait_for(
                lambda: {1, 2, 3}.issubset({v for a, s, t, v in sub.samples() if s == "parts_total"}), 10, "counts"
            )
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        await server.stop()
    counts = [s for b in sub.unique_batches().values() for s in b.samples if s.signal == "parts_total"]
    assert all(isinstance(s.value, int) for s in counts)
    assert gw.sources[0].unresolved == 0


async def test_five_thousand_nodes(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    machines = {f"M{i:03d}": [f"Power{j:02d}" for j in range(50)] for i in range(100)}
    server = MachineServer(free_port(), machines)
    await server.start()
    nodes = [
        {"asset": m, "signal": "Power", "node": server.node_id(m, s), "group": "fast"}
        for m, sigs in machines.items()
        for s in sigs
    ]
    assert len(nodes) == 5000
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, opcua=[_source(server, nodes)], batch_size=5000)
    sub = RawSubscriber("127.0.0.1", mosquitto.port).start()
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            src = gw.sources[0]
            await sub.wait_for(lambda: src.connected, 60, "5,000 monitored items")
            # every monitored item reports its initial value once
            await sub.wait_for(lambda: src.readings_in >= 5000, 60, "the initial value of every node")
            for m in list(machines)[:10]:
                await server.write(m, "Power07", 7000.0)
            await sub.wait_for(lambda: sum(1 for *_, v in sub.samples() if v == 7.0) >= 10, 30, "ten changes")
            gw.stop()
            await asyncio.wait_for(task, 30)
    finally:
        sub.stop()
        await server.stop()
    assert src.unresolved == 0
    assert len({a for a, *_ in sub.samples()}) == 100
    # Doubles with timestamps: the data changes came through the fast decoder, not asyncua's.
    assert src.publish_responses["fast"] > 0
    assert src.publish_responses["fast"] > 10 * src.publish_responses["generic"]


async def test_group_absolute_deadband(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = MachineServer(free_port(), {"Ofen": ["Temp"]}, initial=20.0)
    await server.start()
    source = _source(server, _nodes(server, "slow_changes"))
    source["groups"] = [
        {"name": "slow_changes", "publishing_interval_ms": 50, "sampling_interval_ms": 0, "deadband_abs": 5.0}
    ]
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, opcua=[source])
    # changes of less than 5 are held back by the server
    forwarded = await values_forwarded(settings, server, mosquitto.port, [22.0, 30.0, 31.0, 40.0])
    assert forwarded == [20.0, 30.0, 40.0]
