"""Differential privacy for analyst benchmark answers (pure mechanisms + budget ledger).

The protected unit is the company (corporate group): each group contributes one
value per cell, clipped into ``[low, high]``. Adding or removing one group changes

* the count by at most 1 (Laplace noise with scale 1/eps),
* the clipped sum by at most max(|low|, |high|) (Laplace noise with that scale / eps),
* each percentile's rank utility by at most 1 (exponential mechanism, Smith 2011).

A cell's epsilon is split evenly over count, sum and the published quantiles, and the
cells of one answer compose sequentially (a company is in every period), so an
answer costs ``epsilon_per_cell x cells published``. :class:`BudgetLedger` keeps
what each analyst token has spent in a JSON file and refuses what would exceed the
budget.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .disclosure import QUANTILES


def laplace(scale: float, rng: random.Random) -> float:
    """One draw of Laplace(0, scale) by inverse transform."""
    u = rng.random() - 0.5
    while u == -0.5:  # log(0) guard
        u = rng.random() - 0.5
    return -scale * math.copysign(1.0, u) * math.log(1 - 2 * abs(u))


def clip(values: Sequence[float], low: float, high: float) -> list[float]:
    return [min(max(v, low), high) for v in values]


def noisy_count(n: int, epsilon: float, rng: random.Random) -> float:
    return n + laplace(1.0 / epsilon, rng)


def noisy_mean(clipped: Sequence[float], low: float, high: float, epsilon: float, rng: random.Random) -> float:
    """Noisy sum over noisy count (epsilon split between them), clamped into [low, high]."""
    half = epsilon / 2
    sensitivity = max(abs(low), abs(high))
    total = math.fsum(clipped) + laplace(sensitivity / half, rng)
    count = max(len(clipped) + laplace(1.0 / half, rng), 1.0)
    return min(max(total / count, low), high)


def dp_percentile(
    clipped: Sequence[float], p: float, low: float, high: float, epsilon: float, rng: random.Random
) -> float:
    """Exponential-mechanism percentile: pick an interval between sorted values with probability
    proportional to its width x exp(-eps |rank - p n| / 2), then a point uniformly inside it."""
    xs = [low, *sorted(clipped), high]
    n = len(clipped)
    target = p * n
    log_weights: list[float] = []
    for i in range(len(xs) - 1):
        width = xs[i + 1] - xs[i]
        utility = -abs(i - target)
        log_weights.append(math.log(width) + epsilon * utility / 2 if width > 0 else -math.inf)
    top = max(log_weights)
    if top == -math.inf:
        return low
    weights = [math.exp(w - top) for w in log_weights]
    pick = rng.random() * math.fsum(weights)
    acc = 0.0
    chosen = len(weights) - 1
    for i, w in enumerate(weights):
        acc += w
        if pick < acc and w > 0:
            chosen = i
            break
    return xs[chosen] + rng.random() * (xs[chosen + 1] - xs[chosen])


def private_figures(
    values: Sequence[float], names: Sequence[str], low: float, high: float, epsilon: float, rng: random.Random
) -> tuple[dict[str, float], dict[str, str]]:
    """Differentially private versions of the figures ``names`` (``mean`` and quantiles) at total ``epsilon``.

    Returns the figures and, per figure, what noise it carries and at which scale.
    """
    quantiles = [(name, p) for name, p in QUANTILES if name in names]
    eps = epsilon / (2 + len(quantiles))
    xs = clip(values, low, high)
    qs = sorted(dp_percentile(xs, p, low, high, eps, rng) for _, p in quantiles)  # keep them ordered
    figures = {name: q for (name, _), q in zip(quantiles, qs, strict=True)}
    figures["mean"] = noisy_mean(xs, low, high, 2 * eps, rng)
    sensitivity = max(abs(low), abs(high))
    noise = {
        name: f"exponential mechanism, epsilon {eps:.4g}, values clipped to [{low:g}, {high:g}]" for name in figures
    }
    noise["mean"] = (
        f"Laplace on the clipped sum (scale {sensitivity / eps:.4g}) over a Laplace-noised count (scale {1 / eps:.4g})"
    )
    return figures, noise


@dataclass(frozen=True, slots=True)
class Spend:
    spent: float
    remaining: float


class BudgetLedger:
    """Epsilon spent per analyst token, kept in a JSON file ``{"spent": {"tk-...": 1.5}}``."""

    def __init__(self, path: Path | str, budget: float) -> None:
        self.path = Path(path)
        self.budget = budget
        self._lock = threading.Lock()

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {str(k): float(v) for k, v in data.get("spent", {}).items()}

    def _write(self, spent: dict[str, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".budget-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"spent": spent}, fh)
        os.replace(tmp, self.path)

    def spent(self, token_id: str) -> float:
        with self._lock:
            return self._read().get(token_id, 0.0)

    def charge(self, token_id: str, epsilon: float) -> Spend | None:
        """Record ``epsilon`` against ``token_id``; ``None`` (and nothing recorded) if it would exceed the budget."""
        with self._lock:
            spent = self._read()
            now = spent.get(token_id, 0.0) + epsilon
            if now > self.budget + 1e-12:
                return None
            spent[token_id] = now
            self._write(spent)
            return Spend(spent=now, remaining=max(self.budget - now, 0.0))
