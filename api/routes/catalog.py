"""``GET /v1/catalog`` and ``GET /v1/me``: what there is, and who the caller is."""

from __future__ import annotations

import polars as pl
from fastapi import APIRouter

from storage import RollupQuery
from wire import ASSET_CLASSES, SIGNALS

from ..deps import ContextDep, PrincipalDep
from ..formats import MEDIA_TYPES
from ..kpis import KPIS, PERIODS
from ..problems import problem_responses
from ..schemas import AssetClassInfo, Catalog, KpiInfo, Me, SignalInfo

router = APIRouter(tags=["catalog"])


@router.get("/v1/catalog", response_model=Catalog, responses=problem_responses(401, 503), summary="What there is")
def get_catalog(ctx: ContextDep, principal: PrincipalDep) -> Catalog:
    active = [m.pseudonym for m in ctx.register_provider().member if m.active]
    per_class = (
        ctx.store.query_rollups(RollupQuery(members=tuple(active)))
        .group_by("asset_class")
        .agg(pl.col("member").n_unique().alias("n"))
    )
    counts = dict(zip(per_class["asset_class"].to_list(), per_class["n"].to_list(), strict=True))
    return Catalog(
        signals=[
            SignalInfo(name=s.name, unit=s.unit, kind=s.kind, description=s.description) for s in SIGNALS.values()
        ],
        asset_classes=[
            AssetClassInfo(name=name, label=label, contributing_members=int(counts.get(name, 0)))
            for name, label in ASSET_CLASSES.items()
        ],
        kpis=[
            KpiInfo(name=k.name, unit=k.unit, description=k.description, higher_is_better=k.higher_is_better)
            for k in KPIS.values()
        ],
        periods=list(PERIODS),  # type: ignore[arg-type]
        benchmark_periods=["day", "week", "month"],
        release_delay_days=ctx.settings.release_delay_days,
        min_contributors=ctx.settings.min_contributors,
        formats=list(MEDIA_TYPES),  # type: ignore[arg-type]
    )


@router.get("/v1/me", response_model=Me, responses=problem_responses(401, 503), summary="The caller's token")
def get_me(ctx: ContextDep, principal: PrincipalDep) -> Me:
    classes: list[str] = []
    if principal.member is not None:
        rollups = ctx.store.query_rollups(RollupQuery(members=(principal.member,)))
        classes = sorted(set(rollups["asset_class"].to_list()))
    return Me(token_id=principal.token_id, role=principal.role, member=principal.member, asset_classes=classes)
