"""OPC UA source (asyncua client): subscriptions or polling, resolved again at every (re)connect.

Built against what goes wrong with OPC UA clients in practice (stale node handles after a server
restart, namespace indexes that change, subscriptions of thousands of nodes that fail, naive
timestamps, sessions that are not restored): nodes are addressed by namespace URI (``nsu=``) or by browse path
and resolved after every connect, so a restarted server with reordered namespaces is handled;
monitored items are created in batches; source and server timestamps are kept timezone-aware;
a lost session is detected through the client's supervisor and the whole session is rebuilt
with capped, jittered back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from core.backoff import Backoff
from wire.model import Sample

from ...errors import SourceError
from ...normalise import Normaliser, Reading
from ..base import Sink
from .backfill import BackfillStats, Gap, historised, plan, read_gaps
from .config import OpcuaGroup, OpcuaNode, OpcuaSource
from .events import EventSettings
from .eventsub import EventReader, EventStats
from .security import apply_security

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_OBJECTS = ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder))
_HIERARCHICAL = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))


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
        el.ReferenceTypeId = _HIERARCHICAL
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


class OpcuaSourceRunner:
    """Runs one configured OPC UA server connection until cancelled."""

    kind = "opcua"

    def __init__(self, cfg: OpcuaSource, normaliser: Normaliser, sink: Sink, *, pki_dir: Any = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.normaliser = normaliser
        self._sink = sink
        self.pki_dir = pki_dir
        self.connected = False
        self.reconnects = 0
        self.readings_in = 0
        self.unresolved = 0
        self.last_error: str | None = None
        self.backfill = BackfillStats()
        self.events = EventStats()
        self._sessions = 0

    # -- resolution ----------------------------------------------------------------------------

    async def resolve(self, client: Client) -> list[Binding]:
        namespaces = await client.get_namespace_array()
        bindings: list[Binding] = []
        by_path: list[OpcuaNode] = []
        missing = 0
        for n in self.cfg.nodes:
            if n.node is not None:
                try:
                    nodeid = parse_node(n.node, namespaces)
                except SourceError:
                    missing += 1
                    continue
                bindings.append(Binding(n.asset, n.signal, nodeid, self.cfg.group(n.group)))
            else:
                by_path.append(n)
        for i in range(0, len(by_path), self.cfg.batch_size):
            part = by_path[i : i + self.cfg.batch_size]
            requests = []
            usable = []
            for n in part:
                assert n.path_nsu is not None and n.path is not None
                if n.path_nsu not in namespaces:
                    missing += 1
                    continue
                bp = ua.BrowsePath()
                bp.StartingNode = _OBJECTS
                bp.RelativePath = browse_path(n.path, namespaces.index(n.path_nsu))
                requests.append(bp)
                usable.append(n)
            if not requests:
                continue
            results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
            for n, res in zip(usable, results, strict=True):
                if res.StatusCode.is_good() and res.Targets:
                    nodeid = res.Targets[0].TargetId
                    bindings.append(
                        Binding(
                            n.asset,
                            n.signal,
                            ua.NodeId(nodeid.Identifier, nodeid.NamespaceIndex),
                            self.cfg.group(n.group),
                        )
                    )
                else:
                    missing += 1
        self.unresolved = missing
        if missing:
            log.warning(
                "opcua %s: %d of %d configured nodes not found on the server", self.name, missing, len(self.cfg.nodes)
            )
        return bindings

    # -- one reading ---------------------------------------------------------------------------

    def _emit(self, b: Binding, dv: ua.DataValue, recv_ns: int, out: list[Sample]) -> None:
        self.readings_in += 1
        value = dv.Value.Value if dv.Value is not None else None
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        r = Reading(b.asset, b.signal, value, recv_ns, to_ns(dv.SourceTimestamp), to_ns(dv.ServerTimestamp), status)
        s = self.normaliser.normalise(r)
        if not isinstance(s, str):
            out.append(s)

    # -- session -------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.cfg.backoff_min_s, self.cfg.backoff_max_s)
        while True:
            try:
                await self._session(backoff)
            except (OSError, TimeoutError, ConnectionError, UaError, SourceError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("opcua %s: session ended (%s); retrying", self.name, type(exc).__name__)
            except ExceptionGroup as eg:
                self.last_error = f"{type(eg.exceptions[0]).__name__}: {eg.exceptions[0]}"
                log.warning("opcua %s: session ended (%s); retrying", self.name, type(eg.exceptions[0]).__name__)
            except Exception as exc:  # an unattended gateway keeps trying; the error is visible in health
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("opcua %s: unexpected error; retrying", self.name)
            finally:
                self.connected = False
            await asyncio.sleep(backoff.next())

    async def _session(self, backoff: Backoff) -> None:
        client = Client(self.cfg.url, timeout=self.cfg.timeout_s, watchdog_intervall=1.0)
        client.application_uri = "urn:metalldaten:gateway"
        await apply_security(client, self.cfg, self.pki_dir)
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        try:
            bindings = await self.resolve(client)
            if self._sessions:
                self.reconnects += 1
            self._sessions += 1
            subs: list[Subscription] = []
            # with backfill, live changes queue in the subscriptions until the gap has been read from history
            live = asyncio.Event()
            if not self.cfg.backfill.enabled:
                live.set()
            async with asyncio.TaskGroup() as tg:
                groups: dict[str, list[Binding]] = {}
                for b in bindings:
                    groups.setdefault(b.group.name, []).append(b)
                for items in groups.values():
                    g = items[0].group
                    if g.mode == "poll":
                        tg.create_task(self._poll(client, g, items, live))
                    else:
                        sub = await self._subscribe(client, g, items)
                        subs.append(sub)
                        tg.create_task(self._consume(sub, {i + 1: b for i, b in enumerate(items)}, live))
                self.connected = True
                self.last_error = None
                backoff.reset()
                log.info("opcua %s: connected, %d nodes in %d groups", self.name, len(bindings), len(groups))
                if not live.is_set():
                    await self._backfill(client, bindings)
                    live.set()
                if self.cfg.events is not None:
                    await self._subscribe_events(client, self.cfg.events, tg)
                await lost.wait()
                raise ConnectionError("connection to the OPC UA server lost")
        finally:
            self.connected = False
            self.events.notifiers = 0
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.disconnect()

    async def _subscribe(self, client: Client, g: OpcuaGroup, items: list[Binding]) -> Subscription:
        sub = await client.create_subscription(
            g.publishing_interval_ms,
            handler=None,
            queue_maxsize=max(100_000, 4 * len(items)),
            overflow=OverflowPolicy.WARN,
        )
        mfilter: ua.DataChangeFilter | None = None
        if g.deadband_abs is not None or g.deadband_pct is not None:
            mfilter = ua.DataChangeFilter()
            mfilter.Trigger = ua.DataChangeTrigger.StatusValue
            mfilter.DeadbandType = 1 if g.deadband_abs is not None else 2
            mfilter.DeadbandValue = float(g.deadband_abs if g.deadband_abs is not None else g.deadband_pct or 0)
        failed = 0
        for start in range(0, len(items), self.cfg.batch_size):
            requests = []
            for handle, b in enumerate(items[start : start + self.cfg.batch_size], start=start + 1):
                rv = ua.ReadValueId()
                rv.NodeId = b.nodeid
                rv.AttributeId = AttributeIds.Value
                params = ua.MonitoringParameters()
                params.ClientHandle = handle
                params.SamplingInterval = g.sampling_interval_ms
                params.QueueSize = g.queue_size
                params.DiscardOldest = True
                if mfilter is not None:
                    params.Filter = mfilter
                req = ua.MonitoredItemCreateRequest()
                req.ItemToMonitor = rv
                req.MonitoringMode = ua.MonitoringMode.Reporting
                req.RequestedParameters = params
                requests.append(req)
            results = await sub.create_monitored_items(requests)
            failed += sum(1 for r in results if isinstance(r, ua.StatusCode))
        if failed:
            log.warning("opcua %s: %d monitored items were refused by the server", self.name, failed)
        return sub

    async def _backfill(self, client: Client, bindings: list[Binding]) -> None:
        """Read the gap of every historised series from the server's history (see :mod:`.backfill`)."""
        cfg, stats = self.cfg.backfill, self.backfill
        end = datetime.now(UTC)  # after the subscriptions exist: what changes from now on, they deliver
        flags = await historised(client, [b.nodeid for b in bindings], self.cfg.batch_size)
        stats.historised = sum(flags)
        marks = [
            (b, b.nodeid, self.normaliser.watermark(b.asset, b.signal))
            for b, f in zip(bindings, flags, strict=True)
            if f
        ]
        gaps = plan(marks, end, cfg, stats)
        if not gaps:
            return
        before = stats.samples

        def deliver(gap: Gap, values: list[ua.DataValue]) -> None:
            out: list[Sample] = []
            accepted = self.normaliser.accepted
            recv = time.time_ns()
            for dv in values:
                self._emit(gap.key, dv, recv, out)
            stats.samples += self.normaliser.accepted - accepted
            if out:
                self._sink(out)

        await read_gaps(client, gaps, cfg, stats, deliver)
        log.info(
            "opcua %s: backfilled %d values of %d series from history", self.name, stats.samples - before, len(gaps)
        )

    async def _subscribe_events(self, client: Client, cfg: EventSettings, tg: asyncio.TaskGroup) -> None:
        namespaces = await client.get_namespace_array()
        nodeids = [parse_node(n.node, namespaces) for n in cfg.notifiers]
        reader = EventReader(cfg, self.events, self._emit_readings, to_ns)
        sub = await reader.subscribe(
            client, nodeids, min((g.publishing_interval_ms for g in self.cfg.groups), default=500)
        )
        tg.create_task(reader.consume(client, sub))
        log.info("opcua %s: subscribed to the events of %d notifier(s)", self.name, len(nodeids))

    def _emit_readings(self, readings: list[Reading]) -> None:
        out: list[Sample] = []
        for r in readings:
            self.readings_in += 1
            s = self.normaliser.normalise(r)
            if not isinstance(s, str):
                out.append(s)
        if out:
            self._sink(out)

    async def _consume(self, sub: Subscription, handles: dict[int, Binding], live: asyncio.Event) -> None:
        out: list[Sample] = []
        await live.wait()
        async for ev in sub:
            if not isinstance(ev, DataChangeEvent):
                continue
            b = handles.get(ev.data.monitored_item.ClientHandle)
            if b is None or ev.data.monitored_item.Value is None:
                continue
            self._emit(b, ev.data.monitored_item.Value, time.time_ns(), out)
            if out:
                self._sink(out)
                out = []

    async def _poll(self, client: Client, g: OpcuaGroup, items: list[Binding], live: asyncio.Event) -> None:
        last: dict[int, tuple[Any, int | None, int]] = {}
        await live.wait()
        while True:
            started = time.monotonic()
            out: list[Sample] = []
            for start in range(0, len(items), self.cfg.batch_size):
                part = items[start : start + self.cfg.batch_size]
                values = await client.uaclient.read_attributes([b.nodeid for b in part], AttributeIds.Value)
                recv = time.time_ns()
                for i, (b, dv) in enumerate(zip(part, values, strict=True), start=start):
                    key = (
                        dv.Value.Value if dv.Value is not None else None,
                        to_ns(dv.SourceTimestamp),
                        dv.StatusCode.value if dv.StatusCode is not None else 0,
                    )
                    if last.get(i) == key:
                        continue
                    last[i] = key
                    self._emit(b, dv, recv, out)
            if out:
                self._sink(out)
            await asyncio.sleep(max(0.0, g.poll_interval_s - (time.monotonic() - started)))
