"""Prometheus metrics of one ingestor, registered in a registry the caller passes (several can share a process).

The counters are the ingestor's only count of what it did: its health answer and attributes read them here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class LateRecomputes(Collector):
    """``mdh_rollup_late_recomputes_total{how}``: the store's count of assets refreshed with late samples, by how
    (``window``: the hours they change; ``full``: up to the present), read from the store at every scrape."""

    def __init__(self, counts: Callable[[], Mapping[str, int]], *, instance: str) -> None:
        self._counts = counts
        self._instance = instance

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "mdh_rollup_late_recomputes",
            "Assets whose rollups were recomputed for late samples, by how: window (only the hours they change) or "
            "full (from the late hour up to now: the batch was not in memory, or the window could not be bounded)",
            labels=["instance", "how"],
        )
        counts = self._counts()
        for how in ("window", "full"):
            family.add_metric([self._instance, how], counts.get(how, 0))
        yield family


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry, *, instance: str) -> None:
        labels = {"instance": instance}
        self.messages = Counter(
            "mdh_ingest_messages",
            "MQTT messages handled, by result (stored, dead_letter, status)",
            ["instance", "result"],
            registry=registry,
        )
        self.samples = Counter("mdh_ingest_samples", "Samples written to the store", ["instance"], registry=registry)
        self.dead_letters = Counter(
            "mdh_ingest_dead_letters",
            "Messages refused into the dead letters, by reason code",
            ["instance", "code"],
            registry=registry,
        )
        self.refused = Counter(
            "mdh_ingest_refused",
            "Messages refused, by reason (the dead-letter code: schema, invalid, member_mismatch, retained, ...); "
            "a refused message whose dead letter could not be written is redelivered and counted again",
            ["instance", "reason"],
            registry=registry,
        )
        self.store_errors = Counter(
            "mdh_ingest_store_errors",
            "Failed store writes, by kind (unavailable, rejected)",
            ["instance", "kind"],
            registry=registry,
        )
        self.write_seconds = Histogram(
            "mdh_ingest_store_write_seconds",
            "Duration of successful store writes",
            ["instance"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.pending = Gauge(
            "mdh_ingest_pending_messages",
            "Messages received but not yet acknowledged",
            ["instance"],
            registry=registry,
        )
        self.connected = Gauge(
            "mdh_ingest_broker_connected", "1 while connected to the broker", ["instance"], registry=registry
        )
        self.store_up = Gauge(
            "mdh_ingest_store_up", "0 while store writes fail and are being retried", ["instance"], registry=registry
        )
        self.gateways_online = Gauge(
            "mdh_ingest_gateways_online", "Gateways whose last status was online", ["instance"], registry=registry
        )
        self.gateway_last_seen = Gauge(
            "mdh_ingest_gateway_last_seen_timestamp_seconds",
            "When a gateway was last heard of",
            ["instance", "member", "gateway"],
            registry=registry,
        )
        self.gateway_clock_ahead = Gauge(
            "mdh_ingest_gateway_clock_ahead_seconds",
            "How far a gateway's clock ran ahead of the hub's when it sealed its last batch (a lower bound; negative: "
            "transit and buffering)",
            ["instance", "member", "gateway"],
            registry=registry,
        )
        self._instance = instance
        self.store_up.labels(**labels).set(1)
        self.connected.labels(**labels).set(0)

    @property
    def instance(self) -> str:
        """The ``instance`` label of this ingestor's series."""
        return self._instance

    def _values(self, counter: Counter, label: str | None = None) -> dict[str, int]:
        """This instance's totals of ``counter``, by ``label`` (or under ``""`` without one)."""
        out: dict[str, int] = {}
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("instance") == self._instance:
                    key = sample.labels[label] if label else ""
                    out[key] = out.get(key, 0) + int(sample.value)
        return out

    def samples_stored(self) -> int:
        return self._values(self.samples).get("", 0)

    def dead_lettered(self) -> int:
        return sum(self._values(self.dead_letters, "code").values())

    def refusals(self) -> dict[str, int]:
        return self._values(self.refused, "reason")

    def inc_messages(self, result: str, n: int = 1) -> None:
        self.messages.labels(self._instance, result).inc(n)

    def inc_refused(self, reason: str) -> None:
        self.refused.labels(self._instance, reason).inc()

    def inc_dead(self, code: str) -> None:
        self.dead_letters.labels(self._instance, code).inc()
        self.inc_messages("dead_letter")

    def inc_samples(self, n: int) -> None:
        self.samples.labels(self._instance).inc(n)

    def store_error(self, kind: str) -> None:
        self.store_errors.labels(self._instance, kind).inc()

    def observe_write(self, seconds: float) -> None:
        self.write_seconds.labels(self._instance).observe(seconds)

    def set_pending(self, n: int) -> None:
        self.pending.labels(self._instance).set(n)

    def set_connected(self, up: bool) -> None:
        self.connected.labels(self._instance).set(1 if up else 0)

    def set_store_up(self, up: bool) -> None:
        self.store_up.labels(self._instance).set(1 if up else 0)

    def set_gateways(self, online: int) -> None:
        self.gateways_online.labels(self._instance).set(online)

    def gateway_seen(self, member: str, gateway: str, ts_s: float) -> None:
        self.gateway_last_seen.labels(self._instance, member, gateway).set(ts_s)

    def forget_gateways(self, gone: list[tuple[str, str]]) -> None:
        """Remove the per-gateway series of ``gone`` (a suspended or removed member's gateways): its pseudonyms do
        not stay in the metrics."""
        for member, gateway in gone:
            for gauge in (self.gateway_last_seen, self.gateway_clock_ahead):
                with contextlib.suppress(KeyError):
                    gauge.remove(self._instance, member, gateway)

    def gateway_clock(self, member: str, gateway: str, ahead_s: float | None) -> None:
        if ahead_s is not None:
            self.gateway_clock_ahead.labels(self._instance, member, gateway).set(ahead_s)
