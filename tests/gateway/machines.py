"""A real asyncua server that behaves like a factory's machines, for gateway tests.

``MachineServer`` serves variables under ``Objects/Machines/<machine>/<signal>`` in a namespace
given by URI, with string node ids ``<machine>.<signal>``. ``restart(reorder=True)`` stops it
and starts it again on the same port with extra namespaces registered first, so that the
namespace index of every node changes (as real servers do after a restart or an update).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

URI = "urn:metalldaten:test:machines"

for _name in ("asyncua", "asyncua.server", "asyncua.server.address_space"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass
class MachineServer:
    port: int
    machines: dict[str, list[str]]
    uri: str = URI
    initial: Any = 0.0
    server: Server | None = None
    nodes: dict[tuple[str, str], Any] = field(default_factory=dict)
    ns_index: int = 0
    starts: int = 0

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    async def start(self, *, reorder: bool = False) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if reorder:
            for i in range(3):
                await server.register_namespace(f"urn:metalldaten:test:other-{self.starts}-{i}")
        idx = await server.register_namespace(self.uri)
        self.ns_index = idx
        root = await server.nodes.objects.add_folder(ua.NodeId("Machines", idx), ua.QualifiedName("Machines", idx))
        self.nodes.clear()
        for machine, signals in self.machines.items():
            obj = await root.add_object(ua.NodeId(machine, idx), ua.QualifiedName(machine, idx))
            for sig in signals:
                initial = self.initial.get(sig, 0.0) if isinstance(self.initial, dict) else self.initial
                var = await obj.add_variable(ua.NodeId(f"{machine}.{sig}", idx), ua.QualifiedName(sig, idx), initial)
                self.nodes[(machine, sig)] = var
        await server.start()
        self.server = server
        self.starts += 1

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def restart(self, *, reorder: bool = True) -> None:
        await self.stop()
        await self.start(reorder=reorder)

    async def write(
        self, machine: str, sig: str, value: Any, *, status: int = 0, ts: datetime | None = None
    ) -> datetime:
        ts = ts or datetime.now(UTC)
        variant = ua.Variant(value, ua.VariantType.Double if isinstance(value, float) else ua.VariantType.Int64)
        dv = ua.DataValue(Value=variant, StatusCode=ua.StatusCode(status), SourceTimestamp=ts, ServerTimestamp=ts)
        await self.nodes[(machine, sig)].write_value(dv)
        return ts

    def node_id(self, machine: str, sig: str) -> str:
        return f"nsu={self.uri};s={machine}.{sig}"
