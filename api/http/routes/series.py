"""``GET /v1/series``: pooled, pseudonymised raw or downsampled series in four formats."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from storage import SeriesQuery

from ...audit import record_member_rows, record_rows
from ...errors import NotAcceptable
from ..deps import ContextDep, ReaderDep, readable_members
from ..formats import MEDIA_TYPES, encode, negotiate
from ..paging import decode_cursor, encode_cursor
from ..params import EVERY_PATTERN, every_seconds, to_ns, utc
from ..problems import problem_responses
from ..schemas import AggName, ArrowCompression, MemberId, SeriesFormat, SeriesPage

log = logging.getLogger(__name__)
router = APIRouter(tags=["series"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of rows ordered by (ts, member, asset, signal). For CSV, Arrow and Parquet the "
        "next page's cursor is in the `X-Next-Cursor` header (absent on the last page) and a `Link: rel=next` header.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            MEDIA_TYPES["arrow"]: _BINARY,
            MEDIA_TYPES["parquet"]: _BINARY,
        },
        "headers": {
            "X-Next-Cursor": {"description": "Cursor of the next page", "schema": {"type": "string"}},
            "X-Row-Count": {"description": "Rows in this page", "schema": {"type": "integer"}},
        },
    },
    **problem_responses(401, 403, 406, 422, 503),
}


@router.get(
    "/v1/series",
    response_model=SeriesPage,
    responses=_RESPONSES,
    summary="Pooled series (members: their own only; analysts: members consenting to the token's purpose)",
)
def get_series(
    request: Request,
    ctx: ContextDep,
    principal: ReaderDep,
    signal: Annotated[list[str] | None, Query(description="Canonical signal(s); repeat for several")] = None,
    asset_class: Annotated[list[str] | None, Query(description="Asset class(es)")] = None,
    member: Annotated[
        list[MemberId] | None, Query(description="Member pseudonym(s); members may give only their own")
    ] = None,
    asset: Annotated[list[str] | None, Query(description="Asset pseudonym(s)")] = None,
    start: Annotated[datetime | None, Query(description="Inclusive start (RFC 3339; naive = UTC)")] = None,
    end: Annotated[datetime | None, Query(description="Exclusive end (RFC 3339; naive = UTC)")] = None,
    every: Annotated[
        str | None, Query(pattern=EVERY_PATTERN, description="Bucket width, e.g. 30s, 15m, 1h, 1d")
    ] = None,
    agg: Annotated[AggName, Query(description="Aggregate per bucket when `every` is given")] = "mean",
    format: Annotated[SeriesFormat | None, Query(description="Overrides the Accept header")] = None,
    compression: Annotated[
        ArrowCompression, Query(description="Arrow IPC buffer compression (Arrow only; `none` for arrow-js)")
    ] = "zstd",
    limit: Annotated[int | None, Query(ge=1, description="Rows per page (at most api.max_page_rows)")] = None,
    cursor: Annotated[str | None, Query(max_length=2000, description="`next_cursor` of the previous page")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    fmt = negotiate(accept, format)
    if fmt is None:
        raise NotAcceptable("Accept: one of " + ", ".join(MEDIA_TYPES.values()) + " (or use format=)")
    page = min(limit or ctx.settings.max_page_rows, ctx.settings.max_page_rows)
    start_, end_ = utc(start), utc(end)  # start >= end is an empty interval: no rows
    query = SeriesQuery(
        signals=tuple(signal) if signal else None,
        asset_classes=tuple(asset_class) if asset_class else None,
        members=readable_members(ctx, principal, member, "raw_series"),
        assets=tuple(asset) if asset else None,
        start_ns=to_ns(start_) if start_ else None,
        end_ns=to_ns(end_) if end_ else None,
        every_s=every_seconds(every),
        agg=agg,
        limit=page + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    frame = ctx.store.query_series(query)
    next_cursor: str | None = None
    if frame.height > page:
        frame = frame.head(page)
        last = frame.row(page - 1, named=True)
        last_ns = int(frame["ts"].dt.epoch("ns")[page - 1])
        next_cursor = encode_cursor((last_ns, last["member"], last["asset"], last["signal"]))
    record_rows(request, frame.height)
    record_member_rows(request, frame)
    ctx.metrics.rows.labels(fmt).inc(frame.height)
    headers = {"X-Row-Count": str(frame.height)}
    if next_cursor is not None:
        headers["X-Next-Cursor"] = next_cursor
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        headers["Link"] = f'<{request.url.path}?{urlencode([*params, ("cursor", next_cursor)])}>; rel="next"'
    if fmt == "parquet":
        headers["Content-Disposition"] = 'attachment; filename="series.parquet"'
    media = MEDIA_TYPES[fmt] + ("; charset=utf-8" if fmt == "csv" else "")
    return StreamingResponse(
        encode(frame, fmt, next_cursor, compression=compression), media_type=media, headers=headers
    )
