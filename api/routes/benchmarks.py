"""``GET /v1/benchmarks/{kpi}``: peer distributions under disclosure control (optionally private)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from metalldaten.register import DEFAULT_EMISSION_FACTOR
from storage import RollupQuery
from wire import ASSET_CLASSES

from ..audit import record_rows
from ..cells import Cell, benchmark_cells, end_of, period_starts, privatise
from ..context import AppContext
from ..deps import ContextDep, ReaderDep
from ..disclosure import Distribution
from ..errors import BudgetExhausted, InvalidRequest, NotFound
from ..kpis import KPIS
from ..params import to_ns, window
from ..problems import problem_responses
from ..schemas import BenchmarkCell, BenchmarkPeriod, BenchmarkResponse, OwnPosition, PrivacyNote
from ..tokens import Principal

router = APIRouter(tags=["benchmarks"])

PERCENTILE_METHOD = "linear interpolation between closest ranks (Hyndman-Fan type 7) over one value per contributor"


@router.get(
    "/v1/benchmarks/{kpi}",
    response_model=BenchmarkResponse,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Peer distribution of a KPI in an asset class, per period",
)
def get_benchmark(
    request: Request,
    ctx: ContextDep,
    principal: ReaderDep,
    kpi: Annotated[str, Path(description="One of the KPIs of /v1/catalog", json_schema_extra={"enum": list(KPIS)})],
    asset_class: Annotated[
        str, Query(description="The peer group: a fixed asset class", json_schema_extra={"enum": list(ASSET_CLASSES)})
    ],
    period: Annotated[BenchmarkPeriod, Query()] = "month",
    start: Annotated[datetime | None, Query()] = None,
    end: Annotated[datetime | None, Query()] = None,
) -> BenchmarkResponse:
    spec = KPIS.get(kpi)
    if spec is None:
        raise NotFound(f"no KPI {kpi!r}; known: {', '.join(KPIS)}")
    if asset_class not in ASSET_CLASSES:
        raise InvalidRequest(f"asset_class: one of {', '.join(ASSET_CLASSES)}")
    now = ctx.clock()
    start_, end_ = window(start, end, period, now, ctx.settings.max_periods)
    starts = period_starts(start_, end_, period)
    cells = _cells(ctx, principal, kpi, asset_class, period, starts, now)
    note: PrivacyNote | None = None
    if principal.role == "analyst" and ctx.settings.dp.enabled:
        cells, note = _private(ctx, principal, kpi, cells)
    for c in cells:
        ctx.metrics.cells.labels("published" if isinstance(c.outcome, Distribution) else c.outcome.code).inc()
    record_rows(request, len(cells))
    return BenchmarkResponse(
        kpi=kpi,
        unit=spec.unit,
        higher_is_better=spec.higher_is_better,
        asset_class=asset_class,
        period=period,
        percentile_method=PERCENTILE_METHOD,
        differential_privacy=note,
        cells=[_out(c) for c in cells],
    )


def _cells(
    ctx: AppContext,
    principal: Principal,
    kpi: str,
    asset_class: str,
    period: BenchmarkPeriod,
    starts: list[datetime],
    now: datetime,
) -> list[Cell]:
    if not starts:
        return []
    register = ctx.register_provider()
    active = [m for m in register.member if m.active]
    rollups = ctx.store.query_rollups(
        RollupQuery(
            asset_classes=(asset_class,),
            members=tuple(m.pseudonym for m in active),
            start_ns=to_ns(starts[0]),
            end_ns=to_ns(end_of(starts[-1], period)),
        )
    )
    return benchmark_cells(
        rollups,
        kpi=kpi,
        period=period,
        starts=starts,
        groups={m.pseudonym: m.group for m in active},
        emission_factors={m.pseudonym: m.emission_factor_kg_per_kwh for m in active},
        default_factor=DEFAULT_EMISSION_FACTOR,
        rules=ctx.rules,
        now=now,
        own_member=principal.member if principal.role == "member" else None,
    )


def _private(ctx: AppContext, principal: Principal, kpi: str, cells: list[Cell]) -> tuple[list[Cell], PrivacyNote]:
    dp = ctx.settings.dp
    published = sum(isinstance(c.outcome, Distribution) for c in cells)
    cost = dp.epsilon_per_cell * published
    spend = ctx.ledger.charge(principal.token_id, cost)
    if spend is None:
        left = max(dp.budget_per_analyst - ctx.ledger.spent(principal.token_id), 0.0)
        raise BudgetExhausted(
            f"this answer would cost epsilon {cost:g} ({published} cells); the token has {left:g} left"
        )
    ctx.metrics.epsilon.inc(cost)
    low, high = dp.clip.get(kpi, (0.0, 1.0))
    return privatise(cells, low, high, dp.epsilon_per_cell, ctx.rng), PrivacyNote(
        epsilon_spent=cost, epsilon_remaining=spend.remaining
    )


def _out(cell: Cell) -> BenchmarkCell:
    o = cell.outcome
    if not isinstance(o, Distribution):
        return BenchmarkCell(
            period_start=cell.period_start,
            period_end=cell.period_end,
            status="suppressed",
            reason_code=o.code,
            reason=o.reason,
        )
    own = None
    if cell.own_value is not None and cell.own_band is not None:
        own = OwnPosition(value=cell.own_value, band=cell.own_band)
    return BenchmarkCell(
        period_start=cell.period_start,
        period_end=cell.period_end,
        status="published",
        contributors=o.contributors,
        p10=o.p10,
        p25=o.p25,
        median=o.median,
        p75=o.p75,
        p90=o.p90,
        mean=o.mean,
        own=own,
    )
