"""Competitors' attacks on published benchmark cells, each solved as a linear feasibility problem.

The attacker knows everything a published cell shows and more than it is told: the
exact number of contributors and the rules (window positions, tiers, the noise bound,
the rounding); an insider or a coalition also knows its own values. It knows that
values are not negative. It does not know its rank beyond what the figures say, so
it considers every rank of its own values consistent with them. For every other
contributor's value (by rank among the others) it minimises and maximises that value
subject to all of this (scipy's HiGHS), over the ranks it considers. The assertion of
every attack: the range reaches p % below and p % above the true value, so no value
is recoverable within ±p %. (Ranks are tried nearest the true ones first; trying
fewer ranks can only narrow the attacker's range, so stopping once every value is
covered is sound.)

Peer values are drawn log-normally with a spread (sigma 0.2–0.7) as seen between
companies' energy and scrap figures; for tighter groups the rules withhold the
figures whose windows' values lie too close together (``spread_ok``).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from api.core.cells import release
from api.core.disclosure import (
    Contribution,
    Published,
    Rules,
    figure_interval,
    plausible,
    publish,
    published_quantiles,
    quantile_windows,
)

RULES = Rules()
P = RULES.p_percent
KEY = b"trustee-secret-key-for-tests-000"


def cell_of(values: Sequence[float]) -> list[Contribution]:
    return [Contribution(group=f"g{i:03d}", value=v, totals={"energy_kwh": 1.0}) for i, v in enumerate(values)]


def interval(figure: float, rules: Rules) -> tuple[float, float]:
    """The true figures consistent with a published one: its rounding step, then the noise bound."""
    return figure_interval(figure, rules)


@dataclass
class Constraints:
    """Linear constraints over the sorted values y_0 <= ... <= y_{n-1} of one cell."""

    n: int
    a_ub: list[list[float]]
    b_ub: list[float]
    a_eq: list[list[float]]
    b_eq: list[float]

    @classmethod
    def sorted_nonnegative(cls, n: int) -> Constraints:
        c = cls(n=n, a_ub=[], b_ub=[], a_eq=[], b_eq=[])
        for i in range(n - 1):  # y_i - y_{i+1} <= 0
            row = [0.0] * n
            row[i], row[i + 1] = 1.0, -1.0
            c.a_ub.append(row)
            c.b_ub.append(0.0)
        return c

    def mean_of(self, indices: Sequence[int], lo: float, hi: float, offset: int = 0, width: int | None = None) -> None:
        width = self.n if width is None else width
        row = [0.0] * width
        for i in indices:
            row[offset + i] = 1.0 / len(indices)
        self.a_ub.append(row)
        self.b_ub.append(hi)
        self.a_ub.append([-v for v in row])
        self.b_ub.append(-lo)

    def fix(self, index: int, value: float) -> None:
        row = [0.0] * self.n
        row[index] = 1.0
        self.a_eq.append(row)
        self.b_eq.append(value)


def add_cell(c: Constraints, published: Published, n: int, rules: Rules) -> None:
    lo, hi = interval(published.figures["mean"], rules)
    c.mean_of(range(n), lo, hi)
    windows = quantile_windows(n, published_quantiles(n), rules.window)
    for name, window in windows.items():
        if name in published.figures:
            lo, hi = interval(published.figures[name], rules)
            c.mean_of(window, lo, hi)


def ranges(c: Constraints, targets: Sequence[int], feasible_only: bool = False) -> dict[int, tuple[float, float]]:
    """Min and max of each target variable subject to the constraints (``None`` if infeasible and allowed)."""
    out: dict[int, tuple[float, float]] = {}
    bounds = [(0.0, None)] * c.n
    kwargs = {
        "A_ub": np.array(c.a_ub) if c.a_ub else None,
        "b_ub": np.array(c.b_ub) if c.b_ub else None,
        "A_eq": np.array(c.a_eq) if c.a_eq else None,
        "b_eq": np.array(c.b_eq) if c.b_eq else None,
        "bounds": bounds,
        "method": "highs",
    }
    for k in targets:
        obj = np.zeros(c.n)
        obj[k] = 1.0
        low = linprog(obj, **kwargs)
        if low.status == 2 and feasible_only:
            return None  # type: ignore[return-value]
        assert low.status == 0, f"the true values must be feasible: {low.message}"
        high = linprog(-obj, **kwargs)
        top = math.inf if high.status == 3 else -high.fun  # 3: unbounded above
        assert high.status in (0, 3), high.message
        out[k] = (low.fun, top)
    return out


def attack(values: Sequence[float], add: list[Published], known: Sequence[int]) -> None:
    """The insider / coalition attack: ``known`` are the true ranks of the attacker's own values."""
    n = len(values)
    others = [k for k in range(n) if k not in known]
    lows: dict[int, float] = {}
    highs: dict[int, float] = {}
    truth = [values[k] for k in others]

    def covered(j: int) -> bool:
        return (
            lows.get(j, math.inf) <= truth[j] * (1 - P) + 1e-9 and highs.get(j, -math.inf) >= truth[j] * (1 + P) - 1e-9
        )

    own = sorted(values[k] for k in known)
    candidates = sorted(
        itertools.combinations(range(n), len(known)),
        key=lambda ps: sum(abs(p - k) for p, k in zip(ps, known, strict=True)),
    )
    for positions in candidates:
        pending = [j for j in range(len(others)) if not covered(j)]
        if not pending:
            return
        c = Constraints.sorted_nonnegative(n)
        for cell in add:
            add_cell(c, cell, n, RULES)
        for q, v in zip(positions, own, strict=True):
            c.fix(q, v)
        free = [k for k in range(n) if k not in positions]
        found = ranges(c, [free[j] for j in pending], feasible_only=True)
        if found is None:
            continue  # the attacker's values cannot sit at these ranks: the figures rule it out
        for j in pending:
            lo, hi = found[free[j]]
            lows[j] = min(lows.get(j, math.inf), lo)
            highs[j] = max(highs.get(j, -math.inf), hi)
    assert_not_recoverable(truth, {j: (lows[j], highs[j]) for j in range(len(others))})


