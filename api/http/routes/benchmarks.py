"""``GET /v1/benchmarks/{kpi}``: peer distributions under disclosure control (optionally private)."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from core.consent import BENCHMARKING
from core.register import DEFAULT_EMISSION_FACTOR
from storage import ReleasedCell, RollupQuery
from wire import ASSET_CLASSES

from ...audit import record_rows
from ...core.cells import (
    Cell,
    cell_from_ledger,
    contributions,
    end_of,
    from_ns,
    history_start,
    own_values,
    period_starts,
    release,
    unreleased_cell,
)
from ...core.disclosure import Published
from ...core.dp import private_figures
from ...core.kpis import KPIS, BenchmarkPeriod
from ...errors import BudgetExhausted, InvalidRequest, NotFound
from ...tokens import Principal
from ..context import AppContext
from ..deps import ContextDep, ReaderDep
from ..params import to_ns, window
from ..problems import problem_responses
from ..schemas import BenchmarkCell, BenchmarkResponse, OwnPosition, PrivacyNote

router = APIRouter(tags=["benchmarks"])
log = logging.getLogger(__name__)

QUANTILE_METHOD = (
    "each quantile is the mean of the 5 contributors' values nearest its rank, in windows that never overlap; "
    "in weekly and monthly cells the median from 10 contributors, quartiles from 20, p10 and p90 from 30 (daily "
    "cells show the mean only); a window that one value dominates "
    "(p%-rule) or whose values lie close together is withheld"
)


@router.get(
    "/v1/benchmarks/{kpi}",
    response_model=BenchmarkResponse,
    response_model_exclude_none=False,
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
    rules = ctx.rules
    start_, end_ = window(start, end, period, now, ctx.settings.max_periods)
    starts = period_starts(start_, end_, period)
    as_of: list[int | None] = []
    t0 = time.perf_counter()
    entries = released(ctx, kpi, asset_class, period, starts, now, as_of)
    t1 = time.perf_counter()
    own: dict[datetime, float] = {}
    if principal.role == "member" and principal.member is not None and starts:
        own = _own_values(ctx, principal.member, kpi, asset_class, period, starts, as_of)
    log.debug(
        "benchmark %s/%s/%s: %d periods; ledger read in %.3f s, own values in %.3f s",
        kpi,
        asset_class,
        period,
        len(starts),
        t1 - t0,
        time.perf_counter() - t1,
    )
    cells = [
        cell_from_ledger(entries[s], rules, own.get(s))
        if s in entries
        else unreleased_cell(s, period, kpi, rules, own.get(s))
        for s in starts
    ]
    note: PrivacyNote | None = None
    out = [_out(c, entries.get(c.period_start)) for c in cells]
    if principal.role == "analyst" and ctx.settings.dp.enabled:
        out, note = _private(ctx, principal, kpi, out, entries)
    for c in cells:
        ctx.metrics.cells.labels("published" if isinstance(c.outcome, Published) else c.outcome.code).inc()
    record_rows(request, len(cells))
    return BenchmarkResponse(
        kpi=kpi,
        unit=spec.unit,
        higher_is_better=spec.higher_is_better,
        asset_class=asset_class,
        period=period,
        release_delay_days=rules.delay_for(kpi).days,
        quantile_method=QUANTILE_METHOD,
        perturbation=(
            f"every figure is multiplied by a keyed factor within ±{rules.noise:.0%} that depends on the cell and "
            f"its contributors (the same cell always shows the same figures), then rounded to "
            f"{rules.significant_digits} significant digits"
        ),
        differential_privacy=note,
        as_of=_oldest(as_of),
        cells=out,
    )


def _oldest(as_of: list[int | None]) -> datetime | None:
    """The oldest freshness of the rollups read (unknown if any is unknown; ``None`` if none was read)."""
    if not as_of or any(a is None for a in as_of):
        return None
    return from_ns(min(a for a in as_of if a is not None))


def released(
    ctx: AppContext,
    kpi: str,
    asset_class: str,
    period: BenchmarkPeriod,
    starts: list[datetime],
    now: datetime,
    as_of: list[int | None] | None = None,
) -> dict[datetime, ReleasedCell]:
    """The ledger entries of the due periods among ``starts``, releasing (and freezing) those not yet released;
    the freshness of the rollups a release read is appended to ``as_of``."""
    if not starts:
        return {}
    rules = ctx.rules
    due = [s for s in starts if end_of(s, period) <= now - rules.delay_for(kpi)]
    if not due:
        return {}
    lo, hi = to_ns(due[0]), to_ns(end_of(due[-1], period))
    entries = {from_ns(e.period_start_ns): e for e in ctx.store.released_cells(kpi, asset_class, lo, hi, period)}
    missing = [s for s in due if s not in entries]
    if missing:
        with ctx.release_lock:
            entries.update(
                {from_ns(e.period_start_ns): e for e in ctx.store.released_cells(kpi, asset_class, lo, hi, period)}
            )
            missing = [s for s in due if s not in entries]
            if missing:
                fresh = _release(ctx, kpi, asset_class, period, missing, now)
                if as_of is not None:
                    as_of.append(fresh)
                lo_m, hi_m = to_ns(missing[0]), to_ns(end_of(missing[-1], period))
                for e in ctx.store.released_cells(kpi, asset_class, lo_m, hi_m, period):
                    entries[from_ns(e.period_start_ns)] = e
    return entries


def _release(
    ctx: AppContext, kpi: str, asset_class: str, period: BenchmarkPeriod, missing: list[datetime], now: datetime
) -> int | None:
    register = ctx.register_provider()
    # Contributors: members that may send and consent to benchmarking now (a change applies from the next
    # release; cells released before stay as released).
    active = [m for m in register.member if m.permits("benchmark", BENCHMARKING, now)]
    end = end_of(missing[-1], period)
    read = ctx.store.read_rollups(
        RollupQuery(
            asset_classes=(asset_class,),
            members=tuple(m.pseudonym for m in active),
            start_ns=to_ns(history_start(missing[0], period)),
            end_ns=to_ns(end),
        )
    )
    rollups = read.frame
    by_period = contributions(
        rollups,
        kpi=kpi,
        period=period,
        groups={m.pseudonym: m.group for m in active},
        emission_factors={m.pseudonym: m.emission_factor_kg_per_kwh for m in active},
        default_factor=DEFAULT_EMISSION_FACTOR,
    )
    overlapping = ctx.store.released_cells(kpi, asset_class, to_ns(missing[0]), to_ns(end))
    result = release(
        by_period,
        kpi=kpi,
        asset_class=asset_class,
        period=period,
        starts=missing,
        overlapping=overlapping,
        rules=ctx.rules,
        key=ctx.cell_key(),
        now=now,
    )
    ctx.store.release(result.cells)
    for start, dropped in result.excluded.items():
        ctx.metrics.excluded.labels(kpi).inc(len(dropped))
        log.warning(
            "benchmark %s/%s/%s %s: %d contribution(s) excluded as implausible (%s)",
            kpi,
            asset_class,
            period,
            start.date().isoformat(),
            len(dropped),
            "; ".join(sorted({d.why for d in dropped})),
        )
    return read.as_of_ns


def _own_values(
    ctx: AppContext,
    member: str,
    kpi: str,
    asset_class: str,
    period: BenchmarkPeriod,
    starts: list[datetime],
    as_of: list[int | None],
) -> dict[datetime, float]:
    entry = next((m for m in ctx.register_provider().member if m.pseudonym == member), None)
    factors = {member: entry.emission_factor_kg_per_kwh} if entry is not None else {}
    read = ctx.store.read_rollups(
        RollupQuery(
            asset_classes=(asset_class,),
            members=(member,),
            start_ns=to_ns(starts[0]),
            end_ns=to_ns(end_of(starts[-1], period)),
            refresh_max_assets=ctx.settings.rollup_refresh_max_assets,
        )
    )
    as_of.append(read.as_of_ns)
    rollups = read.frame
    return own_values(
        rollups, kpi=kpi, period=period, member=member, emission_factors=factors, default_factor=DEFAULT_EMISSION_FACTOR
    )


def _private(
    ctx: AppContext, principal: Principal, kpi: str, cells: list[BenchmarkCell], entries: dict[datetime, ReleasedCell]
) -> tuple[list[BenchmarkCell], PrivacyNote]:
    dp = ctx.settings.dp
    published = [c for c in cells if c.status == "published" and _values(entries.get(c.period_start))]
    cost = dp.epsilon_per_cell * len(published)
    spend = ctx.ledger.charge(principal.token_id, cost)
    if spend is None:
        left = max(dp.budget_per_analyst - ctx.ledger.spent(principal.token_id), 0.0)
        raise BudgetExhausted(
            f"this answer would cost epsilon {cost:g} ({len(published)} cells); the token has {left:g} left"
        )
    ctx.metrics.epsilon.inc(cost)
    low, high = dp.clip.get(kpi, (0.0, 1.0))
    noise: dict[str, str] = {}
    out: list[BenchmarkCell] = []
    for cell in cells:
        entry = entries.get(cell.period_start)
        if cell.status == "published" and entry is not None and not entry.values:
            cell = cell.model_copy(update={q: None for q in ("mean", "contributors", *FIGURES)} | _ERASED)
        elif cell.status == "published" and entry is not None:
            names = [n for n in entry.figures if n != "mean"]
            figures, noise = private_figures(entry.values, names, low, high, dp.epsilon_per_cell, ctx.rng)
            cell = cell.model_copy(update={q: figures.get(q) for q in ("mean", *FIGURES)})
        out.append(cell)
    return out, PrivacyNote(epsilon_spent=cost, epsilon_remaining=spend.remaining, noisy=noise)


FIGURES = ("p10", "p25", "median", "p75", "p90")
#: A released cell whose contributors' values were erased (a contributor's data was deleted) has no private figures.
_ERASED = {
    "status": "suppressed",
    "reason_code": "values_erased",
    "reason": "a contributor's data was deleted at its request, with the contributors' values this cell was "
    "released from; no differentially private figure can be drawn from it",
}


def _values(entry: ReleasedCell | None) -> bool:
    return entry is not None and bool(entry.values)


def _out(cell: Cell, entry: ReleasedCell | None) -> BenchmarkCell:
    o = cell.outcome
    own = OwnPosition(value=cell.own_value, band=cell.own_band) if cell.own_value is not None else None
    released_at = from_ns(entry.released_at_ns) if entry is not None else None
    if not isinstance(o, Published):
        return BenchmarkCell(
            period_start=cell.period_start,
            period_end=cell.period_end,
            status="suppressed",
            reason_code=o.code,
            reason=o.reason,
            released_at=released_at,
            own=own,
        )
    return BenchmarkCell(
        period_start=cell.period_start,
        period_end=cell.period_end,
        status="published",
        contributors=o.contributors,  # type: ignore[arg-type]
        mean=o.figures.get("mean"),
        p10=o.figures.get("p10"),
        p25=o.figures.get("p25"),
        median=o.figures.get("median"),
        p75=o.figures.get("p75"),
        p90=o.figures.get("p90"),
        released_at=released_at,
        own=own,
    )
