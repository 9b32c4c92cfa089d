"""Browse an OPC UA server's address space below ``Objects``: batched, bounded, continuation points followed.

Breadth first, one Browse request per ``batch`` nodes (not one per node: 100,000 nodes are about a hundred
requests, not a hundred thousand), hierarchical references forward, objects and variables only. A server
that limits the references per node answers with continuation points; they are followed with BrowseNext,
also batched, and released when the walk stops early. The walk stops at ``max_depth`` levels and at
``max_nodes`` nodes (and says so). Namespace 0 (the server's own objects) is skipped. Data types and the
``EngineeringUnits`` properties are then read in batches of ``batch`` too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds

log = logging.getLogger(__name__)

_OBJECTS = ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder))
_HIERARCHICAL = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))
_HAS_PROPERTY = ua.NodeId(ua.Int32(ObjectIds.HasProperty))
_MASK = int(ua.NodeClass.Object) | int(ua.NodeClass.Variable)


@dataclass(slots=True)
class FoundNode:
    """One object or variable, addressed by namespace URI and browse path below ``Objects``."""

    node_id: str  # "nsu=URI;s=..." (or i=, g=, b=)
    ns_uri: str
    path: tuple[str, ...]  # browse names from below Objects to the node
    path_ns: tuple[int, ...]  # namespace index of each browse name
    is_variable: bool
    nid: ua.NodeId  # the node id with the server's current namespace index
    data_type: str | None = None
    unit: str | None = None  # EngineeringUnits display name
    parent: int | None = None  # index of the enclosing object in Walk.nodes (the machine of a variable)


@dataclass(slots=True)
class Walk:
    namespaces: list[str]
    nodes: list[FoundNode] = field(default_factory=list)
    truncated: str | None = None  # why the walk stopped early
    requests: int = 0

    def path_nsu(self, n: FoundNode) -> str | None:
        """The one namespace URI of all browse names in the path, or ``None`` if they mix namespaces."""
        indexes = set(n.path_ns)
        if len(indexes) != 1:
            return None
        idx = indexes.pop()
        return self.namespaces[idx] if idx < len(self.namespaces) else None


def _node_text(nodeid: ua.NodeId, namespaces: Sequence[str]) -> str:
    text: str = nodeid.to_string()
    ident = text.split(";", 1)[1] if text.startswith("ns=") else text
    return f"nsu={namespaces[nodeid.NamespaceIndex]};{ident}"


class Browser:
    def __init__(self, client: Client, *, batch: int = 1000, max_depth: int = 12, max_nodes: int = 200_000) -> None:
        self.client = client
        self.batch = batch
        self.max_depth = max_depth
        self.max_nodes = max_nodes

    async def _browse(self, nodes: list[ua.NodeId], walk: Walk) -> list[list[ua.ReferenceDescription]]:
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = 0  # the server's limit; continuation points do the rest
        for nid in nodes:
            d = ua.BrowseDescription()
            d.NodeId = nid
            d.BrowseDirection = ua.BrowseDirection.Forward
            d.ReferenceTypeId = _HIERARCHICAL
            d.IncludeSubtypes = True
            d.NodeClassMask = _MASK
            d.ResultMask = int(ua.BrowseResultMask.All)
            params.NodesToBrowse.append(d)
        results = await self.client.uaclient.browse(params)
        walk.requests += 1
        refs = [list(r.References or []) if r.StatusCode.is_good() else [] for r in results]
        pending = {i: r.ContinuationPoint for i, r in enumerate(results) if r.ContinuationPoint}
        while pending:
            order = list(pending)[: self.batch]
            nxt = ua.BrowseNextParameters()
            nxt.ReleaseContinuationPoints = False
            nxt.ContinuationPoints = [pending[i] for i in order]
            more = await self.client.uaclient.browse_next(nxt)
            walk.requests += 1
            for i, r in zip(order, more, strict=True):
                del pending[i]
                if r.StatusCode.is_good():
                    refs[i] += list(r.References or [])
                    if r.ContinuationPoint:
                        pending[i] = r.ContinuationPoint
        return refs

    async def walk(self) -> Walk:
        namespaces = list(await self.client.get_namespace_array())
        walk = Walk(namespaces=namespaces)
        seen: set[ua.NodeId] = {_OBJECTS}
        # (node id, index in walk.nodes or None for Objects, is a variable)
        frontier: list[tuple[ua.NodeId, int | None, bool]] = [(_OBJECTS, None, False)]
        unit_props: list[tuple[int, ua.NodeId]] = []
        depth = 0
        while frontier:
            if depth >= self.max_depth:
                if any(not is_var for _, _, is_var in frontier):
                    walk.truncated = f"stopped at the maximum depth of {self.max_depth} levels"
                break
            nxt: list[tuple[ua.NodeId, int | None, bool]] = []
            for start in range(0, len(frontier), self.batch):
                part = frontier[start : start + self.batch]
                results = await self._browse([nid for nid, _, _ in part], walk)
                for (_, parent, parent_is_var), refs in zip(part, results, strict=True):
                    for ref in refs:
                        nid = ref.NodeId
                        if nid.NamespaceIndex == 0 or nid in seen:
                            continue
                        seen.add(nid)
                        name = ref.BrowseName.Name or ""
                        if ref.ReferenceTypeId == _HAS_PROPERTY:
                            if parent is not None and parent_is_var and name == "EngineeringUnits":
                                unit_props.append((parent, nid))
                            continue  # properties describe nodes; they are not signals
                        if len(walk.nodes) >= self.max_nodes:
                            walk.truncated = f"stopped at the maximum of {self.max_nodes} nodes"
                            break
                        base = walk.nodes[parent] if parent is not None else None
                        is_var = ref.NodeClass == ua.NodeClass.Variable
                        walk.nodes.append(
                            FoundNode(
                                node_id=_node_text(nid, namespaces),
                                ns_uri=namespaces[nid.NamespaceIndex],
                                path=(*(base.path if base else ()), name),
                                path_ns=(*(base.path_ns if base else ()), ref.BrowseName.NamespaceIndex),
                                is_variable=is_var,
                                nid=nid,
                                parent=base.parent if base is not None and base.is_variable else parent,
                            )
                        )
                        nxt.append((nid, len(walk.nodes) - 1, is_var))
                    if walk.truncated:
                        break
                if walk.truncated:
                    break
            if walk.truncated:
                break
            frontier = nxt
            depth += 1
        await self._read_types(walk, unit_props)
        return walk

    async def _read_types(self, walk: Walk, unit_props: list[tuple[int, ua.NodeId]]) -> None:
        variables = [i for i, n in enumerate(walk.nodes) if n.is_variable]
        for start in range(0, len(variables), self.batch):
            part = variables[start : start + self.batch]
            values = await self.client.uaclient.read_attributes(
                [walk.nodes[i].nid for i in part], AttributeIds.DataType
            )
            walk.requests += 1
            for i, dv in zip(part, values, strict=True):
                dt = dv.Value.Value if dv.Value is not None else None
                if isinstance(dt, ua.NodeId):
                    ident = dt.Identifier
                    builtin = dt.NamespaceIndex == 0 and isinstance(ident, int)  # a built-in type, else a structure
                    walk.nodes[i].data_type = ObjectIdNames.get(int(ident)) if builtin else "Structure"
        for start in range(0, len(unit_props), self.batch):
            uparts = unit_props[start : start + self.batch]
            values = await self.client.uaclient.read_attributes([nid for _, nid in uparts], AttributeIds.Value)
            walk.requests += 1
            for (i, _), dv in zip(uparts, values, strict=True):
                eu = dv.Value.Value if dv.Value is not None else None
                text = getattr(getattr(eu, "DisplayName", None), "Text", None)
                if text:
                    walk.nodes[i].unit = str(text)
