"""The OPC UA event subscription: events of the configured notifiers become readings by :mod:`.events`.

The select clause asks for the event type, severity, time, source name and ``ActiveState/Id`` only:
message texts, condition names, user ids and every other field are never requested, so they never
reach the gateway. Event types are matched by browse name, read once per type and cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import OpcEvent, OverflowPolicy, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from ...normalise import Normaliser, Reading
from .events import EventFacts, EventNotifier, EventSettings, readings
from .resolve import parse_node, to_ns

log = logging.getLogger(__name__)

#: (event type that defines the field, browse path) of every field selected; nothing else is asked for.
SELECT: tuple[tuple[int, tuple[str, ...]], ...] = (
    (ObjectIds.BaseEventType, ("EventType",)),
    (ObjectIds.BaseEventType, ("Severity",)),
    (ObjectIds.BaseEventType, ("Time",)),
    (ObjectIds.BaseEventType, ("SourceName",)),
    (ObjectIds.AlarmConditionType, ("ActiveState", "Id")),
)


@dataclass(slots=True)
class EventStats:
    notifiers: int = 0  # notifiers subscribed in the current session
    received: int = 0
    mapped: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def event_filter() -> ua.EventFilter:
    f = ua.EventFilter()
    for type_id, path in SELECT:
        op = ua.SimpleAttributeOperand()
        op.TypeDefinitionId = ua.NodeId(ua.Int32(type_id))
        op.BrowsePath = [ua.QualifiedName(name, 0) for name in path]
        op.AttributeId = AttributeIds.Value
        f.SelectClauses.append(op)
    return f


def _field(fields: dict[str, Any], name: str) -> Any:
    v = fields.get(name)
    return v.Value if isinstance(v, ua.Variant) else v


class EventReader:
    """Subscribes to the events of one source's notifiers and turns each into readings."""

    def __init__(
        self,
        cfg: EventSettings,
        stats: EventStats,
        emit: Callable[[list[Reading]], None],
        to_ns: Callable[[Any], int | None],
    ) -> None:
        self.cfg = cfg
        self.stats = stats
        self._emit = emit
        self._to_ns = to_ns
        self._types: dict[ua.NodeId, str] = {}
        self._notifiers: dict[int, EventNotifier] = {}
        #: (asset, local signal) of every reading a mapped event became in this session
        self.series: set[tuple[str, str]] = set()

    async def subscribe(self, client: Client, nodeids: Sequence[ua.NodeId], publishing_ms: float) -> Subscription:
        sub = await client.create_subscription(
            publishing_ms, handler=None, queue_maxsize=10 * self.cfg.queue_size, overflow=OverflowPolicy.WARN
        )
        for notifier, nodeid in zip(self.cfg.notifiers, nodeids, strict=True):
            handle = await sub.subscribe_events(nodeid, ObjectIds.BaseEventType, event_filter(), self.cfg.queue_size)
            self._notifiers[handle] = notifier
        self.stats.notifiers = len(self._notifiers)
        return sub

    async def _type_name(self, client: Client, nodeid: Any) -> str:
        if not isinstance(nodeid, ua.NodeId):
            return ""
        name = self._types.get(nodeid)
        if name is None:
            try:
                name = (await client.get_node(nodeid).read_browse_name()).Name or ""
            except UaError:
                name = ""
            self._types[nodeid] = name
        return name

    async def consume(self, client: Client, sub: Subscription) -> None:
        async for item in sub:
            if not isinstance(item, OpcEvent):
                continue
            self.stats.received += 1
            notifier = self._notifiers.get(getattr(item.event, "server_handle", -1))
            fields = item.event.get_event_props_as_fields_dict()
            active = _field(fields, "ActiveState/Id")
            facts = EventFacts(
                event_type=await self._type_name(client, _field(fields, "EventType")),
                severity=int(_field(fields, "Severity") or 0),
                active=active if isinstance(active, bool) else None,
                time_ns=self._to_ns(_field(fields, "Time")),
                source=_field(fields, "SourceName"),
            )
            out = readings(self.cfg, notifier, facts, time.time_ns()) if notifier else "unassigned"
            if isinstance(out, str):
                self.stats.dropped[out] += 1
                continue
            self.stats.mapped += 1
            self.series.update((r.asset, r.signal) for r in out)
            self._emit(out)


class EventTarget(Protocol):
    name: str
    normaliser: Normaliser

    def emit_readings(self, readings: list[Reading]) -> None: ...


async def subscribe_events(
    client: Client, cfg: EventSettings, source: EventTarget, stats: EventStats, tg: asyncio.TaskGroup
) -> None:
    """Subscribe to the events of ``cfg.notifiers`` and consume them in a task of ``tg``."""
    namespaces = await client.get_namespace_array()
    nodeids = [parse_node(n.node, namespaces) for n in cfg.notifiers]
    reader = EventReader(cfg, stats, source.emit_readings, to_ns)
    sub = await reader.subscribe(client, nodeids, cfg.publishing_interval_ms)
    tg.create_task(reader.consume(client, sub))
    tg.create_task(_confirm(reader, source.normaliser))
    log.info("opcua %s: subscribed to the events of %d notifier(s)", source.name, len(nodeids))


async def _confirm(reader: EventReader, normaliser: Normaliser, interval_s: float = 1.0) -> None:
    """Events report changes only: while the subscription lives (the session's watchdog ends it when the server
    goes away), the last state and reason an event set are still current, so the heartbeat may repeat them."""
    while True:
        await asyncio.sleep(interval_s)
        now = time.time_ns()
        for asset, local in reader.series:
            normaliser.confirm(asset, local, now)
