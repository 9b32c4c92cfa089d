"""Large asyncua address spaces for discovery tests, built in one go, and a server that limits browse results.

:class:`PlantServer` serves ``Objects/<plant>/<hall>/<machine>/<signal>`` for many machines, each machine
built like a real one (power in W, energy in Wh, temperature in K, spindle speed in rpm with their
``EngineeringUnits``, part and scrap counters, an operating mode, and an operator name, a badge and a
comment that a gateway must never read). The nodes go into the address space in one go
(straight into the address space), not one client-style call per node: 50,000 nodes take seconds.

With ``browse_limit``, the server returns at most that many references per node and a continuation point
for the rest, and serves BrowseNext (which asyncua's server does not implement) from those points.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AttributeValue, NodeData
from asyncua.server.server import Server
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import struct_from_binary

URI = "urn:metalldaten:test:plant"

#: (browse name, variant type, EngineeringUnits display name or None, initial value)
MACHINE_SIGNALS: tuple[tuple[str, ua.VariantType, str | None, Any], ...] = (
    ("ActivePower", ua.VariantType.Double, "W", 12500.0),
    ("EnergyMeter", ua.VariantType.Double, "Wh", 1.0e6),
    ("SpindleTemperature", ua.VariantType.Double, "K", 320.0),
    ("SpindleSpeed", ua.VariantType.Double, "rpm", 8000.0),
    ("PartsCounter", ua.VariantType.UInt32, None, 100),
    ("ScrapCounter", ua.VariantType.UInt32, None, 3),
    ("OperatingMode", ua.VariantType.Int32, None, 2),
    ("CoolantLevel", ua.VariantType.Double, None, 0.8),
    ("OperatorName", ua.VariantType.String, None, "Erika Mustermann"),
    ("BadgeId", ua.VariantType.String, None, "B-4711"),
    ("ShiftComment", ua.VariantType.String, None, "Werkzeug getauscht"),
    ("ProgramName", ua.VariantType.String, None, "P-100"),
)


def _eu(text: str) -> ua.EUInformation:
    eu = ua.EUInformation()
    eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
    eu.DisplayName = ua.LocalizedText(text)
    eu.Description = ua.LocalizedText(text)
    return eu


def _attr(value: Any, vtype: ua.VariantType) -> AttributeValue:
    return AttributeValue(ua.DataValue(ua.Variant(value, vtype)))


class _Builder:
    """Puts nodes straight into the server's address space: what AddNodes does, without its per-node checks
    and attribute walks, and with the attributes and references that never change (names, types, access
    levels) shared between nodes, so that tens of thousands of nodes take seconds."""

    def __init__(self, server: Server) -> None:
        self.aspace = server.iserver.aspace
        self.count = 0  # objects and variables (properties not counted)
        self._shared: dict[Any, Any] = {}

    def _once(self, key: Any, make: Any) -> Any:
        got = self._shared.get(key)
        if got is None:
            got = self._shared[key] = make()
        return got

    def _ref(self, ref: int, target: ua.NodeId, forward: bool) -> ua.ReferenceDescription:
        def make() -> ua.ReferenceDescription:
            r = ua.ReferenceDescription()
            r.ReferenceTypeId = ua.NodeId(ref)
            r.NodeId = target
            r.IsForward = forward
            return r

        return self._once(("ref", ref, target, forward), make)  # type: ignore[no-any-return]

    def add(
        self,
        parent: ua.NodeId,
        nodeid: ua.NodeId,
        name: ua.QualifiedName,
        ref: int,
        *,
        value: ua.Variant | None = None,
        datatype: int | None = None,
    ) -> None:
        cls = ua.NodeClass.Object if value is None else ua.NodeClass.Variable
        nd = NodeData(nodeid)
        a = nd.attributes
        a[ua.AttributeIds.NodeId] = _attr(nodeid, ua.VariantType.NodeId)
        key = (name.NamespaceIndex, name.Name)
        a[ua.AttributeIds.BrowseName] = self._once(("bn", key), lambda: _attr(name, ua.VariantType.QualifiedName))
        text = self._once(("text", key), lambda: ua.LocalizedText(name.Name))
        a[ua.AttributeIds.DisplayName] = self._once(("dn", key), lambda: _attr(text, ua.VariantType.LocalizedText))
        a[ua.AttributeIds.NodeClass] = self._once(("nc", cls), lambda: _attr(int(cls), ua.VariantType.Int32))
        if value is not None:
            a[ua.AttributeIds.Value] = AttributeValue(ua.DataValue(value))
            a[ua.AttributeIds.DataType] = self._once(
                ("dt", datatype), lambda: _attr(ua.NodeId(datatype), ua.VariantType.NodeId)
            )
            a[ua.AttributeIds.ValueRank] = self._once("rank", lambda: _attr(-1, ua.VariantType.Int32))
            a[ua.AttributeIds.AccessLevel] = self._once("access", lambda: _attr(1, ua.VariantType.Byte))
            a[ua.AttributeIds.UserAccessLevel] = a[ua.AttributeIds.AccessLevel]
            typedef = ObjectIds.PropertyType if ref == ObjectIds.HasProperty else ObjectIds.BaseDataVariableType
        else:
            typedef = ObjectIds.BaseObjectType
        typedef_id = self._once(("type", typedef), lambda: ua.NodeId(typedef))
        self.aspace[nodeid] = nd
        down = ua.ReferenceDescription()
        down.ReferenceTypeId = self._once(("reftype", ref), lambda: ua.NodeId(ref))
        down.NodeId = nodeid
        down.NodeClass = cls
        down.BrowseName = name
        down.DisplayName = text
        down.TypeDefinition = typedef_id
        down.IsForward = True
        self.aspace[parent].references.append(down)
        nd.references.append(self._ref(ref, parent, False))
        nd.references.append(self._ref(ObjectIds.HasTypeDefinition, typedef_id, True))
        if ref != ObjectIds.HasProperty:
            self.count += 1


_DATATYPE = {
    ua.VariantType.Double: ObjectIds.Double,
    ua.VariantType.UInt32: ObjectIds.UInt32,
    ua.VariantType.Int32: ObjectIds.Int32,
    ua.VariantType.String: ObjectIds.String,
}


@dataclass
class PlantServer:
    port: int
    halls: int = 4
    machines_per_hall: int = 10
    signals: tuple[tuple[str, ua.VariantType, str | None, Any], ...] = MACHINE_SIGNALS
    browse_limit: int | None = None
    uri: str = URI
    host: str = "127.0.0.1"
    server: Server | None = None
    ns_index: int = 0
    node_count: int = 0  # objects and variables below Objects (properties not counted)
    continuations: dict[bytes, list[ua.ReferenceDescription]] = field(default_factory=dict)
    browse_next_calls: int = 0

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/"

    def machine(self, hall: int, m: int) -> str:
        return f"H{hall}-M{m:04d}"

    def build(self, server: Server) -> None:
        idx = self.ns_index
        b = _Builder(server)
        nid = lambda text: ua.NodeId(text, idx)  # noqa: E731
        qn = lambda text: ua.QualifiedName(text, idx)  # noqa: E731
        organizes, component, prop = ObjectIds.Organizes, ObjectIds.HasComponent, ObjectIds.HasProperty
        b.add(ua.NodeId(ObjectIds.ObjectsFolder), nid("Plant"), qn("Plant"), organizes)
        for h in range(self.halls):
            hall = f"Hall{h}"
            b.add(nid("Plant"), nid(hall), qn(hall), organizes)
            for m in range(self.machines_per_hall):
                name = self.machine(h, m)
                b.add(nid(hall), nid(name), qn(name), organizes)
                for sig, vtype, unit, value in self.signals:
                    var = nid(f"{name}.{sig}")
                    b.add(nid(name), var, qn(sig), component, value=ua.Variant(value, vtype), datatype=_DATATYPE[vtype])
                    if unit is not None:
                        eu = ua.Variant(_eu(unit))
                        eu_name = ua.QualifiedName("EngineeringUnits", 0)
                        b.add(var, nid(f"{name}.{sig}.EU"), eu_name, prop, value=eu, datatype=ObjectIds.EUInformation)
        self.node_count = b.count

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns_index = await server.register_namespace(self.uri)
        self.build(server)
        _cache_reference_subtypes(server)
        if self.browse_limit is not None:
            self._limit_browse(server)
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    # -- browse results limited by continuation points ---------------------------------------------

    def _limit_browse(self, server: Server) -> None:
        view = server.iserver.view_service
        full_browse = view.browse
        limit = self.browse_limit
        assert limit is not None
        counter = itertools.count(1)

        def browse(params: ua.BrowseParameters) -> list[ua.BrowseResult]:
            results = full_browse(params)
            asked = params.RequestedMaxReferencesPerNode or limit
            for r in results:
                self._cut(r, min(limit, asked), counter)
            return results

        view.browse = browse  # type: ignore[method-assign]
        server.iserver._mdh_plant = self  # type: ignore[attr-defined]
        _serve_browse_next()

    def _cut(self, r: ua.BrowseResult, n: int, counter: itertools.count[int]) -> None:
        if len(r.References) > n:
            point = f"cp-{next(counter)}".encode()
            self.continuations[point] = r.References[n:]
            r.References = r.References[:n]
            r.ContinuationPoint = point

    def browse_next(self, params: ua.BrowseNextParameters) -> list[ua.BrowseResult]:
        self.browse_next_calls += 1
        assert self.browse_limit is not None
        out = []
        counter = itertools.count(len(self.continuations) + 10_000 * self.browse_next_calls)
        for point in params.ContinuationPoints:
            r = ua.BrowseResult()
            rest = self.continuations.pop(point, None)
            if rest is None:
                r.StatusCode = ua.StatusCode(ua.StatusCodes.BadContinuationPointInvalid)
            elif not params.ReleaseContinuationPoints:
                r.References = rest
                self._cut(r, self.browse_limit, counter)
            out.append(r)
        return out


def _cache_reference_subtypes(server: Server) -> None:
    """asyncua's browse walks the reference type tree again for every reference it returns; the tree does
    not change while the server runs, so this server remembers each walk (its answers stay the same)."""
    view = server.iserver.view_service
    walk = view._get_sub_ref
    known: dict[ua.NodeId, frozenset[ua.NodeId]] = {}

    def sub_refs(ref: ua.NodeId) -> frozenset[ua.NodeId]:
        got = known.get(ref)
        if got is None:
            got = known[ref] = frozenset(walk(ref))
        return got

    view._get_sub_ref = sub_refs  # type: ignore[method-assign,assignment]


_PATCHED = False


def _serve_browse_next() -> None:
    """Teach asyncua's server BrowseNext for servers that opted in (others answer as before: unsupported)."""
    global _PATCHED
    if _PATCHED:
        return
    _PATCHED = True
    original = UaProcessor._process_message

    async def process(self: UaProcessor, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> bool:
        plant = getattr(self.iserver, "_mdh_plant", None)
        if plant is not None and typeid == ua.NodeId(ua.ObjectIds.BrowseNextRequest_Encoding_DefaultBinary):
            params = struct_from_binary(ua.BrowseNextParameters, body)
            response = ua.BrowseNextResponse()
            response.Parameters.Results = plant.browse_next(params)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)
            return True
        result: bool = await original(self, typeid, requesthdr, seqhdr, body)
        return result

    UaProcessor._process_message = process  # type: ignore[method-assign]
