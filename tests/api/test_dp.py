"""Differential-privacy mechanisms and the budget ledger."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.dp import BudgetLedger, dp_percentile, laplace, noisy_count, private_figures


def test_laplace_has_the_right_spread() -> None:
    rng = random.Random(7)
    draws = [laplace(2.0, rng) for _ in range(40_000)]
    assert abs(statistics.fmean(draws)) < 0.05
    # E|X| = scale for Laplace(0, scale)
    assert statistics.fmean(abs(d) for d in draws) == pytest.approx(2.0, rel=0.03)


def test_noisy_count_is_unbiased_and_noisier_at_small_epsilon() -> None:
    rng = random.Random(11)
    wide = [noisy_count(10, 0.1, rng) for _ in range(5000)]
    tight = [noisy_count(10, 10.0, rng) for _ in range(5000)]
    assert statistics.fmean(wide) == pytest.approx(10, abs=0.6)
    assert statistics.pstdev(wide) > 50 * statistics.pstdev(tight)


def test_exponential_mechanism_median_concentrates_at_high_epsilon() -> None:
    rng = random.Random(3)
    values = [float(v) for v in range(1, 102)]  # true median 51
    picks = [dp_percentile(values, 0.5, 0.0, 200.0, 20.0, rng) for _ in range(300)]
    assert abs(statistics.median(picks) - 51) < 2


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=-50, max_value=500, allow_nan=False), min_size=0, max_size=30),
    st.floats(min_value=0.01, max_value=5),
    st.integers(min_value=0, max_value=2**32),
)
def test_private_figures_stay_in_clip_bounds_ordered_and_say_their_noise(
    values: list[float], eps: float, seed: int
) -> None:
    names = ["p10", "p25", "median", "p75", "p90"]
    figures, noise = private_figures(values, names, 0.0, 100.0, eps, random.Random(seed))
    qs = [figures[n] for n in names]
    assert qs == sorted(qs)
    assert all(0.0 <= q <= 100.0 for q in [*qs, figures["mean"]])
    assert set(noise) == {*names, "mean"}
    assert "Laplace" in noise["mean"] and "exponential mechanism" in noise["median"]


def test_private_figures_only_the_figures_asked_for() -> None:
    figures, noise = private_figures([1.0, 2.0, 3.0, 4.0, 5.0], ["median"], 0.0, 10.0, 1.0, random.Random(1))
    assert set(figures) == set(noise) == {"mean", "median"}


def test_ledger_refuses_what_exceeds_the_budget(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "budget.json", budget=1.0)
    assert ledger.charge("tk-a", 0.4) is not None
    spend = ledger.charge("tk-a", 0.6)
    assert spend is not None and spend.remaining == pytest.approx(0.0)
    assert ledger.charge("tk-a", 0.01) is None
    assert ledger.spent("tk-a") == pytest.approx(1.0)  # the refused charge recorded nothing
    assert ledger.charge("tk-b", 1.0) is not None  # budgets are per analyst
    # persisted across instances (API restarts)
    assert BudgetLedger(tmp_path / "budget.json", budget=1.0).spent("tk-a") == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1.0), max_size=30))
def test_ledger_never_exceeds_budget(charges: list[float]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ledger = BudgetLedger(Path(d) / "b.json", budget=2.0)
        for c in charges:
            ledger.charge("tk-x", c)
        assert ledger.spent("tk-x") <= 2.0 + 1e-9
