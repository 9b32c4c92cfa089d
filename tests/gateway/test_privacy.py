"""No clear identifier in any byte that reaches the hub broker, for random identifiers.

Every byte the gateway sends to the broker passes through a recording relay (CONNECT packet with
client id and will, topics, payloads); the payloads are also decompressed and decoded. Machine ids,
node ids, browse names, the gateway name and an operator's name are random for each example. Backfill
and events are on: the gateway runs twice, the second time reading the gap from the server's history,
and the machine reports events and alarms whose message texts name the machine and the operator."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import Gateway
from testkit.alarms import ALARM_TYPE, MachineEvents
from testkit.historian import HistorisedMachineServer
from testkit.servers import free_port, start_mosquitto

from .conftest import EVENT_POLICY, gateway_settings
from .hub import RawSubscriber, Relay

pytestmark = pytest.mark.integration

ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_. ", min_size=10, max_size=30)


def _variants(text: str) -> set[bytes]:
    out = {text.encode(), text.encode("utf-16-le")}
    out |= {part.encode() for part in text.split() if len(part) >= 8}
    return out


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = start_mosquitto(tmp_path_factory.mktemp("privacy") / "mosquitto")
    yield server
    server.stop()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(machine=ident, node_name=ident, gateway_name=ident, browse=ident, operator=ident)
def test_no_clear_identifier_reaches_the_broker(
    broker, machine: str, node_name: str, gateway_name: str, browse: str, operator: str
) -> None:  # type: ignore[no-untyped-def]
    secrets = [machine, node_name, gateway_name, browse, operator]
    sent, payloads = asyncio.run(_run(broker.port, machine, node_name, gateway_name, browse, operator))
    decoded = b"".join(zstandard.ZstdDecompressor().decompress(p[4:]) for p in payloads if p[:4] == b"MDZ1")
    assert payloads, "nothing reached the broker"
    for secret in secrets:
        for v in _variants(secret):
            assert v not in sent, f"clear identifier in the bytes sent to the broker: {secret!r}"
            assert v not in decoded, f"clear identifier in a decompressed payload: {secret!r}"


async def _run(
    port: int, machine: str, node_name: str, gateway_name: str, browse: str, operator: str
) -> tuple[bytes, list[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server = HistorisedMachineServer(
            free_port(), {browse.strip() or "x" * 10: ["Power"]}, uri=f"urn:{node_name.replace(' ', '_')}"
        )
        await server.start()
        m = next(iter(server.machines))
        events = await MachineEvents(server).install()
        source = {
            "name": "src",
            "url": server.url,
            "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0}],
            "nodes": [
                {"asset": machine, "signal": "Power", "node": server.node_id(m, "Power"), "group": "fast"},
                {
                    "asset": machine + "-2",
                    "signal": "Power",
                    "path": f"Machines/{m}/Power",
                    "path_nsu": server.uri,
                    "group": "fast",
                },
            ],
            "backfill": {"enabled": True},
            "events": {
                "notifiers": [
                    {"node": f"nsu={server.uri};s={m}", "asset": machine},
                    {"assets_by_source": {m: machine + "-2"}},
                ],
                "rules": [
                    {"event_type": "ToolBreakEventType", "state": "down", "reason": "tooling"},
                    {"event_type": ALARM_TYPE, "active": True, "state": "down", "reason": "breakdown"},
                ],
            },
        }
        text = f"{operator} an {machine} ({browse}, {node_name}, {gateway_name})"
        sub = RawSubscriber("127.0.0.1", port, topic="mdh/#").start()
        try:
            async with Relay(port) as relay:
                s = gateway_settings(
                    tmp_path, uplink_port=relay.port, opcua=[source], name=gateway_name, extra={"policy": EVENT_POLICY}
                )
                async with Gateway(s) as gw:  # first run: the values the backfill starts from
                    task = asyncio.create_task(gw.run())
                    await server.write(m, "Power", 1234.0)
                    await sub.wait_for(lambda: any(v == 1.234 for *_, v in sub.samples()), 10, "a sample")
                    gw.stop()
                    await asyncio.wait_for(task, 10)
                await server.write(m, "Power", 2345.0)  # while the gateway is stopped: only in the history
                await server.write(m, "Power", 3456.0)
                async with Gateway(s) as gw:
                    task = asyncio.create_task(gw.run())
                    src = gw.sources[0]
                    await sub.wait_for(lambda: src.backfill.samples >= 2, 10, "the backfill")  # type: ignore[attr-defined]
                    await sub.wait_for(lambda: src.events.notifiers == 2, 10, "the events")  # type: ignore[attr-defined]
                    await events.emit(m, "ToolBreakEventType", severity=800, message=text, operator=operator)
                    await events.emit(m, ALARM_TYPE, severity=900, message=text, active=True, via_server=True)
                    await sub.wait_for(lambda: {"tooling", "breakdown"} <= {v for *_, v in sub.samples()}, 10, "events")
                    gw.stop()
                    await asyncio.wait_for(task, 10)
                sent = bytes(relay.sent)
        finally:
            sub.stop()
            await server.stop()
        assert {2.345, 3.456} <= {v for *_, v in sub.samples()}, "the gap was not backfilled"
        return sent, [p for _, p, _ in sub.messages]
