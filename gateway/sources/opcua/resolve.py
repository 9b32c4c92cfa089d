"""Configured nodes -> node ids the server uses *now*, checked to exist; resolved again at every connect.

Nodes are addressed by namespace URI (``nsu=URI;s=Name``) or by browse path below ``Objects``: namespace
indexes change when a server restarts with other namespaces registered first. A ``nsu=`` id only says
which node is meant; whether the server has it is asked (one batched read of the NodeClass attribute), so
a node that does not exist is reported as missing, never counted as resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from ...errors import SourceError
from .config import OpcuaGroup, OpcuaNode, OpcuaSource

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
OBJECTS = ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder))
HIERARCHICAL = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))


def to_ns(dt: datetime | None) -> int | None:
    """A tz-aware (or naive UTC) datetime -> ns since the epoch; ``None`` for missing/min timestamps."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if dt.year < 1971:
        return None
    return ((dt - _EPOCH) // _US) * 1000


def parse_node(text: str, namespaces: Sequence[str]) -> ua.NodeId:
    """``nsu=URI;s=Name`` (or ``ns=0;...``) -> NodeId with the index the server uses *now*."""
    if text.startswith("ns=0;"):
        return ua.NodeId.from_string(text)
    head, sep, ident = text.partition(";")
    uri = head[4:]
    if not sep or not head.startswith("nsu="):
        raise SourceError("node id is not of the form nsu=URI;<i|s|g|b>=...", retryable=False)
    try:
        idx = namespaces.index(uri)
    except ValueError:
        raise SourceError("a configured namespace URI is not (yet) on the server") from None
    return ua.NodeId.from_string(f"ns={idx};{ident}")


def browse_path(path: str, ns_index: int) -> ua.RelativePath:
    rp = ua.RelativePath()
    for seg in [s for s in path.split("/") if s]:
        el = ua.RelativePathElement()
        el.ReferenceTypeId = HIERARCHICAL
        el.IsInverse = False  # type: ignore[assignment]
        el.IncludeSubtypes = True  # type: ignore[assignment]
        el.TargetName = ua.QualifiedName(seg, ns_index)
        rp.Elements.append(el)
    return rp


@dataclass(slots=True)
class Binding:
    asset: str
    signal: str
    nodeid: ua.NodeId
    group: OpcuaGroup


@dataclass(slots=True)
class Resolution:
    bindings: list[Binding] = field(default_factory=list)
    #: Configured node (its ``node`` or ``path`` text) -> why it is missing.
    missing: dict[str, str] = field(default_factory=dict)


def _label(n: OpcuaNode) -> str:
    return n.node if n.node is not None else f"{n.path_nsu}:{n.path}"


async def resolve(client: Client, cfg: OpcuaSource) -> Resolution:
    """Resolve every configured node of ``cfg`` on the connected ``client``, in batches of ``cfg.batch_size``."""
    namespaces = await client.get_namespace_array()
    out = Resolution()
    by_id: list[tuple[str, Binding]] = []
    by_path: list[OpcuaNode] = []
    for n in cfg.nodes:
        if n.node is None:
            by_path.append(n)
            continue
        try:
            nodeid = parse_node(n.node, namespaces)
        except SourceError as exc:
            out.missing[n.node] = str(exc)
            continue
        by_id.append((n.node, Binding(n.asset, n.signal, nodeid, cfg.group(n.group))))
    for i in range(0, len(by_id), cfg.batch_size):
        part = by_id[i : i + cfg.batch_size]
        values = await client.uaclient.read_attributes([b.nodeid for _, b in part], AttributeIds.NodeClass)
        for (label, b), dv in zip(part, values, strict=True):
            if dv.StatusCode is None or dv.StatusCode.is_good():
                out.bindings.append(b)
            else:
                out.missing[label] = dv.StatusCode.name
    for i in range(0, len(by_path), cfg.batch_size):
        requests = []
        usable = []
        for n in by_path[i : i + cfg.batch_size]:
            assert n.path_nsu is not None and n.path is not None
            if n.path_nsu not in namespaces:
                out.missing[_label(n)] = "the namespace URI is not on the server"
                continue
            bp = ua.BrowsePath()
            bp.StartingNode = OBJECTS
            bp.RelativePath = browse_path(n.path, namespaces.index(n.path_nsu))
            requests.append(bp)
            usable.append(n)
        if not requests:
            continue
        results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
        for n, res in zip(usable, results, strict=True):
            if res.StatusCode.is_good() and res.Targets:
                t = res.Targets[0].TargetId
                out.bindings.append(
                    Binding(n.asset, n.signal, ua.NodeId(t.Identifier, t.NamespaceIndex), cfg.group(n.group))
                )
            else:
                out.missing[_label(n)] = res.StatusCode.name
    return out
