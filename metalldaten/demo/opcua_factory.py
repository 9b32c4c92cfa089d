"""A simulated factory that exposes its machines on an asyncua OPC UA server (:class:`~.opcua_server.MachineServer`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from asyncua import ua

from .machines import MachineSpec, build_machines
from .opcua_server import MachineServer

log = logging.getLogger(__name__)

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
        machines: list[MachineSpec],
        seed: int,
        tick_s: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.namespace = namespace
        self.tick_s = tick_s
        self.machines = build_machines(machines, seed)
        readings = {m.spec.serial: m.readings() for m in self.machines}
        self._server = MachineServer(
            port=port,
            machines={serial: list(values) for serial, values in readings.items()},
            uri=namespace,
            initial={(serial, k): v for serial, values in readings.items() for k, v in values.items()},
            types=_TYPES,
            properties={m.spec.serial: {"Model": m.spec.model} for m in self.machines},
            folder=None,
            server_name=f"{name} line controller",
            host=host,
        )

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def _publish(self) -> None:
        now = dt.datetime.now(dt.UTC)
        for m in self.machines:
            for name, value in m.readings().items():
                await self._server.write(m.spec.serial, name, value, ts=now)

    async def _run(self) -> None:
        while True:
            for m in self.machines:
                m.step(self.tick_s)
            await self._publish()
            await asyncio.sleep(self.tick_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OpcUaFactory]:
        await self._server.start()
        try:
            task = asyncio.create_task(self._run(), name=f"factory-{self.name}")
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await self._server.stop()
