"""Disclosure control for benchmark cells (pure; the rules and their reasons: docs/disclosure.md).

A cell is one KPI for one asset class (a fixed peer group) and one calendar period.
Its contributors are corporate groups (members of one group are pooled first). A
released cell is computed once, by :func:`publish`, and frozen in the release
ledger; this module never reads a clock or a store.

1. **Plausibility** (:func:`plausible`): a contribution far from the peer median or
   from the group's own history is excluded before anything else, so that a member
   cannot walk an extreme value of its own across the others.
2. **Cell gate** (:func:`dominance_problem`): at least ``min_contributors``; for every
   additive total behind the KPI the largest share at most ``max_share_largest``, the
   two largest strictly below ``max_share_two_largest``, and the p%-rule.
3. **Figures by size** (:func:`published_quantiles`): the mean always, the median
   from 10, quartiles from 20, p10/p90 from 30 contributors. A quantile is the mean
   of the ``window`` values nearest its rank; windows never overlap
   (:func:`quantile_windows`); a window that fails the p%-rule, or whose published
   mean would bound its outermost values within p % (:func:`spread_ok`), is withheld;
   a cell whose mean would do so is suppressed (``homogeneous``).
4. **Perturbation and rounding**: each figure is multiplied by ``1 + u`` with ``u``
   in ``[-noise, noise]`` drawn from a keyed hash of the cell and its contributor
   set (the same set gives the same noise), then rounded to
   ``significant_digits``. ``contributors`` is published as a band.
5. **Differencing** (:func:`differencing_problem`): cells of nested or overlapping
   periods must have equal contributor sets or sets differing by at least
   ``differencing_min`` groups.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

#: Changes whenever a rule changes what a released cell holds; stored with every ledger entry.
RULES_VERSION = "2"

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p10", 0.10),
    ("p25", 0.25),
    ("median", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
)
#: Quantiles published from this many contributors on.
QUANTILE_TIERS: dict[str, int] = {"median": 10, "p25": 20, "p75": 20, "p10": 30, "p90": 30}
#: ``contributors`` is published as one of these bands: (lowest count, label).
CONTRIBUTOR_BANDS: tuple[tuple[int, str], ...] = ((50, "50+"), (20, "20–49"), (10, "10–19"), (5, "5–9"))

ReasonCode = Literal["not_released", "too_few_contributors", "dominance", "homogeneous", "differencing"]
REASON_CODES: tuple[str, ...] = ("not_released", "too_few_contributors", "dominance", "homogeneous", "differencing")
#: How a KPI's plausibility is judged: "ratio" (a factor from the reference) or "share" (an absolute distance).
Scale = Literal["ratio", "share"]

#: Default release delays per KPI. Utilisation is close to capacity, the most commercially sensitive figure.
DEFAULT_RELEASE_DELAYS: dict[str, timedelta] = {"utilisation": timedelta(days=28)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    min_contributors: int = 5
    max_share_largest: float = 0.33
    max_share_two_largest: float = 0.60
    #: p%-rule: no contributor may estimate another's total (or window value) within this fraction.
    p_percent: float = 0.10
    #: Values averaged into one published quantile.
    window: int = 5
    significant_digits: int = 2
    #: Bound of the keyed multiplicative noise on each figure.
    noise: float = 0.04
    #: Nested or overlapping cells must differ by 0 or at least this many contributors.
    differencing_min: int = 5
    #: Plausibility: a "ratio" KPI's contribution within [reference / f, reference * f].
    peer_factor: float = 4.0
    drift_factor: float = 2.0
    #: Plausibility: a "share" KPI's contribution within reference ± this.
    peer_distance: float = 0.5
    drift_distance: float = 0.3
    #: Periods whose cells show quantiles; daily cells show the mean only (see docs/disclosure.md: a member
    #: shaping its own input learns from every quantile cell, so there are 52 a year, not 365).
    quantile_periods: tuple[str, ...] = ("week", "month")
    release_delay: timedelta = timedelta(days=7)
    release_delays: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_RELEASE_DELAYS))

    def delay_for(self, kpi: str) -> timedelta:
        return self.release_delays.get(kpi, self.release_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class Contribution:
    """One independent contributor (a corporate group) to a cell."""

    group: str
    value: float
    #: Additive totals of this group in the cell, by name (e.g. ``{"energy_kwh": 812.0}``).
    totals: Mapping[str, float] = field(default_factory=dict)
    #: The group's own typical value in the preceding periods (median), if it has any.
    history: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    contributors: str
    #: The published figures by name (``mean`` and the quantiles of the tier), perturbed and rounded.
    figures: Mapping[str, float]
    #: Quantiles the tier would show that were withheld (a window failing the p%-rule or too homogeneous).
    withheld: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppressed:
    code: ReasonCode
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Exclusion:
    group: str
    why: str


def reason_text(code: ReasonCode, rules: Rules, kpi: str | None = None) -> str:
    """The human reason of a suppressed cell: the rule, never a number of the cell."""
    if code == "not_released":
        days = (rules.delay_for(kpi) if kpi else rules.release_delay).days
        return f"period not yet released (cells are published {days} days after the period ends)"
    if code == "too_few_contributors":
        return f"fewer than {rules.min_contributors} independent contributors"
    if code == "dominance":
        return "one or a few contributors would dominate a total behind the figure"
    if code == "homogeneous":
        return "the contributors' values lie so close together that the figures would reveal each of them"
    return "publishing it beside an overlapping period's cell would single out a few contributors"


def contributors_band(n: int) -> str:
    for low, label in CONTRIBUTOR_BANDS:
        if n >= low:
            return label
    raise ValueError(f"no band below {CONTRIBUTOR_BANDS[-1][0]} contributors")


def published_quantiles(n: int) -> tuple[str, ...]:
    """The quantiles the tier of ``n`` contributors shows, lowest first."""
    return tuple(name for name, _ in QUANTILES if n >= QUANTILE_TIERS[name])


def quantile_windows(n: int, names: Sequence[str], m: int) -> dict[str, range]:
    """Non-overlapping index windows of ``m`` sorted values, one per quantile, each as near its rank as fits.

    A window starts at the rank ``p (n - 1)`` minus half the window, never before the
    end of the previous one; a quantile whose window no longer fits is left out.
    """
    fractions = dict(QUANTILES)
    out: dict[str, range] = {}
    next_free = 0
    for name in names:
        centre = fractions[name] * (n - 1)
        lo = max(math.floor(centre - (m - 1) / 2 + 0.5), next_free, 0)
        if lo + m > n:
            continue
        out[name] = range(lo, lo + m)
        next_free = lo + m
    return out


def p_percent_ok(amounts: Iterable[float], p: float) -> bool:
    """The p%-rule: the others besides the two largest hold at least ``p`` times the largest.

    The second largest, knowing its own amount and the total, then cannot estimate the
    largest closer than ``p`` of it.
    """
    xs = sorted((max(a, 0.0) for a in amounts), reverse=True)
    if not xs or xs[0] <= 0:
        return True
    rest = math.fsum(xs[2:])
    return rest >= p * xs[0]


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
        if not p_percent_ok(shares, rules.p_percent):
            return name
    return None


def _near(value: float, reference: float, factor: float, distance: float, scale: Scale) -> bool:
    if scale == "share":
        return abs(value - reference) <= distance
    if reference <= 0:
        return value <= 0
    return reference / factor <= value <= reference * factor


def plausible(
    contributions: Sequence[Contribution], rules: Rules, scale: Scale = "ratio"
) -> tuple[list[Contribution], list[Exclusion]]:
    """Split ``contributions`` into the plausible ones and the excluded ones (with the reason).

    A contribution is excluded when it lies outside the peer range around the median of
    all contributions, or outside the drift range around its own history.
    """
    if not contributions:
        return [], []
    peer = statistics.median(c.value for c in contributions)
    kept: list[Contribution] = []
    excluded: list[Exclusion] = []
    for c in contributions:
        if not math.isfinite(c.value):
            excluded.append(Exclusion(group=c.group, why="not a finite value"))
        elif not _near(c.value, peer, rules.peer_factor, rules.peer_distance, scale):
            excluded.append(Exclusion(group=c.group, why="far outside the peer range"))
        elif c.history is not None and not _near(c.value, c.history, rules.drift_factor, rules.drift_distance, scale):
            excluded.append(Exclusion(group=c.group, why="far outside the contributor's own history"))
        else:
            kept.append(c)
    return kept, excluded


def keyed_unit(key: bytes, *parts: str) -> float:
    """A number in [-1, 1) from a keyed hash of ``parts``: the same parts give the same number."""
    digest = hmac.new(key, "|".join(parts).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def round_significant(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def group_digest(groups: Iterable[str]) -> str:
    """A digest of a contributor set (sorted group ids)."""
    return hashlib.sha256("\n".join(sorted(groups)).encode()).hexdigest()[:32]


def publish(
    contributions: Sequence[Contribution],
    basis: Sequence[str],
    rules: Rules,
    *,
    key: bytes,
    cell_id: str,
    quantiles: bool = True,
) -> Published | Suppressed:
    """The published figures of a released cell from its (plausible) contributions, or why it is suppressed.

    ``quantiles`` False: the mean only, whatever the size (daily cells, see :attr:`Rules.quantile_periods`).
    """
    if len({c.group for c in contributions}) != len(contributions):
        raise ValueError("contributions must be pooled per corporate group first")
    n = len(contributions)
    if n < rules.min_contributors:
        return Suppressed(code="too_few_contributors", reason=reason_text("too_few_contributors", rules))
    if dominance_problem(contributions, basis, rules) is not None:
        return Suppressed(code="dominance", reason=reason_text("dominance", rules))
    xs = sorted(c.value for c in contributions)
    digest = group_digest(c.group for c in contributions)

    def perturbed(name: str, value: float) -> float:
        noise = 1.0 + rules.noise * keyed_unit(key, cell_id, digest, name)
        return round_significant(value * noise, rules.significant_digits)

    mean = perturbed("mean", math.fsum(xs) / n)
    if not spread_ok(xs, range(n), mean, rules):
        return Suppressed(code="homogeneous", reason=reason_text("homogeneous", rules))
    figures: dict[str, float] = {"mean": mean}
    withheld: list[str] = []
    names = published_quantiles(n) if quantiles else ()
    windows = quantile_windows(n, names, rules.window)
    for name in names:
        window = windows.get(name)
        if window is None:
            withheld.append(name)
            continue
        values = [xs[i] for i in window]
        figure = perturbed(name, math.fsum(values) / len(values))
        if not p_percent_ok(values, rules.p_percent) or not spread_ok(xs, window, figure, rules):
            withheld.append(name)
            continue
        figures[name] = figure
    shown = [name for name, _ in QUANTILES if name in figures]
    for name, value in zip(shown, sorted(figures[q] for q in shown), strict=True):
        figures[name] = value  # noise may not reorder the quantiles
    return Published(contributors=contributors_band(n), figures=figures, withheld=tuple(withheld))


def figure_interval(figure: float, rules: Rules) -> tuple[float, float]:
    """The true values a published figure can stand for: its rounding step, then the noise bound.

    This is what anyone can work out from a figure and the published rules.
    """
    if figure == 0 or not math.isfinite(figure):
        return (figure, figure)
    step = 10 ** (math.floor(math.log10(abs(figure))) - rules.significant_digits + 1)
    lo, hi = figure - step / 2, figure + step / 2
    return lo / (1 + rules.noise), hi / (1 - rules.noise)


def spread_ok(xs: Sequence[float], window: range, figure: float, rules: Rules) -> bool:
    """Whether a published mean of the sorted ``xs[window]`` keeps every value at least p % uncertain.

    Anyone knows that the largest value of a window (and all above it) is at least the
    window's mean, and the smallest (and all below) at most the mean. With the figure's
    interval [a, b], the values from the window's top up are known to be at least ``a``
    and those from its bottom down at most ``b``: the top must lie p % above ``a``, the
    bottom p % below ``b``. Values nearer the middle are bounded by these or by the
    neighbouring windows in the same way. The same must hold for the rest of the window
    after one or two contributors take out their own values (an insider, a coalition):
    the worst cases take out the smallest, the largest, or one of each.
    """
    a, b = figure_interval(figure, rules)
    values = [xs[i] for i in window]
    m = len(values)
    p = rules.p_percent
    # nobody, and no one or two contributors knowing their own values, may bound the rest within p %
    for removed in ((), (0,), (m - 1,), (0, 1), (0, m - 1), (m - 2, m - 1)):
        if m - len(removed) < 2:
            continue
        known = math.fsum(values[i] for i in removed)
        rest = [v for i, v in enumerate(values) if i not in removed]
        lo, hi = (m * a - known) / len(rest), (m * b - known) / len(rest)
        if not (lo <= (1 - p) * max(rest) and hi >= (1 + p) * min(rest)):
            return False
    return True


def differencing_problem(
    groups: frozenset[str],
    overlapping: Iterable[frozenset[str]],
    rules: Rules,
) -> bool:
    """Whether a cell with contributor set ``groups`` may not be published beside the ``overlapping`` published ones.

    Two published cells of nested or overlapping periods whose sets differ by a few
    contributors would let anyone subtract one from the other; their sets must be equal
    or differ by at least ``differencing_min`` contributors.
    """
    return any(0 < len(groups ^ other) < rules.differencing_min for other in overlapping)


def band(value: float, figures: Mapping[str, float]) -> str:
    """Where ``value`` lies among the published quantiles (the mean where there are none), low to high.

    Bands are named after their edges: ``below_p25``, ``p25_median``, ``above_p75``; a
    value equal to an edge belongs to the band above it.
    """
    edges = [(name, figures[name]) for name, _ in QUANTILES if name in figures] or [("mean", figures["mean"])]
    previous: str | None = None
    for name, edge in edges:
        if value < edge:
            return f"below_{name}" if previous is None else f"{previous}_{name}"
        previous = name
    return f"above_{previous}"
