"""Health (``/healthz``) and readiness (``/readyz``).

The Prometheus metrics are not served here, on the API port, but on the operators' listener
(``metalldaten.operators``): they count benchmark outcomes and refusals that members must not see.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from storage import SeriesQuery, StoreError

from ..deps import ContextDep
from ..problems import problem_response, problem_responses
from ..schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Health, responses=problem_responses(503), summary="Store, tokens and audit log usable"
)
def readyz(ctx: ContextDep) -> Health | JSONResponse:
    checks: dict[str, bool] = {}
    try:
        ctx.store.query_series(SeriesQuery(limit=1))
        checks["store"] = True
    except StoreError as exc:
        log.warning("readiness: store not answering: %s", exc)
        checks["store"] = False
    checks["tokens_file"] = ctx.tokens.readable()
    checks["audit_log"] = ctx.audit.writable()
    if not all(checks.values()):
        failed = ", ".join(k for k, ok in checks.items() if not ok)
        return problem_response(503, "not-ready", "Not ready", f"not usable: {failed}", checks=checks)
    return Health(status="ready", checks=checks)
