"""Prometheus metrics of the API, in the registry given (the hub's, shared with the ingestor) or one of its own.

They are served on the operators' listener (``metalldaten.operators``), never on the API port.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "mdh_api_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mdh_api_request_seconds",
            "Time to the last byte of the response",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.rows = Counter("mdh_api_series_rows", "Series rows sent, by format", ["format"], registry=self.registry)
        self.cells = Counter(
            "mdh_api_benchmark_cells", "Benchmark cells answered, by outcome", ["outcome"], registry=self.registry
        )
        self.excluded = Counter(
            "mdh_api_benchmark_excluded_contributions",
            "Contributions left out of released benchmark cells as implausible, by KPI",
            ["kpi"],
            registry=self.registry,
        )
        self.epsilon = Counter(
            "mdh_api_dp_epsilon_spent", "Differential-privacy epsilon spent by analysts", registry=self.registry
        )
        self.invalid_requests = Counter(
            "mdh_api_invalid_requests",
            "Requests refused before any store saw them, by reason (control_character)",
            ["reason"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "mdh_api_auth_failures", "Requests refused for a missing or invalid token", registry=self.registry
        )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)
