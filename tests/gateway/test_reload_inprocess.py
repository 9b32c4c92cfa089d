"""Reload in process, against real asyncua servers and Mosquitto: the unchanged source is the same runner
before and after, a changed policy applies to the next readings without restarting it, and a policy that
the running gateway cannot apply is refused with everything left as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.configfile import settings_from_dict
from gateway import Gateway, GatewaySettings, ReloadRefused
from testkit.machines import MachineServer
from testkit.servers import free_port, start_mosquitto
from testkit.waiting import wait_until

from .conftest import POLICY, gateway_settings
from .hub import RawSubscriber

pytestmark = pytest.mark.integration


def _source(name: str, server: MachineServer, *signals: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": server.url,
        "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0}],
        "nodes": [
            {"asset": f"Ofen-{name}", "signal": sig, "node": server.node_id("Ofen", sig), "group": "fast"}
            for sig in signals
        ],
    }


def _with(settings: GatewaySettings, **changes: Any) -> GatewaySettings:
    data = settings.model_dump(mode="json")
    data.update(changes)
    return settings_from_dict(GatewaySettings, data)


async def test_policy_and_sources_change_in_place(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    one = MachineServer(free_port(), {"Ofen": ["Temp", "Druck"]})
    two = MachineServer(free_port(), {"Ofen": ["Temp"]})
    await one.start()
    await two.start()
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    policy = {**POLICY, "signals": {k: v for k, v in POLICY["signals"].items() if k != "Temp"}}
    settings = gateway_settings(
        tmp_path,
        uplink_port=broker.port,
        opcua=[_source("a", one, "Temp")],
        extra={"policy": policy},
    )
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            a = gw.sources[0]
            await wait_until(lambda: a.readings_in >= 1, 15, "a's first reading")
            assert a.normaliser.dropped["not_allowed"] >= 1  # Temp is not shared yet
            # allow Temp, add source b: a is the same runner and sends Temp from its next change on
            plan = await gw.reload(
                _with(gw.settings, policy=POLICY, opcua=[settings.opcua[0].model_dump(), _source("b", two, "Temp")])
            )
            assert plan.policy_changed and plan.keep == (("opcua", "a"),) and plan.start == (("opcua", "b"),)
            assert gw.sources[0] is a and a.reconnects == 0
            await one.write("Ofen", "Temp", 812.5)
            await two.write("Ofen", "Temp", 640.0)
            await wait_until(lambda: {812.5, 640.0} <= {v for *_, v in sub.samples()}, 15, "both temperatures")
            # a change the running gateway cannot apply (with a source removed too): refused, nothing changed
            uplink = {**gw.settings.uplink.model_dump(mode="json"), "port": broker.port + 1}
            with pytest.raises(ReloadRefused, match=r"\[uplink\] cannot change"):
                await gw.reload(_with(gw.settings, uplink=uplink, opcua=[settings.opcua[0].model_dump()]))
            assert [s.name for s in gw.sources] == ["a", "b"] and gw.sources[0] is a
            assert gw.settings.uplink.port == broker.port
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        await one.stop()
        await two.stop()
        broker.stop()
