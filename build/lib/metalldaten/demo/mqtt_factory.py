"""A simulated factory whose machines publish to the factory's own MQTT broker (not OPC UA).

Topics: ``plant/{hall}/{serial}/{Variable}``; payload JSON ``{"value": ..., "ts": "<ISO 8601 UTC>"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .machines import MachineSpec, build_machines

log = logging.getLogger(__name__)


class MqttFactory:
    def __init__(
        self,
        *,
        name: str,
        hall: str,
        broker_port: int,
        machines: list[MachineSpec],
        seed: int,
        tick_s: float = 1.0,
        broker_host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.broker_host = broker_host
        self.hall = hall
        self.broker_port = broker_port
        self.tick_s = tick_s
        self.machines = build_machines(machines, seed)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plc-{hall}", protocol=mqtt.MQTTv311)

    def topic(self, serial: str, variable: str) -> str:
        return f"plant/{self.hall}/{serial}/{variable}"

    async def _run(self) -> None:
        while True:
            now = dt.datetime.now(dt.UTC).isoformat()
            for m in self.machines:
                m.step(self.tick_s)
                for name, value in m.readings().items():
                    payload = json.dumps({"value": value, "ts": now})
                    self._client.publish(self.topic(m.spec.serial, name), payload, qos=1)
            await asyncio.sleep(self.tick_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MqttFactory]:
        self._client.reconnect_delay_set(1, 5)
        self._client.connect_async(self.broker_host, self.broker_port)
        self._client.loop_start()
        task = asyncio.create_task(self._run(), name=f"factory-{self.name}")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._client.disconnect()
            self._client.loop_stop()
