"""Assembling the analytics API: :func:`create_app` wires settings, store and register into routers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from core.auditlog import AuditLog
from core.register import Register
from storage import InfluxStore, Store
from storage.influx.rollup_reader import RollupCacheCollector

from ..audit import AuditMiddleware
from ..cell_key import CellKey
from ..core.dp import BudgetLedger
from ..settings import ApiSettings
from ..tokens import TokenStore
from . import problems
from .context import AppContext
from .dashboard import router as dashboard_router
from .metrics import ApiMetrics, MetricsMiddleware
from .query_guard import reject_control_characters
from .routes import benchmarks, catalog, health, kpis, series, sovereignty, tokens
from .schemas import Problem

DESCRIPTION = """\
Pooled, pseudonymised machine data of the Metall+Daten cluster: series for analysts, KPIs per asset, and
benchmarks under disclosure control. Authenticate with `Authorization: Bearer <token>`. Errors are RFC 9457
problem details (`application/problem+json`).
"""


log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def tune_interpreter(settings: ApiSettings) -> None:
    """Set the process's thread switch interval (``[api] switch_interval_ms``); for the process that serves the
    API, before it serves (it is process-wide, so :func:`create_app` leaves it to the caller)."""
    seconds = settings.switch_interval_ms / 1000
    if sys.getswitchinterval() != seconds:
        log.info(
            "thread switch interval %.2f ms (was %.2f)", settings.switch_interval_ms, sys.getswitchinterval() * 1000
        )
        sys.setswitchinterval(seconds)


def create_app(
    settings: ApiSettings,
    store: Store,
    register_provider: Callable[[], Register],
    *,
    clock: Callable[[], datetime] = _now,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The API application. ``register_provider`` is called per request, so register edits apply at once.

    The API's metrics go into ``registry`` (or one of the app's own); the app does not serve them itself.
    """
    metrics = ApiMetrics(registry)
    if isinstance(store, InfluxStore) and store.rollups.reader.cache.enabled:
        metrics.registry.register(RollupCacheCollector(store.rollups.reader.cache))
    ctx = AppContext(
        settings=settings,
        store=store,
        register_provider=register_provider,
        clock=clock,
        tokens=TokenStore(settings.tokens_file),
        audit=AuditLog(settings.audit_log),
        metrics=metrics,
        ledger=BudgetLedger(settings.dp.budget_file, settings.dp.budget_per_analyst),
        cell_key=CellKey(settings.cell_key_file),
    )
    app = FastAPI(
        title="Metall+Daten analytics API",
        version="1.0.0",
        description=DESCRIPTION,
        dependencies=[Depends(reject_control_characters)],
    )
    app.state.ctx = ctx
    problems.install(app)
    for module in (series, kpis, benchmarks, catalog, sovereignty, tokens, health):
        app.include_router(module.router)
    app.include_router(dashboard_router)
    app.add_middleware(AuditMiddleware, audit=ctx.audit)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    _add_problem_schema(app)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    """Put the Problem model into the OpenAPI components the problem responses refer to."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for path in schema.get("paths", {}).values():
            for op in path.values():
                responses = op.get("responses", {})
                if "422" in responses:  # FastAPI's default validation response is not what we send
                    responses["422"] = {
                        "description": "Unprocessable Content",
                        "content": {problems.PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
