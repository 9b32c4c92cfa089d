"""``GET /v1/kpis``: KPIs per asset and period (members: their own assets only).

The rollups are read as the store keeps them; a request folds in the pending data of the assets it reads
only when few are pending (``rollup_refresh_max_assets``), so an all-assets request never re-reads raw
data. ``as_of`` says up to when the rows are complete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from core.register import DEFAULT_EMISSION_FACTOR
from storage import RollupQuery

from ...audit import record_member_rows, record_rows
from ...core.cells import from_ns, period_starts
from ...core.kpis import compute_kpis
from ..deps import ContextDep, ReaderDep, readable_members
from ..kpi_json import kpi_response_json
from ..params import to_ns, window
from ..problems import problem_responses
from ..schemas import KpiResponse, MemberId, PeriodName

router = APIRouter(tags=["kpis"])


@router.get(
    "/v1/kpis",
    response_model=KpiResponse,
    responses=problem_responses(401, 403, 422, 503),
    summary="KPIs per asset and period",
)
def get_kpis(
    request: Request,
    ctx: ContextDep,
    principal: ReaderDep,
    period: Annotated[PeriodName, Query(description="hour, day, week (from Monday) or month; UTC")] = "day",
    start: Annotated[datetime | None, Query(description="Start (default: a period-dependent look-back)")] = None,
    end: Annotated[datetime | None, Query(description="End (default: now)")] = None,
    member: Annotated[list[MemberId] | None, Query(description="Member pseudonym(s); members only their own")] = None,
    asset: Annotated[list[str] | None, Query()] = None,
    asset_class: Annotated[list[str] | None, Query()] = None,
) -> KpiResponse | Response:
    start_, end_ = window(start, end, period, ctx.clock(), ctx.settings.max_periods)
    starts = period_starts(start_, end_, period)
    if not starts:
        return KpiResponse(period=period, start=start_, end=end_, data=[])
    start_ = starts[0]  # whole periods only
    read = ctx.store.read_rollups(
        RollupQuery(
            members=readable_members(ctx, principal, member, "kpis"),
            assets=tuple(asset) if asset else None,
            asset_classes=tuple(asset_class) if asset_class else None,
            start_ns=to_ns(start_),
            end_ns=to_ns(end_),
            refresh_max_assets=ctx.settings.rollup_refresh_max_assets,
        )
    )
    rollups = read.frame
    register = ctx.register_provider()
    factors = {m.pseudonym: m.emission_factor_kg_per_kwh for m in register.member}
    frame = compute_kpis(rollups, period, factors, DEFAULT_EMISSION_FACTOR)
    record_rows(request, frame.height)
    record_member_rows(request, frame)
    as_of = from_ns(read.as_of_ns) if read.as_of_ns is not None else None
    envelope = KpiResponse(period=period, start=start_, end=end_, as_of=as_of, data=[])
    return Response(kpi_response_json(envelope, frame), media_type="application/json")
