"""MQTT source against a real Mosquitto, fed by an independent client (``mosquitto_pub``):
plain numbers, JSON with paths, Sparkplug B births, aliases and data."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from gateway import Gateway
from gateway.pseudonymise import load_key, pseudonym
from testkit.servers import MosquittoServer, require_binary

from .conftest import gateway_settings
from .hub import RawSubscriber, wait_until
from .sparkplug_encode import encode_payload

pytestmark = pytest.mark.integration

NOW_MS = 1_790_000_000_000


def _pub(port: int, topic: str, *, message: str | None = None, file: Path | None = None) -> None:
    cmd = [require_binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic]
    cmd += ["-m", message] if message is not None else ["-f", str(file)]
    subprocess.run(cmd, check=True, timeout=10)


async def test_number_json_and_sparkplug_payloads(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    mqtt_source = {
        "name": "leitstand",
        "port": mosquitto.port,
        "client_id": "gw-source-test",
        "backoff_min_s": 0.1,
        "backoff_max_s": 1.0,
        "topics": [
            {
                "filter": "werk/+/+/wert",
                "format": "number",
                "asset_level": 1,
                "signal_level": 2,
                "asset_class": "press",
            },
            {
                "filter": "json/+/+",
                "format": "json",
                "asset_level": 1,
                "signal_level": 2,
                "value_path": "data.v",
                "ts_path": "data.t",
                "ts_unit": "ms",
            },
            {"filter": "spBv1.0/werk3/+/+/#", "format": "sparkplug", "asset_class": "welding"},
        ],
    }
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[mqtt_source])
    key = load_key(tmp_path / "member.key")
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await sub.wait_for(lambda: gw.sources[0].subscribed, 10, "the MQTT source to subscribe")
            await asyncio.to_thread(_pub, mosquitto.port, "werk/Presse-07/Power/wert", message="12500")
            await asyncio.to_thread(_pub, mosquitto.port, "werk/Presse-07/operator_name/wert", message="Hans")
            doc = f'{{"data": {{"v": 3, "t": {NOW_MS + 500}}}, "operator": "Erika"}}'
            await asyncio.to_thread(_pub, mosquitto.port, "json/Fraese-3/Parts", message=doc)
            birth = tmp_path / "birth.bin"
            birth.write_bytes(encode_payload(timestamp=NOW_MS, metrics=[("Power", 5, 10, 2000.0), ("State", 6, 3, 2)]))
            data = tmp_path / "data.bin"
            data.write_bytes(encode_payload(timestamp=NOW_MS + 1000, metrics=[(None, 5, 10, 2500.0), (None, 6, 3, 1)]))
            await asyncio.to_thread(_pub, mosquitto.port, "spBv1.0/werk3/DBIRTH/edge1/Schweisszelle-2", file=birth)
            await asyncio.to_thread(_pub, mosquitto.port, "spBv1.0/werk3/DDATA/edge1/Schweisszelle-2", file=data)
            await sub.wait_for(lambda: len(sub.samples()) >= 6, 15, "six samples")
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
    got = {(a, s, v) for a, s, _, v in sub.samples()}
    press = pseudonym(key, "a", "Presse-07")
    mill = pseudonym(key, "a", "Fraese-3")
    cell = pseudonym(key, "a", "edge1/Schweisszelle-2")
    assert got == {
        (press, "power_kw", 12.5),
        (mill, "parts_total", 3),
        (cell, "power_kw", 2.0),
        (cell, "state", "running"),
        (cell, "power_kw", 2.5),
        (cell, "state", "idle"),
    }
    samples = {(s.asset, s.signal, s.value): s for b in sub.unique_batches().values() for s in b.samples}
    assert samples[(mill, "parts_total", 3)].ts == (NOW_MS + 500) * 10**6
    assert samples[(cell, "power_kw", 2.5)].ts == (NOW_MS + 1000) * 10**6
    assert samples[(press, "power_kw", 12.5)].asset_class == "press"
    assert samples[(cell, "state", "idle")].asset_class == "welding"
    assert gw.sources[0].normaliser.dropped["personal"] == 1


async def test_messages_are_acknowledged_only_once_buffered(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    """A gateway that stops before its buffer flush leaves the message unacknowledged at the local
    broker, which delivers it again to the next run (persistent session)."""
    mqtt_source = {
        "name": "leitstand",
        "port": mosquitto.port,
        "client_id": "gw-ack-test",
        "topics": [{"filter": "werk/+/+/wert", "format": "number", "asset_level": 1, "signal_level": 2}],
    }
    slow = {"buffer": {"flush_interval_s": 5.0}}
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[mqtt_source], extra=slow)
    async with Gateway(settings) as gw:
        task = asyncio.create_task(gw.run())
        await wait_until(lambda: gw.sources[0].subscribed, 10, "the MQTT source to subscribe")
        await asyncio.to_thread(_pub, mosquitto.port, "werk/P1/Power/wert", message="1000")
        await wait_until(lambda: gw.buffer.pending == 1, 10, "the message to reach the gateway")
        # the message is received but not flushed: drop the session without acknowledging it
        src = gw.sources[0]
        assert src.session is not None
        await src.session.stop()  # leaves before the flush, as a crash would
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gw.buffer._pending.clear()  # what a crash would lose from memory
        gw.buffer._callbacks.clear()
    settings2 = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[mqtt_source])
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    try:
        async with Gateway(settings2) as gw2:
            task2 = asyncio.create_task(gw2.run())
            await sub.wait_for(lambda: len(sub.samples()) == 1, 15, "the redelivered message")
            gw2.stop()
            await asyncio.wait_for(task2, 15)
    finally:
        sub.stop()
    assert [(s, v) for _, s, _, v in sub.samples()] == [("power_kw", 1.0)]


async def test_hostile_payloads_are_counted_acknowledged_and_never_stall_the_source(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """JSON nested too deeply for the parser, NaN and infinities, integers the wire cannot carry: each message is
    acknowledged (a second run with the same persistent session gets nothing again), counted as malformed or as
    a drop, and the good message after them arrives."""
    mqtt_source = {
        "name": "leitstand",
        "port": mosquitto.port,
        "client_id": "gw-hostile-test",
        "topics": [
            {"filter": "werk/+/+/wert", "format": "number", "asset_level": 1, "signal_level": 2},
            {"filter": "json/+/+", "format": "json", "asset_level": 1, "signal_level": 2, "value_path": "data.v"},
        ],
    }
    hostile = [
        ("json/F1/Power", "[" * 100_000 + "]" * 100_000),  # RecursionError, not a ValueError
        ("json/F1/Power", '{"data": {"v": NaN}}'),
        ("json/F1/Power", '{"data": {"v": 1e999}}'),
        ("json/F1/Parts", '{"data": {"v": 100000000000000000000000000000}}'),
        ("werk/F1/Power/wert", "nan"),
        ("werk/F1/Parts/wert", "18446744073709551616"),
    ]
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    try:
        for run in range(2):
            settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, mqtt=[mqtt_source])
            async with Gateway(settings) as gw:
                task = asyncio.create_task(gw.run())
                src = gw.sources[0]
                await wait_until(lambda: gw.sources[0].subscribed, 10, "the MQTT source to subscribe")
                if run == 0:
                    for topic, payload in hostile:
                        (tmp_path / "payload.txt").write_text(payload)
                        await asyncio.to_thread(_pub, mosquitto.port, topic, file=tmp_path / "payload.txt")
                    await asyncio.to_thread(_pub, mosquitto.port, "werk/F1/Power/wert", message="2500")
                    await sub.wait_for(lambda: len(sub.samples()) == 1, 15, "the good message")
                    assert src.messages_in == 7 and src.malformed == 1
                    assert src.normaliser.dropped == {"invalid": 5}
                else:
                    await asyncio.sleep(2.0)  # what the broker still had unacknowledged would arrive now
                    assert src.messages_in == 0
                gw.stop()
                await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
    assert [(s, v) for _, s, _, v in sub.samples()] == [("power_kw", 2.5)]
