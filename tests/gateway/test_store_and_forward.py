"""Store-and-forward with real processes: the hub broker is down for more than 10 s while the
gateway process is SIGKILLed and restarted; every sample buffered before the kill reaches the
hub-side subscriber exactly once per (asset, signal, ts)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from testkit.machines import MachineServer
from testkit.servers import free_port, start_mosquitto
from wire import decode_batch

from .conftest import MEMBER
from .hub import wait_until
from .process import kill_if_running, opcua_toml, spawn_gateway, write_gateway_toml

pytestmark = pytest.mark.integration


def _config(tmp: Path, opcua_url: str, node: str, broker_port: int) -> Path:
    from gateway.pseudonymise import generate_key

    generate_key(tmp / "member.key", key_id="k-test")
    source = opcua_toml("m", opcua_url, "Schleifmaschine-SN-889", node)
    return write_gateway_toml(
        tmp / "gateway.toml", member=MEMBER, name="kill-test-gw", broker_port=broker_port, sources=source
    )


class Collector:
    """Hub-side subscriber with a persistent session, so nothing is missed across a broker restart."""

    def __init__(self, port: int) -> None:
        self.payloads: list[bytes] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hub-collector", clean_session=False)
        self.client.on_connect = lambda c, *a: c.subscribe("mdh/#", qos=1)
        self.client.on_message = lambda c, u, m: (
            self.payloads.append(bytes(m.payload)) if "/samples" in m.topic else None
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def keys(self) -> tuple[dict[str, list[tuple[str, str, int]]], list[tuple[str, str, int]]]:
        by_batch: dict[str, list[tuple[str, str, int]]] = {}
        for p in list(self.payloads):
            b = decode_batch(p)
            by_batch[b.batch_id] = [(s.asset, s.signal, s.ts) for s in b.samples]
        return by_batch, [k for keys in by_batch.values() for k in keys]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _write_for(server: MachineServer, seconds: float, written: list[int], start: float) -> float:
    value = start
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value += 1.0
        ts = await server.write("M", "Power", value)
        written.append(int(ts.timestamp() * 1e6) * 1000)
        await asyncio.sleep(0.02)
    return value


async def test_broker_down_and_gateway_killed_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = MachineServer(free_port(), {"M": ["Power"]})
    await server.start()
    config = _config(tmp_path, server.url, server.node_id("M", "Power"), broker.port)
    collector = Collector(broker.port)
    log = tmp_path / "gateway.log"
    gw = spawn_gateway(config, log)
    written: list[int] = []
    try:
        # connected, resolved and subscribed once the subscription's initial value has reached the broker
        await wait_until(lambda: len(collector.keys()[1]) >= 1, 60, "the gateway's first sample")
        value = await _write_for(server, 1.0, written, 0.0)
        await wait_until(lambda: len(collector.keys()[1]) >= len(written) // 2, 10, "data while the broker is up")
        broker.stop()
        down_since = time.monotonic()
        value = await _write_for(server, 3.0, written, value)
        await asyncio.sleep(1.0)  # > flush interval: all of it is in the disk buffer now
        before_kill = list(written)
        gw.send_signal(signal.SIGKILL)
        gw.wait(10)
        await asyncio.sleep(max(0.0, 10.5 - (time.monotonic() - down_since)))
        gw = spawn_gateway(config, log)  # restarted while the broker is still down
        await asyncio.sleep(2.5)
        value = await _write_for(server, 1.0, written, value)
        assert time.monotonic() - down_since > 10
        broker.start()
        expected = set(before_kill)
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: expected <= {ts for _, _, ts in collector.keys()[1]}, 30, "the backlog")
        _, keys = collector.keys()
        missing = expected - {ts for _, _, ts in keys}
        assert not missing, (
            f"{len(missing)} of {len(expected)} buffered samples never arrived\n" + log.read_text()[-3000:]
        )
        # exactly once: no (asset, signal, ts) in two different batches, none twice in one
        assert len(keys) == len(set(keys)), "a sample reached the hub in two different batches"
        assert len({a for a, _, _ in keys}) == 1 and not any("Schleif" in a for a, _, _ in keys)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(20) == 0
    finally:
        kill_if_running(gw)
        collector.stop()
        await server.stop()
        broker.stop()
