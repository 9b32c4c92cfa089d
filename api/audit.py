"""The audit log: one JSON line per analyst or admin request (who, when, endpoint, parameters, rows).

Series and KPI answers also record how many of their rows were each member's
(``members``: pseudonym -> rows) and the analyst token's ``purpose``; a member token
reads the entries that included its rows through ``GET /v1/access-log``.

The line is written when the response has been sent completely, so ``rows`` is
what the client actually received. Tokens never appear: only the token id.
Routes record the rows they return with :func:`record_rows`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import polars as pl
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.auditlog import AuditLog

from .tokens import Principal

log = logging.getLogger(__name__)

AUDITED_ROLES = frozenset({"analyst", "admin"})


def record_rows(request: Request, rows: int) -> None:
    request.state.rows = rows


def record_member_rows(request: Request, frame: pl.DataFrame) -> None:
    """Record how many of the answer's rows are each member's (``frame`` has a ``member`` column), so that a
    member can see which analyst queries read its rows (``GET /v1/access-log``)."""
    if frame.height == 0 or "member" not in frame.columns:
        request.state.members = {}
        return
    counts = frame.group_by("member").len()
    request.state.members = dict(zip(counts["member"].to_list(), counts["len"].to_list(), strict=True))


def record_body(request: Request, body: dict[str, Any]) -> None:
    """Add the (secret-free) fields of a request body to the audited parameters."""
    request.state.body = body


def set_principal(request: Request, principal: Principal) -> None:
    request.state.principal = principal


def _params(scope: Scope) -> dict[str, Any]:
    from urllib.parse import parse_qsl

    out: dict[str, Any] = {}
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if key == "cursor":
            value = "(cursor)" if value else value
        prev = out.get(key)
        out[key] = value if prev is None else [*(prev if isinstance(prev, list) else [prev]), value]
    return out


class AuditMiddleware:
    """Pure ASGI middleware writing an audit line after each analyst or admin response."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        done = False

        async def wrapped(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True

        try:
            await self.app(scope, receive, wrapped)
        finally:
            state = scope.get("state") or {}
            principal = state.get("principal")
            if isinstance(principal, Principal) and principal.role in AUDITED_ROLES:
                entry = {
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "token_id": principal.token_id,
                    "role": principal.role,
                    "method": scope.get("method"),
                    "endpoint": scope.get("path"),
                    "params": _params(scope) | ({"body": state["body"]} if "body" in state else {}),
                    "status": status,
                    "rows": state.get("rows"),
                    "purpose": principal.purpose,
                    **({"members": state["members"]} if "members" in state else {}),
                    "complete": done,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                }
                try:
                    self.audit.write(entry)
                except OSError:
                    log.exception("cannot write the audit log %s", self.audit.path)