def assert_not_recoverable(truth: Sequence[float], found: dict[int, tuple[float, float]]) -> None:
    for k, (lo, hi) in found.items():
        v = truth[k]
        assert lo <= v * (1 - P) + 1e-9 and hi >= v * (1 + P) - 1e-9, (
            f"rank {k}: value {v:.4g} pinned to [{lo:.4g}, {hi:.4g}], narrower than ±{P:.0%}"
        )


def peer_values(n: int, sigma: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(2.0 * math.exp(sigma * rng.gauss(0, 1)) for _ in range(n))


def released(values: Sequence[float], cell_id: str = "c", rules: Rules = RULES) -> Published:
    result = publish(cell_of(values), ["energy_kwh"], rules, key=KEY, cell_id=cell_id)
    assert isinstance(result, Published)
    return result


def released_or_none(values: Sequence[float]) -> Published | None:
    """The published cell, or ``None`` when the rules suppress it (then the attacker sees no figure at all)."""
    result = publish(cell_of(values), ["energy_kwh"], RULES, key=KEY, cell_id="c")
    event("published" if isinstance(result, Published) else f"suppressed: {result.code}")
    return result if isinstance(result, Published) else None


def test_the_rules_still_publish_most_cells_of_a_realistic_peer_group() -> None:
    """Usefulness: the protection must not come from suppressing everything."""
    outcomes = [
        publish(cell_of(peer_values(n, 0.4, seed)), ["energy_kwh"], RULES, key=KEY, cell_id="c")
        for n in (5, 8, 12, 25, 40)
        for seed in range(40)
    ]
    assert sum(isinstance(o, Published) for o in outcomes) >= 0.8 * len(outcomes)


attack_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.integers(min_value=5, max_value=50)
sigmas = st.floats(min_value=0.2, max_value=0.7)
seeds = st.integers(min_value=0, max_value=2**31)


@pytest.mark.parametrize("n", [5, 6, 7, 9, 10, 19, 20, 29, 30, 50])
def test_exact_reconstruction_from_one_cell_fails_at_every_size(n: int) -> None:
    """The n = 5 attack: p25, median, p75 were three values and p10, p90 with the mean gave the rest."""
    values = peer_values(n, 0.45, seed=n)
    c = Constraints.sorted_nonnegative(n)
    add_cell(c, released(values), n, RULES)
    assert_not_recoverable(values, ranges(c, range(n)))


@attack_settings
@given(sizes, sigmas, seeds)
def test_any_token_recovers_no_value(n: int, sigma: float, seed: int) -> None:
    values = peer_values(n, sigma, seed)
    cell = released_or_none(values)
    if cell is None:
        return
    c = Constraints.sorted_nonnegative(n)
    add_cell(c, cell, n, RULES)
    assert_not_recoverable(values, ranges(c, range(n)))


@attack_settings
@given(sizes, sigmas, seeds, st.data())
def test_insider_with_its_own_value_and_rank_recovers_no_other(
    n: int, sigma: float, seed: int, data: st.DataObject
) -> None:
    values = peer_values(n, sigma, seed)
    me = data.draw(st.integers(min_value=0, max_value=n - 1))
    cell = released_or_none(values)
    if cell is not None:
        attack(values, [cell], [me])


@attack_settings
@given(sizes, sigmas, seeds, st.data())
def test_coalition_of_two_pooling_values_recovers_no_other(
    n: int, sigma: float, seed: int, data: st.DataObject
) -> None:
    values = peer_values(n, sigma, seed)
    pair = data.draw(st.lists(st.integers(min_value=0, max_value=n - 1), min_size=2, max_size=2, unique=True))
    cell = released_or_none(values)
    if cell is not None:
        attack(values, [cell], sorted(pair))


def test_differencing_day_week_month_with_one_contributor_missing() -> None:
    """Six contributors on day 0, five on days 1-6 (one absent): 6·mean - Σ5 gave the absent one exactly.

    Here the rules release the days; the week and the month, whose sets differ from the days' by one
    contributor, are suppressed (``differencing``). The attacker, a member among the five, assumes every
    value constant over the week and uses every published cell.
    """
    values = peer_values(6, 0.5, seed=0)
    absent = 5
    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    days = [start + timedelta(days=d) for d in range(7)]
    by_day = {d: cell_of(values if i == 0 else values[:absent]) for i, d in enumerate(days)}
    common = {"kpi": "energy_per_good_part_kwh", "asset_class": "press", "rules": RULES, "key": KEY, "now": start}
    day_cells = release(by_day, period="day", starts=days, overlapping=[], **common).cells  # type: ignore[arg-type]
    assert [c.status for c in day_cells] == ["published"] * 7
    week = release({start: cell_of(values)}, period="week", starts=[start], overlapping=day_cells, **common)
    month_start = datetime(2026, 3, 1, tzinfo=UTC)
    month = release(
        {month_start: cell_of(values)},
        period="month",
        starts=[month_start],
        overlapping=[*day_cells, *week.cells],
        **common,  # type: ignore[arg-type]
    )
    assert week.cells[0].reason_code == "differencing" and month.cells[0].reason_code == "differencing"

    # the attacker: contributor 0 (one of the five); unknowns x1..x5 (x5 absent after day 0), values constant
    c = Constraints(n=6, a_ub=[], b_ub=[], a_eq=[], b_eq=[])
    for i, cell in enumerate(day_cells):
        members = range(6) if i == 0 else range(absent)
        lo, hi = interval(cell.figures["mean"], RULES)
        c.mean_of(list(members), lo, hi)
    c.fix(0, values[0])
    assert_not_recoverable(values, ranges(c, range(1, 6)))


def test_jumping_contribution_is_excluded_and_the_shaper_learns_nothing() -> None:
    """A member adds an asset with parts only on one day (its value falls far below the others) and an
    energy-only asset on another (far above). Solving both cells together gave all nine other values at n = 10.
    The plausibility rule leaves the jumping contribution out; what is published pins nothing."""
    others = peer_values(9, 0.35, seed=11)
    mine_usual = 2.0
    history = mine_usual
    cells = []
    for jump in (0.02, 40.0):  # parts only: ~0 kWh per part; energy only: huge
        me = Contribution(group="me", value=jump, totals={"energy_kwh": 1.0}, history=history)
        contributions = [*cell_of(others), me]
        kept, excluded = plausible(contributions, RULES)
        assert [e.group for e in excluded] == ["me"]
        cells.append(released([c.value for c in kept]))
    c = Constraints.sorted_nonnegative(9)
    for cell in cells:
        assert set(cell.figures) == {"mean"}  # nine left: below the median's tier
        add_cell(c, cell, 9, RULES)
    assert_not_recoverable(others, ranges(c, range(9)))


def test_the_attack_finds_a_value_when_the_rules_are_off() -> None:
    """The procedure itself works: without noise, rounding and windows (type-7 quantiles of five values are three
    of the values) it pins them, so the passing attacks above are not vacuous."""
    values = peer_values(5, 0.45, seed=5)
    exact = Rules(noise=0.0, significant_digits=15)
    c = Constraints.sorted_nonnegative(5)
    # the old publication: the type-7 p25, median and p75 of five values are values 1, 2 and 3
    for k in (1, 2, 3):
        c.fix(k, values[k])
    lo, hi = interval(released(values, rules=exact).figures["mean"], exact)
    c.mean_of(range(5), lo, hi)
    found = ranges(c, [0, 4])
    with pytest.raises(AssertionError, match="pinned"):
        assert_not_recoverable(values, {k: found[k] for k in (0, 4)} | {1: (values[1], values[1])})
