"""Disclosure control for benchmark cells (pure; see docs/disclosure.md).

A cell is one KPI for one asset class (a fixed peer group) and one period. Its
contributors are corporate groups: all members of one group are pooled into one
contribution first, so a group counts once. A cell is published only if

1. the period has ended at least ``release_delay`` ago (closed and released);
2. at least ``min_contributors`` groups have a value;
3. for each additive total behind the KPI (energy, parts, running time ...), the
   largest group holds at most ``max_share_largest`` of the cell total and the
   two largest hold strictly less than ``max_share_two_largest``.

A suppressed cell carries a reason and no numbers. A published cell carries the
number of contributors, p10/p25/median/p75/p90 and the mean of the group values.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7,
the default of numpy and R): for sorted values x[0..n-1] and fraction p,
h = (n-1)p, and the percentile is x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p10", 0.10),
    ("p25", 0.25),
    ("median", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
)

ReasonCode = Literal["not_released", "too_few_contributors", "dominance"]
Band = Literal["below_p10", "p10_p25", "p25_median", "median_p75", "p75_p90", "above_p90"]
BANDS: tuple[str, ...] = ("below_p10", "p10_p25", "p25_median", "median_p75", "p75_p90", "above_p90")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    min_contributors: int = 5
    max_share_largest: float = 0.33
    max_share_two_largest: float = 0.60
    release_delay: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True, kw_only=True)
class Contribution:
    """One independent contributor (a corporate group) to a cell."""

    group: str
    value: float
    #: Additive totals of this group in the cell, by name (e.g. ``{"energy_kwh": 812.0}``).
    totals: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    contributors: int
    p10: float
    p25: float
    median: float
    p75: float
    p90: float
    mean: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppressed:
    code: ReasonCode
    reason: str


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Type-7 percentile of ascending ``sorted_values`` (non-empty) at fraction ``p`` in [0, 1]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    h = (len(sorted_values) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def distribution(values: Sequence[float]) -> Distribution:
    xs = sorted(values)
    q = {name: percentile(xs, p) for name, p in PERCENTILES}
    return Distribution(contributors=len(xs), mean=math.fsum(xs) / len(xs), **q)


def dominance_problem(contributions: Sequence[Contribution], basis: Sequence[str], rules: Rules) -> str | None:
    """Name the first additive total that one or two contributors dominate, or ``None``."""
    for name in basis:
        shares = sorted((max(c.totals.get(name, 0.0), 0.0) for c in contributions), reverse=True)
        total = math.fsum(shares)
        if total <= 0:
            continue
        top1 = shares[0] / total
        top2 = (shares[0] + (shares[1] if len(shares) > 1 else 0.0)) / total
        if top1 > rules.max_share_largest or top2 >= rules.max_share_two_largest:
            return name
    return None


def check_cell(
    contributions: Sequence[Contribution],
    basis: Sequence[str],
    rules: Rules,
    *,
    period_end: datetime,
    now: datetime,
) -> Suppressed | None:
    """Why the cell must be suppressed, or ``None`` if it may be published."""
    if period_end > now - rules.release_delay:
        return Suppressed(
            code="not_released",
            reason=f"period not yet released (periods are published {rules.release_delay.days} days after they end)",
        )
    groups = {c.group for c in contributions}
    if len(groups) != len(contributions):
        raise ValueError("contributions must be pooled per corporate group first")
    if len(contributions) < rules.min_contributors:
        return Suppressed(
            code="too_few_contributors",
            reason=f"fewer than {rules.min_contributors} independent contributors",
        )
    if dominance_problem(contributions, basis, rules) is not None:
        return Suppressed(
            code="dominance",
            reason=(
                f"one or two contributors dominate the cell (largest above {rules.max_share_largest:.0%} "
                f"or two largest at or above {rules.max_share_two_largest:.0%} of a total)"
            ),
        )
    return None


def evaluate(
    contributions: Sequence[Contribution],
    basis: Sequence[str],
    rules: Rules,
    *,
    period_end: datetime,
    now: datetime,
) -> Distribution | Suppressed:
    """The published distribution of a cell, or why it is suppressed."""
    problem = check_cell(contributions, basis, rules, period_end=period_end, now=now)
    if problem is not None:
        return problem
    return distribution([c.value for c in contributions])


def rank_band(value: float, dist: Distribution) -> Band:
    """Where ``value`` lies among the published percentiles, on the value scale from low to high.

    A value equal to an edge belongs to the band above it (``p25`` itself is in ``p25_median``).
    """
    edges = (dist.p10, dist.p25, dist.median, dist.p75, dist.p90)
    for band, edge in zip(BANDS, edges, strict=False):
        if value < edge:
            return band  # type: ignore[return-value]
    return "above_p90"
