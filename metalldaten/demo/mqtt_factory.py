"""A simulated factory whose machines publish Sparkplug B to the factory's own MQTT broker (not OPC UA).

Topics: ``spBv1.0/{group}/DDATA/{node}/{serial}``; each message carries all variables of one machine,
every metric with its name and its own timestamp. The history goes out as one message per machine and
day (288 state readings and the hourly counters, each stamped when it was recorded), as an edge node
sends what it buffered; then one message per machine and tick, stamped now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .history import Reading
from .machines import MachineSpec
from .replay import FactoryMachines
from .sparkplug import Metric, encode_payload

log = logging.getLogger(__name__)

#: Sparkplug datatypes of the machines' variables (UInt64 counters, Double gauges, String state).
DATATYPES = {"PartCounter": 8, "ScrapCounter": 8, "State": 12, "OperatorBadge": 12, "SerialNumber": 12}
_DOUBLE = 10


def metrics(readings: list[Reading]) -> list[Metric]:
    return [(name, None, DATATYPES.get(name, _DOUBLE), value, ts // 10**6) for ts, name, value in readings]


class MqttFactory:
    def __init__(
        self,
        *,
        name: str,
        node: str,
        broker_port: int,
        machines: FactoryMachines,
        tick_s: float = 1.0,
        broker_host: str = "127.0.0.1",
        group: str = "plant",
    ) -> None:
        self.name = name
        self.node = node
        self.group = group
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.tick_s = tick_s
        self.machines = machines
        self._seq = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-{node}", protocol=mqtt.MQTTv311)
        self._client.max_queued_messages_set(0)

    def topic(self, serial: str) -> str:
        return f"spBv1.0/{self.group}/DDATA/{self.node}/{serial}"

    def _publish(self, serial: str, readings: list[Reading]) -> None:
        self._seq = (self._seq + 1) % 256
        payload = encode_payload(timestamp=time.time_ns() // 10**6, metrics=metrics(readings), seq=self._seq)
        self._client.publish(self.topic(serial), payload, qos=1)

    async def run(self, ready: Callable[[], bool], delivered: Callable[[], int]) -> None:
        """Replay the history once the gateway reads (``ready``), a day at a time once the gateway has read
        the day before (``delivered``: readings it took; the embedded broker drops a QoS 1 message whose
        acknowledgement takes longer than 5 s, so nothing may pile up before the gateway), then go live."""
        m = self.machines

        async def send(spec: MachineSpec, readings: list[Reading]) -> None:
            self._publish(spec.serial, readings)

        await m.replay(self.node, ready, delivered, send)
        while True:
            now = time.time_ns()
            for machine in m.live:
                machine.step(self.tick_s)
                self._publish(machine.spec.serial, [(now, k, v) for k, v in machine.readings().items()])
            await asyncio.sleep(self.tick_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MqttFactory]:
        """Connected to the factory's broker for the duration of the block (call :meth:`run` inside)."""
        self._client.reconnect_delay_set(1, 5)
        self._client.connect_async(self.broker_host, self.broker_port)
        self._client.loop_start()
        try:
            yield self
        finally:
            self._client.disconnect()
            self._client.loop_stop()
