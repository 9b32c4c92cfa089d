"""Metrics of what only the OPC UA source does: backfill from history, events, the decoder of its PublishResponses
(collected at scrape time)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .events import EVENT_DROP_REASONS
from .source import OpcuaSourceRunner


def opcua_metrics(sources: Iterable[object]) -> Iterator[Any]:
    """Metric families of every OPC UA source among ``sources`` (others are skipped)."""
    filled = CounterMetricFamily(
        "mdh_gateway_backfill_samples", "Values read from the server's history and sent", labels=["source"]
    )
    requests = CounterMetricFamily("mdh_gateway_backfill_requests", "HistoryRead requests", labels=["source"])
    gaps = CounterMetricFamily("mdh_gateway_backfill_gaps", "Series gaps read from history", labels=["source"])
    cut = CounterMetricFamily(
        "mdh_gateway_backfill_gaps_cut", "Gaps longer than max_gap_s (read only that far back)", labels=["source"]
    )
    failed = CounterMetricFamily(
        "mdh_gateway_backfill_failed",
        "History reads the server refused (per node, or a whole request)",
        labels=["source"],
    )
    hist = GaugeMetricFamily(
        "mdh_gateway_backfill_historised_nodes", "Configured nodes the server historises", labels=["source"]
    )
    notifiers = GaugeMetricFamily(
        "mdh_gateway_event_notifiers", "Event notifiers subscribed in the current session", labels=["source"]
    )
    events = CounterMetricFamily("mdh_gateway_events", "OPC UA events received", labels=["source"])
    mapped = CounterMetricFamily(
        "mdh_gateway_events_mapped", "Events mapped to a machine state or downtime reason", labels=["source"]
    )
    ev_dropped = CounterMetricFamily(
        "mdh_gateway_events_dropped", "Events that became no reading, by reason", labels=["source", "reason"]
    )
    publish = CounterMetricFamily(
        "mdh_gateway_opcua_publish_responses",
        "PublishResponses by decoder (fast: scalar data changes read straight from the bytes; generic: asyncua's)",
        labels=["source", "decoder"],
    )
    for s in sources:
        if not isinstance(s, OpcuaSourceRunner):
            continue
        for decoder in ("fast", "generic"):
            publish.add_metric([s.name, decoder], s.publish_responses.get(decoder, 0))
        b = s.backfill
        filled.add_metric([s.name], b.samples)
        requests.add_metric([s.name], b.requests)
        gaps.add_metric([s.name], b.gaps)
        cut.add_metric([s.name], b.gaps_cut)
        failed.add_metric([s.name], b.failed)
        hist.add_metric([s.name], b.historised)
        e = s.events
        notifiers.add_metric([s.name], e.notifiers)
        events.add_metric([s.name], e.received)
        mapped.add_metric([s.name], e.mapped)
        for reason in EVENT_DROP_REASONS:
            ev_dropped.add_metric([s.name, reason], e.dropped.get(reason, 0))
    yield from (filled, requests, gaps, cut, failed, hist, notifiers, events, mapped, ev_dropped, publish)
