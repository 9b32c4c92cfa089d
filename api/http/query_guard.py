"""Refuse control characters in query and path parameters, for every route and every store.

A newline, NUL or other C0/C1 control character (and the Unicode line and paragraph separators)
belongs in no filter value: signals, asset classes, pseudonyms, periods and cursors are all
printable. Left to the stores, such a value was an error deep inside one (a 503 from InfluxDB,
an empty answer from DuckDB); refused here, it is the same 422 problem on every store, before
any store sees it, counted in ``mdh_api_invalid_requests_total{reason="control_character"}`` and
logged once per ten seconds at most.
"""

from __future__ import annotations

import logging
import re

from fastapi import Request

from storage.ratelog import RateLimitedLog

from ..errors import InvalidRequest

log = logging.getLogger(__name__)
_refusal_log = RateLimitedLog(log, interval_s=10.0)

#: C0 controls, DEL, C1 controls, U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _where(name: str, value: str) -> str | None:
    m = CONTROL_RE.search(value)
    if m is None:
        return None
    return f"{name}: control character U+{ord(m.group()):04X} at position {m.start()} is not allowed"


def reject_control_characters(request: Request) -> None:
    """App-wide dependency: a 422 problem if a query parameter (name or value) or a path parameter holds one."""
    problem = None
    for name, value in request.query_params.multi_items():
        problem = _where("query parameter name", name) or _where(name[:40], value)
        if problem:
            break
    else:
        for name, raw in request.path_params.items():
            if isinstance(raw, str) and (problem := _where(name, raw)):
                break
    if problem is None:
        return
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is not None:
        ctx.metrics.invalid_requests.labels("control_character").inc()
    _refusal_log.warning("control_character", "refused a request to %s: %s", request.url.path, problem)
    raise InvalidRequest(problem)
