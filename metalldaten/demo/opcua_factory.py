"""A simulated factory that exposes its machines on an asyncua OPC UA server (:class:`~.opcua_server.MachineServer`).

The history goes out as value changes with past source timestamps, a day at a time, each day
only once the gateway has taken delivery of the day before (the server keeps up to
:data:`QUEUE_SIZE` changes per node for a subscription; the gateway's group asks for that many).
Before the gateway connects, every node holds its value from before the history began, so the
gateway's watermarks start there and let the whole history through.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from asyncua import ua

from .history import SLOT_S, Reading
from .machines import MachineSpec
from .opcua_server import MachineServer
from .replay import FactoryMachines

log = logging.getLogger(__name__)

#: Value changes a node's monitored item queues: more than one day of five-minute state readings.
QUEUE_SIZE = 1000

_TYPES = {
    "State": ua.VariantType.String,
    "ActivePower": ua.VariantType.Double,
    "EnergyMeter": ua.VariantType.Double,
    "PartCounter": ua.VariantType.UInt64,
    "ScrapCounter": ua.VariantType.UInt64,
    "SpindleTemp": ua.VariantType.Double,
    "SpindleSpeed": ua.VariantType.Double,
    "OperatorBadge": ua.VariantType.String,
    "SerialNumber": ua.VariantType.String,
}


class OpcUaFactory:
    """One factory: an OPC UA server at ``opc.tcp://127.0.0.1:{port}`` with one object per machine.

    Variables are addressed as ``nsu={namespace};s={serial}.{Variable}``.
    """

    def __init__(
        self,
        *,
        name: str,
        port: int,
        namespace: str,
        machines: FactoryMachines,
        tick_s: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.namespace = namespace
        self.tick_s = tick_s
        self.machines = machines
        readings = machines.first_readings()
        self._server = MachineServer(
            port=port,
            machines={serial: list(values) for serial, values in readings.items()},
            uri=namespace,
            initial={(serial, k): v for serial, values in readings.items() for k, v in values.items()},
            types=_TYPES,
            properties={m.spec.serial: {"Model": m.spec.model} for m in machines.live},
            folder=None,
            server_name=f"{name} line controller",
            host=host,
        )

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def _stamp_first_values(self) -> None:
        """Give every node its value from before the history, stamped then (not at server start)."""
        history = self.machines.history
        if history is None:
            return
        before = history.start - timedelta(seconds=SLOT_S)
        for serial, values in self.machines.first_readings().items():
            for name, value in values.items():
                await self._server.write(serial, name, value, ts=before)

    async def run(self, ready: Callable[[], bool], delivered: Callable[[], int]) -> None:
        """Replay the history once the gateway subscribed (``ready``), paced by ``delivered`` (value changes
        the gateway has read), then write live values every tick."""
        m = self.machines

        async def send(spec: MachineSpec, readings: list[Reading]) -> None:
            for i, (ts, name, value) in enumerate(readings):
                await self._server.write(spec.serial, name, value, ts=dt.datetime.fromtimestamp(ts / 1e9, dt.UTC))
                if i % 100 == 99:
                    await asyncio.sleep(0)  # the server's writes do not yield: let the others run

        # three days in flight (the Pacer's default): at most 3 x 288 state changes per node, within QUEUE_SIZE
        await m.replay(self.name, ready, delivered, send)
        while True:
            now = dt.datetime.now(dt.UTC)
            for machine in m.live:
                machine.step(self.tick_s)
                for name, value in machine.readings().items():
                    await self._server.write(machine.spec.serial, name, value, ts=now)
            await asyncio.sleep(self.tick_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OpcUaFactory]:
        """The server runs for the duration of the block (call :meth:`run` inside)."""
        await self._server.start()
        try:
            await self._stamp_first_values()
            yield self
        finally:
            await self._server.stop()
