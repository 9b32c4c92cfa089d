"""No clear identifier in any byte that reaches the hub broker, for random identifiers.

Every byte the gateway sends to the broker passes through a recording relay (CONNECT packet with
client id and will, topics, payloads); the payloads are also decompressed and decoded. Machine ids,
node ids, browse names and the gateway name are random for each example."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import Gateway
from testkit.machines import MachineServer
from testkit.servers import free_port, start_mosquitto

from .conftest import gateway_settings
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
@given(machine=ident, node_name=ident, gateway_name=ident, browse=ident)
def test_no_clear_identifier_reaches_the_broker(
    broker, machine: str, node_name: str, gateway_name: str, browse: str
) -> None:  # type: ignore[no-untyped-def]
    secrets = [machine, node_name, gateway_name, browse]
    sent, payloads = asyncio.run(_run(broker.port, machine, node_name, gateway_name, browse))
    decoded = b"".join(zstandard.ZstdDecompressor().decompress(p[4:]) for p in payloads if p[:4] == b"MDZ1")
    assert payloads, "nothing reached the broker"
    for secret in secrets:
        for v in _variants(secret):
            assert v not in sent, f"clear identifier in the bytes sent to the broker: {secret!r}"
            assert v not in decoded, f"clear identifier in a decompressed payload: {secret!r}"


async def _run(port: int, machine: str, node_name: str, gateway_name: str, browse: str) -> tuple[bytes, list[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server = MachineServer(
            free_port(), {browse.strip() or "x" * 10: ["Power"]}, uri=f"urn:{node_name.replace(' ', '_')}"
        )
        await server.start()
        m = next(iter(server.machines))
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
        }
        sub = RawSubscriber("127.0.0.1", port, topic="mdh/#").start()
        try:
            async with Relay(port) as relay:
                s = gateway_settings(tmp_path, uplink_port=relay.port, opcua=[source], name=gateway_name)
                async with Gateway(s) as gw:
                    task = asyncio.create_task(gw.run())
                    await sub.wait_for(lambda: gw.sources[0].connected, 10, "the source")
                    await server.write(m, "Power", 1234.0)
                    await sub.wait_for(lambda: any(v == 1.234 for *_, v in sub.samples()), 10, "a sample")
                    gw.stop()
                    await asyncio.wait_for(task, 10)
                sent = bytes(relay.sent)
        finally:
            sub.stop()
            await server.stop()
        return sent, [p for _, p, _ in sub.messages]
