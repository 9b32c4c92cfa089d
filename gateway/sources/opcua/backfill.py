"""Backfill: after an outage, read the gap from the server's history (HistoryRead raw) and merge it by watermark.

When the server was unreachable or the gateway was stopped, the changes of that time are lost to a
subscription: it starts with the current value. Servers that historise a node keep them. On every
(re)connect, for each node whose ``Historizing`` attribute is true and whose series has a watermark
(the newest source timestamp the gateway sent, kept in the disk buffer across restarts), the gateway
reads the raw history from the watermark to the time of the connect, oldest first:

* in requests of at most ``nodes_per_request`` nodes and ``values_per_request`` values per node,
  following continuation points (and a full page without one, as some servers truncate silently),
  at most ``max_requests_per_s`` requests a second, so a long gap does not load the server;
* never further back than ``max_gap_s`` (a longer gap is cut, counted and logged once);
* while the new subscriptions already queue live changes, which are let through only after the
  backfill; every value goes through the normaliser, whose watermark drops what was already sent,
  so an overlap between history and live stream (or a history re-read) is never sent twice.

Counted per source: values backfilled, history requests, gaps read and cut, nodes whose history read
failed (a metric each, see ``docs/gateway.md``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from ...normalise import Normaliser
from ..problems import SourceProblems
from .config import BackfillSettings
from .resolve import Binding

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class BackfillStats:
    samples: int = 0  # values from history accepted by the normaliser (sent)
    requests: int = 0
    gaps: int = 0  # series whose gap was read
    gaps_cut: int = 0  # gaps longer than max_gap_s
    failed: int = 0  # nodes whose history read the server refused
    historised: int = 0  # nodes the server historises (last connect)


@dataclass(slots=True)
class Gap:
    """One series to backfill: ``key`` identifies it to the caller; the range is [start, end]."""

    key: Any
    nodeid: ua.NodeId
    start: datetime
    end: datetime


class BackfillTarget(Protocol):
    """What the backfill needs of its source: the series' watermarks and a way to send values."""

    name: str
    normaliser: Normaliser
    problems: SourceProblems

    def emit_values(self, b: Binding, values: list[ua.DataValue]) -> int: ...


async def backfill(
    client: Client, bindings: Sequence[Binding], source: BackfillTarget, cfg: BackfillSettings, stats: BackfillStats
) -> None:
    """Read the gap of every historised series of ``bindings`` and send it through ``source``."""
    end = datetime.now(UTC)  # called after the subscriptions exist: what changes from now on, they deliver
    flags = await historised(client, [b.nodeid for b in bindings], cfg.nodes_per_request)
    stats.historised = sum(flags)
    marks = [
        (b, b.nodeid, source.normaliser.watermark(b.asset, b.signal)) for b, f in zip(bindings, flags, strict=True) if f
    ]
    gaps = plan(marks, end, cfg, stats)
    if not gaps:
        return
    before = stats.samples

    def deliver(gap: Gap, values: list[ua.DataValue]) -> None:
        stats.samples += source.emit_values(gap.key, values)

    failed = stats.failed
    try:
        await read_gaps(client, gaps, cfg, stats, deliver)
    except UaError as exc:  # the server refuses the service itself: go live without the rest of the gap
        stats.failed += 1
        log.debug("opcua %s: HistoryRead refused: %s", source.name, exc)
    if stats.failed > failed:  # a metric, degraded health for a while, one rate-limited line
        source.problems.event("refused", stats.failed - failed, "history reads refused: those gaps stay gaps")
    log.info("opcua %s: backfilled %d values of %d series from history", source.name, stats.samples - before, len(gaps))


def from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


async def historised(client: Client, nodeids: Sequence[ua.NodeId], batch: int) -> list[bool]:
    """Whether the server historises each node (its ``Historizing`` attribute), read in batches."""
    out: list[bool] = []
    for i in range(0, len(nodeids), batch):
        values = await client.uaclient.read_attributes(list(nodeids[i : i + batch]), AttributeIds.Historizing)
        out += [
            bool((dv.StatusCode is None or dv.StatusCode.is_good()) and dv.Value is not None and dv.Value.Value is True)
            for dv in values
        ]
    return out


