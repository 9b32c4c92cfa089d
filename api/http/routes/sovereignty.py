"""What a member token may ask about its own data: ``GET /v1/access-log`` (which analyst queries read its rows)
and ``GET /v1/export`` (everything the hub holds of it, as Parquet files in a zip)."""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...export import write_export
from ..deps import ContextDep, MemberDep
from ..params import utc
from ..problems import problem_responses
from ..schemas import AccessLog, AccessLogEntry

router = APIRouter(tags=["your data"])

_CHUNK = 1 << 20


@router.get(
    "/v1/access-log",
    response_model=AccessLog,
    responses=problem_responses(401, 403, 422),
    summary="Analyst queries whose answers included the member's rows",
)
def get_access_log(
    ctx: ContextDep,
    principal: MemberDep,
    start: Annotated[datetime | None, Query(description="Only queries from this time on")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most recent entries to return")] = 1000,
) -> AccessLog:
    """Every audited analyst query that returned rows of the token's member: when, which analyst token, which
    endpoint, for which purpose and how many of the member's rows. Other members' rows are never shown."""
    member = principal.member
    assert member is not None
    since = utc(start)
    # the most recent ``limit`` only, however long the log; lines not naming the member are not even parsed
    found: deque[AccessLogEntry] = deque(maxlen=limit)
    for entry in ctx.audit.entries(containing=member):
        rows = (entry.get("members") or {}).get(member) if entry.get("role") == "analyst" else None
        if not rows:
            continue
        ts = datetime.fromisoformat(str(entry["ts"]).replace("Z", "+00:00"))
        if since is not None and ts < since:
            continue
        found.append(
            AccessLogEntry(
                time=ts,
                token_id=str(entry.get("token_id")),
                endpoint=str(entry.get("endpoint")),
                purpose=entry.get("purpose"),
                rows=int(rows),
                status=int(entry.get("status") or 0),
            )
        )
    return AccessLog(member=member, entries=list(found))


@router.get(
    "/v1/export",
    responses={
        200: {"description": "A zip of Parquet files and manifest.json", "content": {"application/zip": {}}},
        **problem_responses(401, 403, 503),
    },
    response_class=StreamingResponse,
    summary="Everything the hub holds of the member, as Parquet files in a zip",
)
async def get_export(ctx: ContextDep, principal: MemberDep) -> StreamingResponse:
    """The member's series, rollups, KPIs per day and own contributions to released benchmark cells, with a
    manifest (rows and SHA-256 per file). The archive is built in a temporary file, then streamed."""
    member = principal.member
    assert member is not None
    spool = tempfile.TemporaryFile(prefix="mdh-export-")  # noqa: SIM115 -- closed by the stream below
    try:
        await run_in_threadpool(write_export, ctx.store, ctx.register_provider(), member, spool, now=ctx.clock())
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    stamp = ctx.clock().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        _stream(spool),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{member}-export-{stamp}.zip"'},
    )


def _stream(fh: IO[bytes]) -> Iterator[bytes]:
    try:
        while block := fh.read(_CHUNK):
            yield block
    finally:
        fh.close()
