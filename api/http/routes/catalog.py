"""``GET /v1/catalog`` and ``GET /v1/me``: what there is, and who the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from storage import RollupQuery
from wire import ASSET_CLASSES, SIGNALS

from ...core.kpis import BENCHMARK_PERIODS, KPIS, PERIODS
from ..context import AppContext
from ..deps import ContextDep, PrincipalDep
from ..formats import MEDIA_TYPES
from ..params import to_ns
from ..problems import problem_responses
from ..schemas import AssetClassInfo, Catalog, KpiInfo, Me, SignalInfo

router = APIRouter(tags=["catalog"])
#: How far back the catalog looks for the latest published cell of a class.
LOOKBACK_NS = 400 * 86_400 * 10**9


@router.get("/v1/catalog", response_model=Catalog, responses=problem_responses(401, 503), summary="What there is")
def get_catalog(ctx: ContextDep, principal: PrincipalDep) -> Catalog:
    counts = {name: latest_band(ctx, name) for name in ASSET_CLASSES}
    return Catalog(
        signals=[
            SignalInfo(name=s.name, unit=s.unit, kind=s.kind, description=s.description) for s in SIGNALS.values()
        ],
        asset_classes=[
            AssetClassInfo(name=name, label=label, contributors=counts[name])  # type: ignore[arg-type]
            for name, label in ASSET_CLASSES.items()
        ],
        kpis=[
            KpiInfo(name=k.name, unit=k.unit, description=k.description, higher_is_better=k.higher_is_better)
            for k in KPIS.values()
        ],
        periods=list(PERIODS),
        benchmark_periods=list(BENCHMARK_PERIODS),
        release_delay_days=ctx.settings.release_delay_days,
        release_delay_days_by_kpi={k: ctx.rules.delay_for(k).days for k in KPIS},
        min_contributors=ctx.settings.min_contributors,
        formats=list(MEDIA_TYPES),  # type: ignore[arg-type]
    )


def latest_band(ctx: AppContext, asset_class: str) -> str | None:
    """The contributor band of the class's most recent published daily cell in the release ledger, if any.

    Only what a benchmark answer already shows: released, published cells, never a count
    of members with data (which would show a newcomer at once, or contradict a cell's
    reason when two members share a group).
    """
    now_ns = to_ns(ctx.clock())
    best: tuple[int, str] | None = None
    for kpi in KPIS:
        for cell in ctx.store.released_cells(kpi, asset_class, now_ns - LOOKBACK_NS, now_ns, "day"):
            if cell.status == "published" and cell.contributors and (best is None or cell.period_start_ns > best[0]):
                best = (cell.period_start_ns, cell.contributors)
    return best[1] if best else None


@router.get("/v1/me", response_model=Me, responses=problem_responses(401, 503), summary="The caller's token")
def get_me(ctx: ContextDep, principal: PrincipalDep) -> Me:
    classes: list[str] = []
    if principal.member is not None:
        rollups = ctx.store.query_rollups(RollupQuery(members=(principal.member,)))
        classes = sorted(set(rollups["asset_class"].to_list()))
    return Me(token_id=principal.token_id, role=principal.role, member=principal.member, asset_classes=classes)
