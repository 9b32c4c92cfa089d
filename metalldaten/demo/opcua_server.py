"""A real asyncua server that behaves like a factory's machines: the demo's factories and the tests use it.

``MachineServer`` serves one object per machine with one variable per signal, in a namespace
given by URI, with string node ids ``<machine>.<signal>`` (under ``Objects/<folder>/`` when a
folder is named, else directly under ``Objects``). ``restart(reorder=True)`` stops it and
starts it again on the same port with extra namespaces registered first, so that the namespace
index of every node changes (a gateway must address nodes by namespace URI, not by index).
``write`` sets a value with its own status code and source timestamp, as a machine would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from asyncua import ua
from asyncua.server.server import Server

URI = "urn:metalldaten:test:machines"


def _node_id(name: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(name), ua.Int16(ns))


@dataclass
class MachineServer:
    """``machines`` maps a machine to its signals. ``initial`` is one value for every variable, or a
    mapping by ``(machine, signal)`` or by signal; ``types`` fixes a signal's variant type (else: Double for
    floats, Int64 for other numbers on write; on creation asyncua infers it); ``properties`` adds constant
    properties per machine (e.g. ``{"Model": "TruLaser 3030"}``)."""

    port: int
    machines: dict[str, list[str]]
    uri: str = URI
    initial: Any = 0.0
    types: Mapping[str, ua.VariantType] = field(default_factory=dict)
    properties: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    folder: str | None = "Machines"
    server_name: str | None = None
    host: str = "127.0.0.1"
    server: Server | None = None
    nodes: dict[tuple[str, str], Any] = field(default_factory=dict)
    ns_index: int = 0
    starts: int = 0

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/"

    def _initial(self, machine: str, sig: str) -> Any:
        if isinstance(self.initial, Mapping):
            return self.initial.get((machine, sig), self.initial.get(sig, 0.0))
        return self.initial

    async def start(self, *, reorder: bool = False) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        if self.server_name:
            server.set_server_name(self.server_name)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if reorder:
            for i in range(3):
                await server.register_namespace(f"urn:metalldaten:test:other-{self.starts}-{i}")
        idx = await server.register_namespace(self.uri)
        self.ns_index = idx
        root = server.nodes.objects
        if self.folder:
            root = await root.add_folder(_node_id(self.folder, idx), ua.QualifiedName(self.folder, idx))
        self.nodes.clear()
        for machine, signals in self.machines.items():
            obj = await root.add_object(_node_id(machine, idx), ua.QualifiedName(machine, idx))
            for sig in signals:
                initial = self._initial(machine, sig)
                if sig in self.types:
                    initial = ua.Variant(initial, self.types[sig])
                var = await obj.add_variable(_node_id(f"{machine}.{sig}", idx), ua.QualifiedName(sig, idx), initial)
                self.nodes[(machine, sig)] = var
            for name, value in self.properties.get(machine, {}).items():
                self.nodes[(machine, name)] = await obj.add_property(_node_id(f"{machine}.{name}", idx), name, value)
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
        vtype = self.types.get(sig) or (ua.VariantType.Double if isinstance(value, float) else ua.VariantType.Int64)
        stamp = cast(ua.DateTime, ts)  # asyncua types timestamps as its datetime subclass
        dv = ua.DataValue(
            Value=ua.Variant(value, vtype),
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=stamp,
            ServerTimestamp=stamp,
        )
        await self.nodes[(machine, sig)].write_value(dv)
        return ts

    def node_id(self, machine: str, sig: str) -> str:
        return f"nsu={self.uri};s={machine}.{sig}"
