"""The operators' listener of a hub process: Prometheus metrics and health, on an address of their own.

Metrics tell more than the API may: how many benchmark cells were suppressed and why, which
gateways were last heard of when, how many messages each refusal reason got. So they are not
served on the API port (which members and analysts reach) but on a second listener, by default
on the loopback interface (``metrics_listen = "127.0.0.1:9464"``), for the operators' Prometheus
and nobody else. It needs no token: who can reach the address is the access control, so bind it
to loopback or to an internal network only.

``GET /metrics``: the metrics of every role the process runs (the API's ``mdh_api_*`` and the
ingestor's ``mdh_ingest_*``), from one registry. ``GET /healthz``: 200 with the roles' state when
every role is healthy, else 503 with the same document.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

#: Returns (healthy, document) for ``/healthz``.
HealthProvider = Callable[[], tuple[bool, dict[str, Any]]]


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"`` or ``"localhost:9464"`` as (host, port); raise ``ValueError``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, like 127.0.0.1:9464 (got {value!r})")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is over 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # raises ValueError with the reason
    elif any(c.isspace() or c in "/[]@" for c in host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operators_app(registry: CollectorRegistry, health: HealthProvider) -> Starlette:
    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_request: Request) -> Response:
        ok, doc = health()
        # 503 only for what the hub itself cannot do; members' refused input degrades it with the reasons (in
        # ``doc``) but answers 200, so that a member sending garbage cannot take the hub out of service
        status = "ok" if ok and not doc.get("reasons") else "degraded"
        return JSONResponse({"status": status, **doc}, status_code=200 if ok else 503)

    async def not_found(_request: Request, _exc: Exception) -> Response:
        return PlainTextResponse("not found: this listener serves /metrics and /healthz\n", status_code=404)

    return Starlette(
        routes=[Route("/metrics", metrics, methods=["GET"]), Route("/healthz", healthz, methods=["GET"])],
        exception_handlers={404: not_found},
    )
