"""Disclosure rules as tables of cases, and properties of the percentile method."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.disclosure import (
    Contribution,
    Distribution,
    Rules,
    Suppressed,
    check_cell,
    distribution,
    evaluate,
    percentile,
    rank_band,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
OLD_END = NOW - timedelta(days=30)
RULES = Rules(min_contributors=5, max_share_largest=0.33, max_share_two_largest=0.60, release_delay=timedelta(days=7))


def contributions(values: list[float], energy: list[float]) -> list[Contribution]:
    return [
        Contribution(group=f"g{i}", value=v, totals={"energy_kwh": e})
        for i, (v, e) in enumerate(zip(values, energy, strict=True))
    ]


def pooled_by_group(members: list[tuple[str, float, float]]) -> list[Contribution]:
    """Pool (group, energy, parts) member rows per group, value = energy / parts of the group."""
    groups: dict[str, tuple[float, float]] = {}
    for group, energy, parts in members:
        e, p = groups.get(group, (0.0, 0.0))
        groups[group] = (e + energy, p + parts)
    return [
        Contribution(group=g, value=e / p, totals={"energy_kwh": e, "parts_good": p}) for g, (e, p) in groups.items()
    ]


@pytest.mark.parametrize(
    ("case", "cell", "code"),
    [
        ("4 contributors", contributions([1, 2, 3, 4], [10, 10, 10, 10]), "too_few_contributors"),
        (
            "5 members of 4 groups",
            pooled_by_group([("g1", 10, 5), ("g1", 10, 5), ("g2", 10, 5), ("g3", 10, 5), ("g4", 10, 5)]),
            "too_few_contributors",
        ),
        ("one member at 40%", contributions([1, 2, 3, 4, 5, 6], [40, 12, 12, 12, 12, 12]), "dominance"),
        ("largest exactly 33% may publish", contributions([1, 2, 3, 4, 5], [33, 16.75, 16.75, 16.75, 16.75]), None),
        ("largest at 34%", contributions([1, 2, 3, 4, 5], [34, 16.5, 16.5, 16.5, 16.5]), "dominance"),
        ("two largest at 60%", contributions([1, 2, 3, 4, 5, 6, 7], [30, 30, 10, 10, 10, 5, 5]), "dominance"),
        ("two largest at 59%", contributions([1, 2, 3, 4, 5, 6, 7], [30, 29, 10, 10, 10, 6, 5]), None),
        ("5 equal groups", contributions([1, 2, 3, 4, 5], [20, 20, 20, 20, 20]), None),
        ("all totals zero: no dominance", contributions([0, 0, 0, 0, 0], [0, 0, 0, 0, 0]), None),
    ],
)
def test_rules_table(case: str, cell: list[Contribution], code: str | None) -> None:
    basis = sorted({k for c in cell for k in c.totals})
    result = check_cell(cell, basis, RULES, period_end=OLD_END, now=NOW)
    assert (result.code if result else None) == code, case


def test_dominance_in_any_basis_total_suppresses() -> None:
    cell = [
        Contribution(group=f"g{i}", value=1.0, totals={"energy_kwh": 10.0, "parts_good": p})
        for i, p in enumerate([50.0, 10.0, 10.0, 10.0, 10.0])
    ]
    assert check_cell(cell, ["energy_kwh"], RULES, period_end=OLD_END, now=NOW) is None
    result = check_cell(cell, ["energy_kwh", "parts_good"], RULES, period_end=OLD_END, now=NOW)
    assert result is not None and result.code == "dominance"


@pytest.mark.parametrize(
    ("period_end", "code"),
    [
        (NOW - timedelta(days=7), None),  # ended exactly the release delay ago
        (NOW - timedelta(days=6, hours=23), "not_released"),
        (NOW + timedelta(days=1), "not_released"),  # still open
    ],
)
def test_release_delay(period_end: datetime, code: str | None) -> None:
    cell = contributions([1, 2, 3, 4, 5], [20, 20, 20, 20, 20])
    result = check_cell(cell, ["energy_kwh"], RULES, period_end=period_end, now=NOW)
    assert (result.code if result else None) == code


def test_permitted_cell_equals_hand_computed_percentiles() -> None:
    cell = contributions([4.0, 1.0, 3.0, 2.0, 10.0, 6.0], [15, 15, 20, 15, 20, 15])
    dist = evaluate(cell, ["energy_kwh"], RULES, period_end=OLD_END, now=NOW)
    # sorted: 1 2 3 4 6 10; n-1 = 5; h = 5p
    assert dist == Distribution(
        contributors=6,
        p10=1.5,  # h = 0.5 -> 1 + 0.5 * (2 - 1)
        p25=2.25,  # h = 1.25 -> 2 + 0.25 * (3 - 2)
        median=3.5,  # h = 2.5 -> 3 + 0.5 * (4 - 3)
        p75=5.5,  # h = 3.75 -> 4 + 0.75 * (6 - 4)
        p90=8.0,  # h = 4.5 -> 6 + 0.5 * (10 - 6)
        mean=26.0 / 6,
    )


def test_suppressed_cell_carries_reason_and_no_numbers() -> None:
    result = evaluate(contributions([1, 2, 3, 4], [10, 10, 10, 10]), ["energy_kwh"], RULES, period_end=OLD_END, now=NOW)
    assert isinstance(result, Suppressed)
    assert result.reason == "fewer than 5 independent contributors"
    assert not any(ch.isdigit() for ch in result.reason.replace("5", ""))


def test_unpooled_groups_are_refused() -> None:
    cell = [
        Contribution(group="g1", value=1.0),
        Contribution(group="g1", value=2.0),
        *contributions([1, 2, 3], [1, 1, 1]),
    ]
    with pytest.raises(ValueError, match="pooled"):
        check_cell(cell, ["energy_kwh"], RULES, period_end=OLD_END, now=NOW)


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (0.5, "below_p10"),
        (1.5, "p10_p25"),
        (2.0, "p10_p25"),
        (2.25, "p25_median"),
        (3.6, "median_p75"),
        (7.0, "p75_p90"),
        (8.0, "above_p90"),
        (99.0, "above_p90"),
    ],
)
def test_rank_band(value: float, band: str) -> None:
    dist = Distribution(contributors=6, p10=1.5, p25=2.25, median=3.5, p75=5.5, p90=8.0, mean=4.3)
    assert rank_band(value, dist) == band


_values = st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=50)


@settings(max_examples=200, deadline=None)
@given(_values, st.randoms(use_true_random=False))
def test_percentiles_ordered_bounded_and_order_free(values: list[float], rnd: object) -> None:
    d = distribution(values)
    qs = [d.p10, d.p25, d.median, d.p75, d.p90]
    assert qs == sorted(qs)
    assert min(values) <= d.p10 and d.p90 <= max(values)
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert distribution(shuffled) == d


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e6)), min_size=5, max_size=12),
    st.floats(0.01, 1000),
)
def test_dominance_is_scale_free(energy: list[float], factor: float) -> None:
    cell = contributions(list(range(len(energy))), energy)
    scaled = contributions(list(range(len(energy))), [e * factor for e in energy])
    a = check_cell(cell, ["energy_kwh"], RULES, period_end=OLD_END, now=NOW)
    b = check_cell(scaled, ["energy_kwh"], RULES, period_end=OLD_END, now=NOW)
    shares = sorted((e / sum(energy) for e in energy), reverse=True) if sum(energy) > 0 else []
    near_edge = bool(shares) and (abs(shares[0] - 0.33) < 1e-9 or abs(shares[0] + shares[1] - 0.60) < 1e-9)
    if not near_edge:
        assert (a.code if a else None) == (b.code if b else None)


@given(st.integers(min_value=0, max_value=4))
def test_fewer_than_min_contributors_never_publish(n: int) -> None:
    cell = contributions([1.0] * n, [1.0] * n)
    assert isinstance(evaluate(cell, ["energy_kwh"], RULES, period_end=OLD_END, now=NOW), Suppressed)


def test_percentile_single_value() -> None:
    assert percentile([7.0], 0.9) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
