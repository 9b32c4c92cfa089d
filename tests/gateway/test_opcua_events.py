"""Events and alarms of a real asyncua server become machine states and downtime reasons at the broker:
by event type, severity and condition state, through a machine object or the Server object, each counted;
the message texts and operator names the machine puts into its events never reach the broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import Gateway
from testkit.alarms import ALARM_TYPE, MachineEvents
from testkit.machines import MachineServer
from testkit.servers import free_port, start_mosquitto
from testkit.waiting import wait_until

from .conftest import EVENT_POLICY, gateway_settings
from .hub import RawSubscriber, Relay

pytestmark = pytest.mark.integration


def events_config(server: MachineServer) -> dict[str, Any]:
    return {
        "notifiers": [
            {"node": f"nsu={server.uri};s=Presse7", "asset": "Presse-7 SN 4711"},
            {"assets_by_source": {"Laser2": "Laser-2 SN 0815"}},  # the Server object
        ],
        "rules": [
            {"event_type": "ToolBreakEventType", "min_severity": 500, "state": "down", "reason": "tooling"},
            {"event_type": "MaterialShortageEventType", "state": "idle", "reason": "material"},
            {"event_type": ALARM_TYPE, "active": True, "min_severity": 700, "state": "down", "reason": "breakdown"},
            {"event_type": ALARM_TYPE, "active": False, "state": "running", "reason": "none"},
        ],
    }


async def test_events_and_alarms_become_states_and_reasons(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = MachineServer(free_port(), {"Presse7": ["Power"], "Laser2": ["Power"]})
    await server.start()
    ev = await MachineEvents(server).install()
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    source = {
        "name": "m",
        "url": server.url,
        "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0}],
        "nodes": [{"asset": "Presse-7 SN 4711", "signal": "Power", "node": server.node_id("Presse7", "Power")}],
        "events": events_config(server),
    }
    try:
        async with Relay(broker.port) as relay:
            settings = gateway_settings(
                tmp_path, uplink_port=relay.port, opcua=[source], extra={"policy": EVENT_POLICY}
            )
            async with Gateway(settings) as gw:
                task = asyncio.create_task(gw.run())
                src = gw.sources[0]
                stats = src.events  # type: ignore[attr-defined]
                await wait_until(lambda: stats.notifiers == 2, 15, "the event subscription of both notifiers")
                base = (stats.received, stats.mapped)
                secret_texts = ["Werkzeugbruch gemeldet von Hr. Bernd Krause", "Anna Lindqvist"]
                await ev.emit(
                    "Presse7", "ToolBreakEventType", severity=800, message=secret_texts[0], operator=secret_texts[1]
                )
                await ev.emit("Presse7", "ToolBreakEventType", severity=200, message="minor", operator=secret_texts[1])
                await ev.emit("Presse7", ALARM_TYPE, severity=900, message="Hydraulikdruck Hr. Krause", active=True)
                await ev.emit("Laser2", "MaterialShortageEventType", severity=300, via_server=True)
                await ev.emit("Unbekannt", "MaterialShortageEventType", severity=300, via_server=True)
                await wait_until(lambda: stats.received - base[0] >= 5, 15, "five events")
                await ev.emit("Presse7", ALARM_TYPE, severity=900, message="quittiert", active=False)
                await wait_until(lambda: stats.received - base[0] >= 6, 15, "the cleared alarm")
                await wait_until(lambda: _reasons(sub).count("none") >= 1, 15, "the cleared alarm's reason")
                gw.stop()
                await asyncio.wait_for(task, 15)
            sent = bytes(relay.sent)
        assert stats.mapped - base[1] == 4  # tool break, alarm on, shortage on the laser, alarm off
        assert stats.dropped["unmatched"] >= 1  # the minor tool break
        assert stats.dropped["unassigned"] >= 1  # a source the mapping does not know
        samples = [(a, sig, v) for a, sig, _, v in sub.samples() if sig in ("state", "downtime_reason")]
        presse = {a for a, sig, v in samples if v == "tooling"}
        laser = {a for a, sig, v in samples if v == "material"}
        assert len(presse) == 1 and len(laser) == 1 and presse != laser
        by_asset = {a: [(sig, v) for b, sig, v in samples if b == a] for a in presse | laser}
        assert by_asset[presse.pop()][-6:] == [
            ("state", "down"),
            ("downtime_reason", "tooling"),
            ("state", "down"),
            ("downtime_reason", "breakdown"),
            ("state", "running"),
            ("downtime_reason", "none"),
        ]
        assert by_asset[laser.pop()] == [("state", "idle"), ("downtime_reason", "material")]
        for text in [*secret_texts, "Krause", "Presse-7", "Laser2", "Presse7", "quittiert", "Hydraulikdruck"]:
            assert text.encode() not in sent and text.encode("utf-16-le") not in sent
    finally:
        sub.stop()
        await server.stop()
        broker.stop()


def _reasons(sub: RawSubscriber) -> list[object]:
    return [v for _, sig, _, v in sub.samples() if sig == "downtime_reason"]


async def test_the_heartbeat_repeats_the_state_and_reason_an_event_set(tmp_path: Path) -> None:
    """Events report changes only: a breakdown that lasts longer than the hub's 300 s hold must not turn into a
    gap, so the last mapped state and reason are repeated while the event subscription lives."""
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = MachineServer(free_port(), {"Presse7": ["Power"], "Laser2": ["Power"]})
    await server.start()
    ev = await MachineEvents(server).install()
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    source = {"name": "m", "url": server.url, "audit_interval_s": 1, "events": events_config(server)}
    settings = gateway_settings(
        tmp_path, uplink_port=broker.port, opcua=[source], extra={"policy": EVENT_POLICY, "uplink": {"heartbeat_s": 2}}
    )
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            stats = gw.sources[0].events  # type: ignore[attr-defined]
            await wait_until(lambda: stats.notifiers == 2, 15, "the event subscription")
            at = await ev.emit("Presse7", "ToolBreakEventType", severity=800)
            at_ns = int(at.timestamp() * 1e6) * 1000

            def repeated() -> bool:
                return any(
                    s == "downtime_reason" and v == "tooling" and ts >= at_ns + 5 * 10**9
                    for _, s, ts, v in sub.samples()
                )

            await wait_until(repeated, 20, "a repeat of the reason more than two heartbeats later")
            gw.stop()
            await asyncio.wait_for(task, 15)
        reasons = [(ts, v) for _, s, ts, v in sub.samples() if s == "downtime_reason"]
        assert reasons[0] == (at_ns, "tooling") and all(v == "tooling" for _, v in reasons)
    finally:
        sub.stop()
        await server.stop()
        broker.stop()
