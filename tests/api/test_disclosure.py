"""Disclosure rules as tables of cases at every boundary, and properties of the published figures."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.disclosure import (
    Contribution,
    Published,
    Rules,
    Suppressed,
    band,
    contributors_band,
    differencing_problem,
    dominance_problem,
    keyed_unit,
    p_percent_ok,
    plausible,
    publish,
    published_quantiles,
    quantile_windows,
    round_significant,
)

RULES = Rules()
KEY = b"k" * 32


def contributions(values: list[float], energy: list[float]) -> list[Contribution]:
    return [
        Contribution(group=f"g{i}", value=v, totals={"energy_kwh": e})
        for i, (v, e) in enumerate(zip(values, energy, strict=True))
    ]


def spread(n: int) -> list[Contribution]:
    """``n`` contributors of equal weight with values 1, 1.25, 1.25², ... (each 25 % above the one before)."""
    return contributions([1.25**i for i in range(n)], [1.0] * n)


def outcome(cell: list[Contribution], rules: Rules = RULES) -> str:
    result = publish(cell, sorted({k for c in cell for k in c.totals}), rules, key=KEY, cell_id="t")
    return "published" if isinstance(result, Published) else result.code


@pytest.mark.parametrize(
    ("case", "cell", "code"),
    [
        ("4 contributors", spread(4), "too_few_contributors"),
        ("5 contributors", spread(5), "published"),
        ("largest exactly 33 %", contributions([1, 2, 3, 4, 5], [33, 16.75, 16.75, 16.75, 16.75]), "published"),
        ("largest at 34 %", contributions([1, 2, 3, 4, 5], [34, 16.5, 16.5, 16.5, 16.5]), "dominance"),
        ("two largest at 59.9 %", contributions([1, 2, 3, 4, 5, 6, 7], [30, 29.9, 10, 10, 10, 5.1, 5]), "published"),
        ("two largest at 60 %", contributions([1, 2, 3, 4, 5, 6, 7], [30, 30, 10, 10, 10, 5, 5]), "dominance"),
        ("5 equal groups", contributions([1, 2, 3, 4, 5], [20, 20, 20, 20, 20]), "published"),
        ("all totals zero: no dominance", contributions([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]), "published"),
    ],
)
def test_cell_gate_table(case: str, cell: list[Contribution], code: str) -> None:
    assert outcome(cell) == code, case


@pytest.mark.parametrize(
    ("amounts", "p", "ok"),
    [
        ([10, 5, 1], 0.10, True),  # rest 1 = 10 % of the largest: just enough
        ([10, 5, 0.99], 0.10, False),
        ([10, 9], 0.10, False),  # two contributors: the second knows the first exactly
        ([10, 5, 1.9], 0.20, False),
        ([10, 5, 2.0], 0.20, True),
        ([0, 0, 0], 0.10, True),
    ],
)
def test_p_percent_rule_table(amounts: list[float], p: float, ok: bool) -> None:
    assert p_percent_ok(amounts, p) is ok


def test_p_percent_rule_suppresses_a_cell_that_passes_the_shares() -> None:
    # many small ones besides two of 30 % and 29 %: shares fine; the rest is far above 10 % of the largest
    cell = contributions([1, 2, 3, 4, 5, 6], [30, 29, 11, 10, 10, 10])
    assert outcome(cell) == "published"
    assert dominance_problem(cell, ["energy_kwh"], Rules(p_percent=1.5)) == "energy_kwh"


@pytest.mark.parametrize(
    ("n", "quantiles", "band_"),
    [
        (5, (), "5–9"),
        (9, (), "5–9"),
        (10, ("median",), "10–19"),
        (19, ("median",), "10–19"),
        (20, ("p25", "median", "p75"), "20–49"),
        (29, ("p25", "median", "p75"), "20–49"),
        (30, ("p10", "p25", "median", "p75", "p90"), "20–49"),
        (49, ("p10", "p25", "median", "p75", "p90"), "20–49"),
        (50, ("p10", "p25", "median", "p75", "p90"), "50+"),
    ],
)
def test_tiers_table(n: int, quantiles: tuple[str, ...], band_: str) -> None:
    assert published_quantiles(n) == quantiles
    assert contributors_band(n) == band_
    result = publish(spread(n), ["energy_kwh"], RULES, key=KEY, cell_id="t")
    assert isinstance(result, Published)
    assert set(result.figures) == {"mean", *quantiles}
    assert result.contributors == band_


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=5, max_value=400))
def test_windows_never_overlap_and_hold_m_values(n: int) -> None:
    windows = quantile_windows(n, published_quantiles(n), 5)
    taken: set[int] = set()
    for name, w in windows.items():
        assert len(w) == 5 and w.start >= 0 and w.stop <= n, name
        assert not taken & set(w)
        taken |= set(w)
    assert list(windows) == [q for q in published_quantiles(n) if q in windows]
    assert set(windows) == set(published_quantiles(n))  # every tier's quantile fits


def test_quantile_is_mean_of_its_window_within_noise_and_rounding() -> None:
    values = [float(v) for v in (3, 9, 1, 7, 5, 11, 13, 2, 8, 6)]  # n = 10: mean and median
    cell = contributions(values, [1.0] * 10)
    result = publish(cell, ["energy_kwh"], RULES, key=KEY, cell_id="t")
    assert isinstance(result, Published)
    xs = sorted(values)
    window = quantile_windows(10, ("median",), 5)["median"]
    median_window = sum(xs[i] for i in window) / 5  # rank 4.5: xs[3..7] = 5, 6, 7, 8, 9
    assert window == range(3, 8) and median_window == 7.0
    for name, truth in (("median", median_window), ("mean", sum(values) / 10)):
        figure = result.figures[name]
        slack = RULES.noise * truth + 0.5 * 10 ** (math.floor(math.log10(truth)) - 1) + 1e-9
        assert abs(figure - truth) <= slack, name
        assert figure not in values, name  # never a contributor's own value here


def test_homogeneous_or_dominated_window_is_withheld() -> None:
    close = [10.0, 10.1, 10.2, 10.3, 10.4]
    values = [1.0, 2.0, 3.0, *close, 40.0, 50.0]  # median window xs[3..7] = the five close values
    result = publish(contributions(values, [1.0] * 10), ["energy_kwh"], RULES, key=KEY, cell_id="t")
    assert isinstance(result, Published)
    assert "median" not in result.figures and result.withheld == ("median",)


def test_figures_are_deterministic_per_cell_and_contributor_set() -> None:
    a = publish(spread(12), ["energy_kwh"], RULES, key=KEY, cell_id="c1")
    b = publish(list(reversed(spread(12))), ["energy_kwh"], RULES, key=KEY, cell_id="c1")
    c = publish(spread(12), ["energy_kwh"], RULES, key=b"x" * 32, cell_id="c1")
    assert a == b
    assert isinstance(a, Published) and isinstance(c, Published)
    assert a.figures != c.figures or a.figures == {}  # another key, other noise


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.text(max_size=10))
def test_keyed_unit_is_bounded(key: bytes, part: str) -> None:
    assert -1.0 <= keyed_unit(key, part) < 1.0


@pytest.mark.parametrize(
    ("x", "digits", "rounded"),
    [(1234.5, 2, 1200.0), (0.012345, 2, 0.012), (0.98, 2, 0.98), (0.0, 2, 0.0), (-15.5, 2, -16.0), (999.0, 2, 1000.0)],
)
def test_round_significant_table(x: float, digits: int, rounded: float) -> None:
    assert round_significant(x, digits) == pytest.approx(rounded)


@pytest.mark.parametrize(
    ("a", "b", "problem"),
    [
        ({"g1", "g2", "g3", "g4", "g5"}, {"g1", "g2", "g3", "g4", "g5"}, False),  # equal
        ({f"g{i}" for i in range(6)}, {f"g{i}" for i in range(5)}, True),  # differ by 1
        ({f"g{i}" for i in range(9)}, {f"g{i}" for i in range(5)}, True),  # differ by 4
        ({f"g{i}" for i in range(10)}, {f"g{i}" for i in range(5)}, False),  # differ by 5
    ],
)
def test_differencing_table(a: set[str], b: set[str], problem: bool) -> None:
    assert differencing_problem(frozenset(a), [frozenset(b)], RULES) is problem


@pytest.mark.parametrize(
    ("value", "history", "scale", "kept"),
    [
        (1.0, None, "ratio", True),
        (4.0, None, "ratio", True),  # exactly the peer factor from the median 1.0
        (4.01, None, "ratio", False),
        (0.2499, None, "ratio", False),
        (0.0, None, "ratio", False),  # parts without energy
        (1.9, 1.0, "ratio", True),
        (2.01, 1.0, "ratio", False),  # jumped from its own history
        (0.45, 0.5, "share", True),
        (0.9, 0.5, "share", False),  # utilisation 0.5 -> 0.9: beyond the drift distance
    ],
)
def test_plausibility_table(value: float, history: float | None, scale: str, kept: bool) -> None:
    others = [Contribution(group=f"g{i}", value=1.0 if scale == "ratio" else 0.5) for i in range(6)]
    me = Contribution(group="me", value=value, history=history)
    ok, excluded = plausible([*others, me], RULES, scale)  # type: ignore[arg-type]
    assert (me in ok) is kept
    assert (len(excluded) == 0) is kept


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, "below_p10"),
        (2.0, "p10_p25"),
        (2.5, "p25_median"),
        (3.6, "median_p75"),
        (7.0, "p75_p90"),
        (8, "above_p90"),
    ],
)
def test_band_among_all_quantiles(value: float, expected: str) -> None:
    figures = {"p10": 1.5, "p25": 2.25, "median": 3.5, "p75": 5.5, "p90": 8.0, "mean": 4.3}
    assert band(value, figures) == expected


@pytest.mark.parametrize(
    ("figures", "value", "expected"),
    [
        ({"mean": 4.0}, 3.9, "below_mean"),
        ({"mean": 4.0}, 4.0, "above_mean"),  # on the edge: the band above
        ({"mean": 4.0, "median": 3.0}, 3.5, "above_median"),
        ({"mean": 4.0, "median": 3.0}, 2.0, "below_median"),
    ],
)
def test_band_from_published_figures_only(figures: dict[str, float], value: float, expected: str) -> None:
    assert band(value, figures) == expected


def test_suppressed_cell_carries_reason_and_no_numbers() -> None:
    result = publish(spread(4), ["energy_kwh"], RULES, key=KEY, cell_id="t")
    assert isinstance(result, Suppressed)
    assert result.reason == "fewer than 5 independent contributors"


def test_unpooled_groups_are_refused() -> None:
    cell = [Contribution(group="g1", value=1.0), Contribution(group="g1", value=2.0), *spread(4)]
    with pytest.raises(ValueError, match="pooled"):
        publish(cell, ["energy_kwh"], RULES, key=KEY, cell_id="t")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1e6), min_size=5, max_size=60))
def test_published_quantiles_are_ordered_and_no_raw_order_statistic(values: list[float]) -> None:
    cell = contributions(values, [1.0] * len(values))
    result = publish(cell, ["energy_kwh"], Rules(noise=0.0, significant_digits=15), key=KEY, cell_id="t")
    if isinstance(result, Suppressed):  # only where the mean would bound the outermost values within p %
        assert result.code == "homogeneous"
        xs = sorted(values)
        n, p = len(xs), RULES.p_percent
        # some set of up to two contributors, taking out their own values, bounds the rest within p %
        outs = [(), (0,), (n - 1,), (0, 1), (0, n - 1), (n - 2, n - 1)]
        rests = [[x for i, x in enumerate(xs) if i not in out] for out in outs]
        assert any(max(r) < (sum(r) / len(r)) / (1 - p) or min(r) > (sum(r) / len(r)) / (1 + p) for r in rests)
        return
    qs = [result.figures[q] for q in ("p10", "p25", "median", "p75", "p90") if q in result.figures]
    assert qs == sorted(qs)
    xs = sorted(values)
    for name, w in quantile_windows(len(xs), published_quantiles(len(xs)), 5).items():
        if name in result.figures:  # the mean of five sorted values, not one of them unless they are all equal
            assert result.figures[name] == pytest.approx(sum(xs[i] for i in w) / 5, rel=1e-9)
