"""Operations: Prometheus metrics and a health endpoint, so that a gateway that silently stopped
(a lost connection, a source that no longer delivers) shows up on the operator's dashboard.

Metrics are collected at scrape time from the gateway's own counters (nothing is counted twice in
the hot path), in a registry per gateway so that several gateways can run in one process.

``GET /health`` answers 200 with ``{"status": "ok", ...}`` when the uplink and every source are
connected and no source has an active problem, else 503 with ``"degraded"``, the ``reasons`` and the
details; ``GET /metrics`` is the Prometheus text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .buffer import DiskBuffer
from .normalise import DROP_REASONS
from .sources.base import SourceView
from .sources.opcua.metrics import opcua_metrics
from .sources.problems import INPUT_EVENTS, NODE_STATES
from .uplink import Uplink

log = logging.getLogger(__name__)


class GatewayView(Protocol):
    """What health and metrics read of a running gateway (:class:`gateway.runner.Gateway`)."""

    @property
    def gateway_pseudonym(self) -> str: ...

    @property
    def sources(self) -> Sequence[SourceView]: ...

    @property
    def buffer(self) -> DiskBuffer: ...

    @property
    def uplink(self) -> Uplink: ...

    @property
    def reloads(self) -> Mapping[str, int]: ...

    @property
    def reload_error(self) -> str | None: ...


class GatewayCollector(Collector):
    def __init__(self, gateway: GatewayView) -> None:
        self.gw = gateway

    def collect(self) -> Iterator[Any]:
        gw = self.gw
        readings = CounterMetricFamily("mdh_gateway_readings", "Raw readings received per source", labels=["source"])
        out = CounterMetricFamily("mdh_gateway_samples", "Samples accepted by the policy per source", labels=["source"])
        dropped = CounterMetricFamily(
            "mdh_gateway_samples_dropped", "Readings dropped per source and reason", labels=["source", "reason"]
        )
        up = GaugeMetricFamily(
            "mdh_gateway_source_connected", "1 if the source is connected", labels=["source", "kind"]
        )
        rec = CounterMetricFamily("mdh_gateway_source_reconnects", "Reconnects per source", labels=["source"])
        nodes = GaugeMetricFamily(
            "mdh_gateway_source_nodes_unavailable",
            "Configured nodes now missing on the server, refused by it, or stalled",
            labels=["source", "reason"],
        )
        inputs = CounterMetricFamily(
            "mdh_gateway_source_input_problems",
            "Inputs that were malformed, lost to a queue overflow, stalled or refused",
            labels=["source", "reason"],
        )
        healthy = GaugeMetricFamily(
            "mdh_gateway_source_healthy", "1 if the source is connected and has no active problem", labels=["source"]
        )
        for s in gw.sources:
            for state in NODE_STATES:
                nodes.add_metric([s.name, state], s.problems.nodes.get(state, 0))
            for kind in INPUT_EVENTS:
                inputs.add_metric([s.name, kind], s.problems.events.get(kind, 0))
            healthy.add_metric([s.name], 1.0 if s.connected and not s.problems.active() else 0.0)
            readings.add_metric([s.name], s.readings_in)
            out.add_metric([s.name], s.normaliser.accepted)
            for reason in DROP_REASONS:
                dropped.add_metric([s.name, reason], s.normaliser.dropped.get(reason, 0))
            up.add_metric([s.name, s.kind], 1.0 if s.connected else 0.0)
            rec.add_metric([s.name], s.reconnects)
        yield from (readings, out, dropped, up, rec, nodes, inputs, healthy)
        yield from opcua_metrics(gw.sources)
        reloads = CounterMetricFamily(
            "mdh_gateway_reloads",
            "Configuration reloads by result (refused: the running one continues)",
            labels=["result"],
        )
        for result in ("ok", "refused"):
            reloads.add_metric([result], gw.reloads.get(result, 0))
        yield reloads
        b = gw.buffer
        yield GaugeMetricFamily("mdh_gateway_buffer_samples", "Samples in the disk buffer", value=b.depth_samples)
        yield GaugeMetricFamily("mdh_gateway_buffer_bytes", "Bytes in the disk buffer", value=b.depth_bytes)
        oldest = b.oldest_ns()
        age = 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
        yield GaugeMetricFamily("mdh_gateway_buffer_oldest_age_seconds", "Age of the oldest buffered chunk", value=age)
        bd = CounterMetricFamily(
            "mdh_gateway_buffer_dropped", "Samples dropped by the overflow policy", labels=["reason"]
        )
        bd.add_metric(["overflow"], b.dropped.get("overflow", 0))
        yield bd
        u = gw.uplink
        yield GaugeMetricFamily(
            "mdh_gateway_uplink_connected", "1 if connected to the hub", value=1.0 if u.connected else 0.0
        )
        yield CounterMetricFamily(
            "mdh_gateway_uplink_reconnects", "Reconnects to the hub", value=u.session.reconnects if u.session else 0
        )
        yield CounterMetricFamily("mdh_gateway_uplink_batches", "Batches published", value=u.batches_sent)
        yield CounterMetricFamily(
            "mdh_gateway_uplink_batches_refused",
            "Batches the hub broker refused (kept buffered)",
            value=u.batches_refused,
        )
        yield CounterMetricFamily(
            "mdh_gateway_uplink_samples_acked", "Samples acknowledged by the hub broker", value=u.samples_acked
        )
        yield GaugeMetricFamily("mdh_gateway_uplink_inflight", "Batches awaiting PUBACK", value=u.inflight)


def health(gw: GatewayView) -> tuple[bool, dict[str, Any]]:
    """``ok`` only if the uplink and every source are connected and no source has an active problem
    (missing, refused or stalled nodes; malformed or overflowing input within the last minutes)."""
    sources: dict[str, dict[str, Any]] = {}
    reasons: list[str] = [] if gw.uplink.connected else ["uplink: not connected"]
    for s in gw.sources:
        problems = s.problems.active()
        sources[s.name] = {"kind": s.kind, "connected": s.connected, "reconnects": s.reconnects, "problems": problems}
        if not s.connected:
            reasons.append(f"source {s.name}: not connected")
        reasons += [f"source {s.name}: {text}" for text in problems.values()]
    if gw.reload_error is not None:
        reasons.append(f"reload refused, the running configuration continues: {gw.reload_error}")
    ok = not reasons
    oldest = gw.buffer.oldest_ns()
    return ok, {
        "status": "ok" if ok else "degraded",
        "reasons": reasons,
        "gateway": gw.gateway_pseudonym,
        "uplink": {"connected": gw.uplink.connected, "inflight": gw.uplink.inflight},
        "sources": sources,
        "buffer": {
            "samples": gw.buffer.depth_samples,
            "bytes": gw.buffer.depth_bytes,
            "oldest_age_s": None if oldest is None else round((time.time_ns() - oldest) / 1e9, 3),
            "dropped": gw.buffer.dropped.get("overflow", 0),
        },
    }


class HealthServer:
    """A minimal HTTP/1.1 server for ``/health`` and ``/metrics`` (no framework on a small box)."""

    def __init__(self, gw: GatewayView, host: str, port: int) -> None:
        self.gw = gw
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gw))
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HealthServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%d/", self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else "/"
            if path == "/metrics":
                body, ctype, code = generate_latest(self.registry), "text/plain; version=0.0.4", 200
            elif path in ("/health", "/healthz", "/"):
                ok, doc = health(self.gw)
                body, ctype, code = json.dumps(doc).encode(), "application/json", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