def plan(
    marks: Sequence[tuple[Any, ua.NodeId, int | None]], now: datetime, cfg: BackfillSettings, stats: BackfillStats
) -> list[Gap]:
    """The gaps to read: one per series with a watermark older than ``now``, cut to ``max_gap_s``."""
    earliest = now - timedelta(seconds=cfg.max_gap_s)
    gaps: list[Gap] = []
    cut = 0
    for key, nodeid, mark in marks:
        if mark is None:
            continue  # never sent: nothing is known of when it stopped
        start = from_ns(mark)
        if start >= now:
            continue
        if start < earliest:
            start, cut = earliest, cut + 1
        gaps.append(Gap(key, nodeid, start, now))
    if cut:
        stats.gaps_cut += cut
        log.warning("backfill: %d gaps longer than max_gap_s = %g s were cut", cut, cfg.max_gap_s)
    stats.gaps += len(gaps)
    return sorted(gaps, key=lambda g: g.start)


class _Pacer:
    def __init__(self, per_s: float) -> None:
        self._interval = 1.0 / per_s
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


def _details(start: datetime, end: datetime, values: int) -> ua.ReadRawModifiedDetails:
    d = ua.ReadRawModifiedDetails()
    d.IsReadModified = False
    d.StartTime = start
    d.EndTime = end
    d.NumValuesPerNode = ua.UInt32(values)
    d.ReturnBounds = False
    return d


async def read_gaps(
    client: Client,
    gaps: Sequence[Gap],
    cfg: BackfillSettings,
    stats: BackfillStats,
    deliver: Callable[[Gap, list[ua.DataValue]], Awaitable[None] | None],
) -> None:
    """Read every gap, oldest first per series, calling ``deliver`` with each page of values."""
    pacer = _Pacer(cfg.max_requests_per_s)
    for i in range(0, len(gaps), cfg.nodes_per_request):
        # one request covers its nodes from the earliest start; what a node already sent is dropped by its watermark
        pending: dict[int, tuple[Gap, datetime, bytes | None]] = {
            j: (g, g.start, None) for j, g in enumerate(gaps[i : i + cfg.nodes_per_request])
        }
        while pending:
            await pacer.wait()
            # continuation points carry their own position; the rest go together when they start at the same time
            fresh = [s for _, (_, s, cp) in pending.items() if cp is None]
            start = min(fresh) if fresh else min(s for _, (_, s, _) in pending.items())
            batch = [(j, p) for j, p in pending.items() if p[2] is not None or p[1] == start]
            params = ua.HistoryReadParameters()
            params.HistoryReadDetails = _details(start, max(g.end for _, (g, _, _) in batch), cfg.values_per_request)
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.ReleaseContinuationPoints = False
            for _, (g, _, cp) in batch:
                rv = ua.HistoryReadValueId()
                rv.NodeId = g.nodeid
                rv.ContinuationPoint = cp
                params.NodesToRead.append(rv)
            results = await client.uaclient.history_read(params)
            stats.requests += 1
            for (j, (g, s, _)), res in zip(batch, results, strict=True):
                del pending[j]
                if not res.StatusCode.is_good():
                    stats.failed += 1
                    continue
                values = list(getattr(res.HistoryData, "DataValues", None) or [])
                if values:
                    done = deliver(g, values)
                    if done is not None:
                        await done
                if res.ContinuationPoint:
                    pending[j] = (g, s, res.ContinuationPoint)
                elif len(values) >= cfg.values_per_request:  # a full page without a continuation point
                    last = values[-1].SourceTimestamp
                    if last is not None and last.replace(tzinfo=last.tzinfo or UTC) > s:
                        pending[j] = (g, last.replace(tzinfo=last.tzinfo or UTC), None)
