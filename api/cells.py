"""Benchmark cells of one KPI, asset class and period granularity (pure; see docs/disclosure.md).

From rollups of one asset class: totals per asset and period, pooled per corporate
group (one contributor per group), each group's KPI value from its pooled totals,
then the disclosure rules per period. The member's own value pools its own assets.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl

from .disclosure import Band, Contribution, Distribution, Rules, Suppressed, evaluate, rank_band
from .dp import private_distribution
from .kpis import KPIS, Period, asset_totals, period_end, period_start, pool


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    period_start: datetime
    period_end: datetime
    outcome: Distribution | Suppressed
    own_value: float | None = None
    own_band: Band | None = None
    #: The (unclipped) group values behind a published cell; never sent to clients.
    values: tuple[float, ...] = ()


def period_starts(start: datetime, end: datetime, period: Period) -> list[datetime]:
    """Starts of the periods overlapping [start, end)."""
    first = pl.select(period_start(pl.lit(start).cast(pl.Datetime("ns", "UTC")), period)).item()
    starts = pl.datetime_range(
        first,
        end,
        interval={"hour": "1h", "day": "1d", "week": "1w", "month": "1mo"}[period],
        closed="left",
        time_unit="ns",
        time_zone="UTC",
        eager=True,
    )
    return list(starts.to_list())


def end_of(start: datetime, period: Period) -> datetime:
    """The exclusive end of the period starting at ``start``."""
    value = pl.select(period_end(pl.lit(start).cast(pl.Datetime("ns", "UTC")), period)).item()
    assert isinstance(value, datetime)
    return value


def benchmark_cells(
    rollups: pl.DataFrame,
    *,
    kpi: str,
    period: Period,
    starts: Sequence[datetime],
    groups: Mapping[str, str],
    emission_factors: Mapping[str, float],
    default_factor: float,
    rules: Rules,
    now: datetime,
    own_member: str | None = None,
) -> list[Cell]:
    """One cell per period start in ``starts``, from ``rollups`` of a single asset class.

    ``groups`` maps member pseudonyms to their corporate group; a member missing
    from it is its own group.
    """
    spec = KPIS[kpi]
    totals = asset_totals(rollups, period, emission_factors, default_factor)
    group_map = pl.DataFrame(
        {"member": list(groups), "group": list(groups.values())}, schema={"member": pl.String, "group": pl.String}
    )
    with_group = totals.join(group_map, on="member", how="left").with_columns(
        pl.col("group").fill_null(pl.col("member"))
    )
    pooled = pool(with_group, ["period_start", "group"]).filter(pl.col(kpi).is_not_null())
    by_period: dict[datetime, list[Contribution]] = {}
    for row in pooled.iter_rows(named=True):
        by_period.setdefault(row["period_start"], []).append(
            Contribution(group=row["group"], value=row[kpi], totals={b: row[b] for b in spec.basis})
        )
    own: dict[datetime, float] = {}
    if own_member is not None:
        mine = pool(totals.filter(pl.col("member") == own_member), ["period_start"]).filter(pl.col(kpi).is_not_null())
        own = dict(zip(mine["period_start"].to_list(), mine[kpi].to_list(), strict=True))

    cells: list[Cell] = []
    for start in starts:
        end = end_of(start, period)
        contributions = by_period.get(start, [])
        outcome = evaluate(contributions, spec.basis, rules, period_end=end, now=now)
        cell = Cell(period_start=start, period_end=end, outcome=outcome)
        if isinstance(outcome, Distribution):
            cell = replace(cell, values=tuple(c.value for c in contributions))
            mine_value = own.get(start)
            if mine_value is not None:
                cell = replace(cell, own_value=mine_value, own_band=rank_band(mine_value, outcome))
        cells.append(cell)
    return cells


def privatise(cells: Sequence[Cell], low: float, high: float, epsilon: float, rng: random.Random) -> list[Cell]:
    """Replace each published distribution by a differentially private one (``epsilon`` per cell)."""
    out: list[Cell] = []
    for cell in cells:
        if isinstance(cell.outcome, Distribution):
            noisy = private_distribution(cell.values, low, high, epsilon, rng)
            cell = replace(cell, outcome=noisy, values=())
        out.append(cell)
    return out
