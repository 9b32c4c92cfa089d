"""The monitored items of one OPC UA subscription group: the create requests and what the source keeps per
subscription (client handle -> binding, server item ids, freshness, held changes)."""

from __future__ import annotations

from asyncua import ua
from asyncua.common.subscription import Subscription
from asyncua.ua.attribute_ids import AttributeIds

from ...normalise_batch import HandleRoutes
from .config import OpcuaGroup
from .fastdecode import Change
from .freshness import Freshness
from .resolve import Binding

__all__ = ["Monitored", "data_change_filter", "item_request"]


class Monitored:
    """One subscription of a group: client handle -> binding, and client handle -> server's item id."""

    def __init__(self, sub: Subscription, group: OpcuaGroup) -> None:
        self.sub = sub
        self.group = group
        self.handles: dict[int, Binding] = {}
        self.server_ids: dict[int, int] = {}
        self.freshness = Freshness()
        #: what the normaliser prepared per client handle (see :func:`~gateway.normalise_batch.normalise_changes`)
        self.routes = HandleRoutes()
        #: data changes that arrived before the source went live (held while a backfill reads the gap)
        self.held: list[list[Change]] = []
        #: True once the held changes have been emitted: from then on changes are emitted as they arrive
        self.open = False


def item_request(b: Binding, handle: int, mfilter: ua.DataChangeFilter | None) -> ua.MonitoredItemCreateRequest:
    """The request that monitors the Value of ``b`` under client ``handle``, with its group's sampling and queue."""
    g = b.group
    rv = ua.ReadValueId()
    rv.NodeId = b.nodeid
    rv.AttributeId = AttributeIds.Value
    params = ua.MonitoringParameters()
    params.ClientHandle = handle
    params.SamplingInterval = g.sampling_interval_ms
    params.QueueSize = g.effective_queue_size()
    params.DiscardOldest = True
    if mfilter is not None:
        params.Filter = mfilter
    req = ua.MonitoredItemCreateRequest()
    req.ItemToMonitor = rv
    req.MonitoringMode = ua.MonitoringMode.Reporting
    req.RequestedParameters = params
    return req


def data_change_filter(g: OpcuaGroup) -> ua.DataChangeFilter | None:
    """The group's trigger and deadband as a filter; ``None`` for the server's default (status and value)."""
    deadband = g.deadband_abs is not None or g.deadband_pct is not None
    if not deadband and g.trigger == "status_value":
        return None
    mfilter = ua.DataChangeFilter()
    mfilter.Trigger = (
        ua.DataChangeTrigger.StatusValueTimestamp
        if g.trigger == "status_value_timestamp"
        else ua.DataChangeTrigger.StatusValue
    )
    if deadband:
        mfilter.DeadbandType = 1 if g.deadband_abs is not None else 2
        mfilter.DeadbandValue = float(g.deadband_abs if g.deadband_abs is not None else g.deadband_pct or 0)
    return mfilter
