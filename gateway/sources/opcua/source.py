"""OPC UA source (asyncua client): subscriptions or polling, resolved again at every (re)connect.

Built against what goes wrong with OPC UA clients in practice (stale node handles after a server
restart, namespace indexes that change, subscriptions of thousands of nodes that fail, naive
timestamps, sessions that are not restored, monitored items that silently stop delivering): nodes
are addressed by namespace URI (``nsu=``) or by browse path and resolved after every connect
(:mod:`.resolve`), so a restarted server with reordered namespaces is handled; monitored items are
created in batches with queues sized from the sampling and publishing intervals; every
subscription is audited by a periodic read (:mod:`.freshness`) and items that stalled are recreated;
source and server timestamps are kept timezone-aware; a lost session is detected through the
client's supervisor and the whole session is rebuilt with capped, jittered back-off.

Missing nodes, refused items, stalled items and overflowing queues are counted in
:attr:`OpcuaSourceRunner.problems` (metrics, health, one rate-limited log line each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any, ClassVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

from core.backoff import Backoff
from core.ratelog import RateLimitedLog
from wire.model import Sample

from ...errors import SourceError
from ...normalise import Normaliser, Reading
from ...normalise_batch import normalise_changes
from ..base import Sink
from ..problems import SourceProblems
from .backfill import BackfillStats, backfill
from .config import OpcuaGroup, OpcuaSource
from .eventsub import EventStats, subscribe_events
from .fastdecode import Change
from .fastpath import FastPublishRoute, change_of
from .items import Monitored, data_change_filter, item_request
from .quiet import quiet_asyncua_on_lost_connections
from .resolve import Binding, resolve, to_ns
from .security import apply_security

log = logging.getLogger(__name__)

#: StatusCode info bits "DataValue" + "Overflow": the server's queue for this item overflowed (Part 4, 7.39).
OVERFLOW_BITS = 0x0000_0480
#: Statuses of a read that mean the server refuses the node (it vanished, or may not be read).
_REFUSED = {
    StatusCodes.BadNodeIdUnknown,
    StatusCodes.BadNodeIdInvalid,
    StatusCodes.BadNotReadable,
    StatusCodes.BadUserAccessDenied,
    StatusCodes.BadAttributeIdInvalid,
}


class OpcuaSourceRunner:
    """Runs one configured OPC UA server connection until cancelled."""

    kind = "opcua"

    def __init__(self, cfg: OpcuaSource, normaliser: Normaliser, sink: Sink, *, pki_dir: Any = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.normaliser = normaliser
        # audit reads confirm unchanged subscribed values (polls confirm theirs on every read); without the audit
        # the heartbeat falls back to repeating while connected
        normaliser.require_confirmation = cfg.audit_interval_s > 0
        self._sink = sink
        self.pki_dir = pki_dir
        self.connected = False
        self.reconnects = 0
        self.attempts = 0  # sessions tried, failed ones included
        self.readings_in = 0
        self.unresolved = 0
        self.recreated = 0
        self.last_error: str | None = None
        self.problems = SourceProblems(f"opcua {cfg.name}", log)
        normaliser.on_future = self.problems.future
        self._session_log = RateLimitedLog(log, interval_s=60.0)
        self._refused: dict[str, int] = {}  # per group: items or polled nodes the server refuses
        self._stalled: dict[str, int] = {}  # per subscription group: items found stalled at the last audit
        self.backfill = BackfillStats()
        self.events = EventStats()
        self._sessions = 0
        #: PublishResponses decoded by the fast path ("fast") and by asyncua ("generic"), over all sessions
        self.publish_responses: Counter[str] = Counter()
        quiet_asyncua_on_lost_connections()

    # -- resolution ----------------------------------------------------------------------------

    async def resolve(self, client: Client) -> list[Binding]:
        res = await resolve(client, self.cfg)
        self.unresolved = len(res.missing)
        example = next(iter(res.missing.items()), None)
        detail = f"e.g. {example[0]}: {example[1]}" if example else ""
        self.problems.set_nodes("missing", len(res.missing), detail)
        return res.bindings

    _DETAIL: ClassVar[dict[str, str]] = {
        "refused": "monitored items or polled nodes the server refuses",
        "stalled": "items recreated",
    }

    def _count(self, state: str, per_group: dict[str, int], group: str, n: int) -> None:
        per_group[group] = n
        self.problems.set_nodes(state, sum(per_group.values()), self._DETAIL[state])

    # -- one reading ---------------------------------------------------------------------------

    def _emit(self, b: Binding, dv: ua.DataValue, recv_ns: int, out: list[Sample]) -> None:
        value = dv.Value.Value if dv.Value is not None else None
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        self._reading(b, value, status, to_ns(dv.SourceTimestamp), to_ns(dv.ServerTimestamp), recv_ns, out)

    def _reading(
        self,
        b: Binding,
        value: Any,
        status: int,
        source_ns: int | None,
        server_ns: int | None,
        recv_ns: int,
        out: list[Sample],
    ) -> None:
        """One value of ``b``, from a read or the history: overflow bits, then normalisation."""
        self.readings_in += 1
        s = self.normaliser.normalise_value(b.asset, b.signal, value, self._status_of(status), source_ns, recv_ns)
        if not isinstance(s, str):
            out.append(s)

    def _status_of(self, status: int) -> int:
        """The status to normalise a value by: after a server's queue overflowed (both info bits set), counted, and
        without the info bits (they say values were lost before this one, not that this one is bad)."""
        if status & OVERFLOW_BITS != OVERFLOW_BITS:
            return status
        self.problems.event("overflow", detail="the server's queue of a monitored item overflowed")
        return status & ~0xFFFF

    # -- session -------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.cfg.backoff_min_s, self.cfg.backoff_max_s)
        while True:
            try:
                await self._session(backoff)
            except (OSError, TimeoutError, ConnectionError, UaError, SourceError) as exc:
                self._ended(exc)
            except ExceptionGroup as eg:
                self._ended(eg.exceptions[0])
            except Exception as exc:  # an unattended gateway keeps trying; the error is visible in health
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("opcua %s: unexpected error; retrying", self.name)
            finally:
                self.connected = False
            await asyncio.sleep(backoff.next())

    def _ended(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if error != self.last_error:  # one line per kind of failure, not one per retry
            self._session_log.warning(type(exc).__name__, "opcua %s: session ended (%s); retrying", self.name, error)
        self.last_error = error

    async def _session(self, backoff: Backoff) -> None:
        self.attempts += 1
        client = Client(self.cfg.url, timeout=self.cfg.timeout_s, watchdog_intervall=self.cfg.watchdog_s)
        client.application_uri = "urn:metalldaten:gateway"
        await apply_security(client, self.cfg, self.pki_dir)
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        route = FastPublishRoute(client, self.publish_responses)
        await client.connect()
        try:
            bindings = await self.resolve(client)
            if self._sessions:
                self.reconnects += 1
            self._sessions += 1
            # with backfill, live changes queue in the subscriptions until the gap has been read from history
            live = asyncio.Event()
            if not self.cfg.backfill.enabled:
                live.set()
            async with asyncio.TaskGroup() as tg:
                groups: dict[str, list[Binding]] = {}
                for b in bindings:
                    groups.setdefault(b.group.name, []).append(b)
                self._refused.clear()
                self._stalled.clear()
                for items in groups.values():
                    g = items[0].group
                    if g.mode == "poll":
                        tg.create_task(self._poll(client, g, items, live))
                    else:
                        mon = await self._subscribe(client, route, g, items, live)
                        self._count("refused", self._refused, g.name, len(items) - len(mon.handles))
                        tg.create_task(self._consume(mon, live))
                        if self.cfg.audit_interval_s:
                            tg.create_task(self._audit(client, mon, live))
                self._count("stalled", self._stalled, "", 0)
                self.connected = True
                if self.last_error is not None:
                    log.info("opcua %s: connected again", self.name)
                self.last_error = None
                backoff.reset()
                log.info("opcua %s: connected, %d nodes in %d groups", self.name, len(bindings), len(groups))
                if not live.is_set():
                    await backfill(client, bindings, self, self.cfg.backfill, self.backfill)
                    live.set()
                if self.cfg.events is not None:
                    await subscribe_events(client, self.cfg.events, self, self.events, tg)
                await lost.wait()
                raise ConnectionError("connection to the OPC UA server lost")
        finally:
            self.connected = False
            self.events.notifiers = 0
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.disconnect()

    async def _create(self, mon: Monitored, items: dict[int, Binding]) -> int:
        """Create monitored items for ``items`` (client handle -> binding) in batches; the number refused."""
        mfilter = data_change_filter(mon.group)
        handles = list(items)
        failed = 0
        for start in range(0, len(handles), self.cfg.batch_size):
            part = handles[start : start + self.cfg.batch_size]
            results = await mon.sub.create_monitored_items([item_request(items[h], h, mfilter) for h in part])
            for h, r in zip(part, results, strict=True):
                if isinstance(r, ua.StatusCode):
                    failed += 1
                    mon.handles.pop(h, None)
                else:
                    mon.handles[h] = items[h]
                    mon.server_ids[h] = r
        return failed

    async def _subscribe(
        self, client: Client, route: FastPublishRoute, g: OpcuaGroup, items: list[Binding], live: asyncio.Event
    ) -> Monitored:
        sub = await client.create_subscription(
            g.publishing_interval_ms,
            handler=None,
            queue_maxsize=max(100_000, 4 * len(items)),
            overflow=OverflowPolicy.WARN,
        )
        mon = Monitored(sub, g)

        def on_changes(changes: list[Change]) -> None:
            if mon.open:
                self._emit_changes(mon, changes)
            else:
                mon.held.append(changes)

        # Data changes go from the response bytes to normalisation (in order, one sink call per response),
        # routed before any item exists so that none takes the generic way.
        route.route(sub, on_changes)
        await self._create(mon, {i + 1: b for i, b in enumerate(items)})
        return mon

    def _emit_changes(self, mon: Monitored, changes: list[Change]) -> None:
        """One PublishResponse's data changes: freshness, then each reading (the server timestamp unused); one sink
        call. It runs ten thousand times a second at full load: both steps take the whole list in one loop
        (:meth:`Freshness.arrived_all`, :func:`~gateway.normalise_batch.normalise_changes`)."""
        recv_ns = time.time_ns()
        handles = mon.handles
        mon.freshness.arrived_all(handles, changes)
        n, out = normalise_changes(self.normaliser, mon.routes, handles, changes, recv_ns, self._status_of)
        self.readings_in += n
        if out:
            self._sink(out)

    def emit_readings(self, readings: list[Reading]) -> None:
        """Normalise readings that are no data values (mapped events) and deliver what passes."""
        out: list[Sample] = []
        for r in readings:
            self.readings_in += 1
            s = self.normaliser.normalise(r)
            if not isinstance(s, str):
                out.append(s)
        if out:
            self._sink(out)

    def emit_values(self, b: Binding, values: list[ua.DataValue]) -> int:
        """Normalise data values of ``b`` read from history and deliver what passes; the number sent."""
        out: list[Sample] = []
        recv = time.time_ns()
        for dv in values:
            self._emit(b, dv, recv, out)
        if out:
            self._sink(out)
        return len(out)

    async def _consume(self, mon: Monitored, live: asyncio.Event) -> None:
        """Once live: the data changes held back, in order; then keep asyncua's queue of other notifications
        (status changes) drained. Data changes of a routed subscription never enter that queue."""
        await live.wait()
        held, mon.held = mon.held, []
        for changes in held:  # synchronous: nothing arrives in between, so the order holds
            self._emit_changes(mon, changes)
        mon.open = True
        async for ev in mon.sub:
            if isinstance(ev, DataChangeEvent):  # not routed (cannot happen): still delivered, never lost
                self._emit_changes(mon, [change_of(ev.data.monitored_item)])

    async def _audit(self, client: Client, mon: Monitored, live: asyncio.Event) -> None:
        """Every ``audit_interval_s``: read the subscribed nodes that did not deliver since the last audit, confirm
        what is current, repair what stalled (see :mod:`.freshness`)."""
        await live.wait()  # after a backfill: a value read now must not overtake the gap
        while True:
            await asyncio.sleep(self.cfg.audit_interval_s)
            handles = [h for h in mon.handles if not mon.freshness.delivered(h)]
            stalled: dict[int, Binding] = {}
            out: list[Sample] = []
            for start in range(0, len(handles), self.cfg.batch_size):
                part = [(h, mon.handles[h]) for h in handles[start : start + self.cfg.batch_size] if h in mon.handles]
                values = await client.uaclient.read_attributes([b.nodeid for _, b in part], AttributeIds.Value)
                recv = time.time_ns()
                for (h, b), dv in zip(part, values, strict=True):
                    verdict = mon.freshness.audit(h, to_ns(dv.SourceTimestamp))
                    if verdict == "fresh":
                        self.normaliser.confirm(b.asset, b.signal, recv)
                    elif verdict == "stalled":
                        stalled[h] = b
                        self._emit(b, dv, recv, out)  # the value the server has, which never arrived
            if out:
                self._sink(out)
            self._count("stalled", self._stalled, mon.group.name, len(stalled))
            if stalled:
                self.problems.event("stalled", len(stalled), "monitored items recreated")
                await self._recreate(mon, stalled)

    async def _recreate(self, mon: Monitored, items: dict[int, Binding]) -> None:
        ids = [mon.server_ids.pop(h) for h in items if h in mon.server_ids]
        with contextlib.suppress(UaError):
            await mon.sub.unsubscribe(ids)
        for h in items:
            mon.handles.pop(h, None)
            mon.freshness.forget(h)
        failed = await self._create(mon, items)
        self.recreated += len(items) - failed
        if failed:
            self.problems.event("refused", failed, "recreated monitored items refused")

    async def _poll(self, client: Client, g: OpcuaGroup, items: list[Binding], live: asyncio.Event) -> None:
        last: dict[int, tuple[Any, int | None, int]] = {}
        refused: set[int] = set()
        await live.wait()
        while True:
            started = time.monotonic()
            out: list[Sample] = []
            for start in range(0, len(items), self.cfg.batch_size):
                part = items[start : start + self.cfg.batch_size]
                values = await client.uaclient.read_attributes([b.nodeid for b in part], AttributeIds.Value)
                recv = time.time_ns()
                for i, (b, dv) in enumerate(zip(part, values, strict=True), start=start):
                    status = dv.StatusCode.value if dv.StatusCode is not None else 0
                    if status in _REFUSED:
                        if i not in refused:
                            refused.add(i)
                            self.problems.event("refused", detail="a polled node is refused by the server")
                    else:
                        refused.discard(i)
                    key = (dv.Value.Value if dv.Value is not None else None, to_ns(dv.SourceTimestamp), status)
                    if last.get(i) == key:
                        self.normaliser.confirm(b.asset, b.signal, recv)
                        continue
                    last[i] = key
                    self._emit(b, dv, recv, out)
            self._count("refused", self._refused, g.name, len(refused))
            if out:
                self._sink(out)
            await asyncio.sleep(max(0.0, g.poll_interval_s - (time.monotonic() - started)))
