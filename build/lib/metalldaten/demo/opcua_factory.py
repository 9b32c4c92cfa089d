"""A simulated factory that exposes its machines on an asyncua OPC UA server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from asyncua import ua
from asyncua.server.server import Server

from .machines import MachineSpec, build_machines

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


def _node_id(name: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(name), ua.Int16(ns))


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
        self._server = Server()
        self._nodes: dict[tuple[str, str], Any] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def _setup(self) -> None:
        await self._server.init()
        self._server.set_endpoint(self.endpoint)
        self._server.set_server_name(f"{self.name} line controller")
        self._server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await self._server.register_namespace(self.namespace)
        objects = self._server.nodes.objects
        for m in self.machines:
            obj = await objects.add_object(_node_id(m.spec.serial, idx), ua.QualifiedName(m.spec.serial, idx))
            for name, value in m.readings().items():
                node = await obj.add_variable(
                    _node_id(f"{m.spec.serial}.{name}", idx),
                    ua.QualifiedName(name, idx),
                    ua.Variant(value, _TYPES[name]),
                )
                self._nodes[(m.spec.serial, name)] = node
            model = await obj.add_property(_node_id(f"{m.spec.serial}.Model", idx), "Model", m.spec.model)
            self._nodes[(m.spec.serial, "Model")] = model

    async def _publish(self) -> None:
        now = cast(ua.DateTime, dt.datetime.now(dt.UTC))  # asyncua types timestamps as its datetime subclass
        for m in self.machines:
            for name, value in m.readings().items():
                dv = ua.DataValue(ua.Variant(value, _TYPES[name]), SourceTimestamp=now, ServerTimestamp=now)
                await self._nodes[(m.spec.serial, name)].write_value(dv)

    async def _run(self) -> None:
        while True:
            for m in self.machines:
                m.step(self.tick_s)
            await self._publish()
            await asyncio.sleep(self.tick_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OpcUaFactory]:
        await self._setup()
        async with self._server:
            task = asyncio.create_task(self._run(), name=f"factory-{self.name}")
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
