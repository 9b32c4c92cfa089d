"""How many released cells a member needs to pin one competitor's value by shaping its own input gradually.

Quantiles are published in weekly and monthly cells only (daily cells show the mean, which
has no kink to find), so the cells counted here are weeks: 52 a year.

The attack (no rule survives it forever, so it is measured): ten contributors in one
peer group, the other nine constant every day; the attacker moves its own daily value
slowly up and down (a triangle wave that stays inside the plausibility rule: within a
factor 2 of its own 8-week median and a factor 4 of the peer median). The published
median is the mean of the five middle values, so as the attacker's value crosses the
others' values the median follows it with slope 1/5 between two kinks, the third and the
eighth smallest of the others' values. The attacker averages the published medians per
value it used and fits that clamp model; it has pinned a competitor once the fitted kink
lies within ±p % of the true value from some cell on until the end of the run (2,000
cells; a check every five cells): the cells it needed are that first cell.

Baseline in the same run: the same attacker against the publication these rules replaced,
an exact type-7 median (for ten values the mean of the fifth and sixth; its kinks lie at
the fourth and sixth smallest of the others).

Prints one JSON line: cells (days) needed with and without the protection.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time

import _common  # noqa: F401  (the import path)
import numpy as np

from api.core.disclosure import Contribution, Published, Rules, plausible, publish

HORIZON = 2_000
TIME_LIMIT_S = 60.0
KEY = b"benchmark-cell-key-0123456789abc"


def type7_median(values: list[float]) -> float:
    xs = sorted(values)
    h = (len(xs) - 1) * 0.5
    lo = math.floor(h)
    return xs[lo] + (h - lo) * (xs[min(lo + 1, len(xs) - 1)] - xs[lo])


def run(rules: Rules | None, seed: int) -> dict[str, int | bool]:
    """``rules`` None: the old exact type-7 median."""
    rng = random.Random(seed)
    others = sorted(2.0 * math.exp(0.4 * rng.gauss(0, 1)) for _ in range(9))
    target = others[2] if rules is not None else others[3]  # the lower kink of each publication
    p_percent = rules.p_percent if rules is not None else Rules().p_percent
    judge = rules or Rules()
    peer_median = statistics.median(others)
    lo, hi = peer_median / 1.9, peer_median * 1.9
    history: list[float] = []
    sums: dict[float, list[float]] = {}
    grid = np.linspace(lo, hi, 48)
    hits: list[tuple[int, bool]] = []  # (cells seen, estimate within ±p %)
    started = time.perf_counter()
    for day in range(HORIZON):
        if time.perf_counter() - started > TIME_LIMIT_S:
            break
        phase = (day % 60) / 30.0  # a 60-day triangle: as fast as the drift rule lets it sweep
        v = round(lo + (hi - lo) * (phase if phase <= 1 else 2 - phase), 3)
        own_history = statistics.median(history[-8:]) if history else None  # 8 weeks, as the rules use
        me = Contribution(group="me", value=v, totals={"energy_kwh": 1.0}, history=own_history)
        cell = [Contribution(group=f"g{i}", value=x, totals={"energy_kwh": 1.0}) for i, x in enumerate(others)] + [me]
        kept, _ = plausible(cell, judge)
        history.append(v)
        if len(kept) < 10:
            continue  # the attacker's value was excluded: the day shows no median
        if rules is None:
            sums.setdefault(v, []).append(type7_median([c.value for c in kept]))
        else:
            result = publish(kept, ["energy_kwh"], rules, key=KEY, cell_id=f"day-{day}")
            if not isinstance(result, Published) or "median" not in result.figures:
                continue
            sums.setdefault(v, []).append(result.figures["median"])
        if day % 5 or len(sums) < 10:
            continue
        xs = np.array(sorted(sums))
        ys = np.array([statistics.fmean(sums[x]) for x in xs])
        ws = np.array([len(sums[x]) for x in xs])
        # y = slope * clip(x, a, b) + offset for every kink pair (a < b) at once, weighted least squares
        a_, b_ = np.meshgrid(grid, grid, indexing="ij")
        keep = a_ < b_
        a_, b_ = a_[keep][:, None], b_[keep][:, None]
        clipped = np.clip(xs[None, :], a_, b_)
        w = ws / ws.sum()
        mx = clipped @ w
        my = float(ys @ w)
        cov = ((clipped - mx[:, None]) * (ys - my)[None, :]) @ w
        var = ((clipped - mx[:, None]) ** 2) @ w
        slope = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
        resid = ys[None, :] - (my + slope[:, None] * (clipped - mx[:, None]))
        err = (resid**2) @ w
        best = (float(err.min()), float(a_[int(err.argmin()), 0]))
        hits.append((day + 1, abs(best[1] - target) <= p_percent * target))
    if not hits or not hits[-1][1]:
        return {"pinned": False, "cells": hits[-1][0] if hits else 0}
    first = len(hits) - 1
    while first > 0 and hits[first - 1][1]:
        first -= 1
    return {"pinned": True, "cells": hits[first][0]}


def main() -> None:
    protected = Rules(noise=float(sys.argv[1])) if len(sys.argv) > 1 else Rules()
    seeds = [1, 2, 3, 4, 5]
    baseline = [run(None, s) for s in seeds]
    with_rules = [run(protected, s) for s in seeds]
    print(
        json.dumps(
            {
                "benchmark": "disclosure_shaper",
                "peer_group": 10,
                "p_percent": protected.p_percent,
                "cell_noise": protected.noise,
                "cells_to_pin_one_value_exact_type7_median": baseline,
                "cells_to_pin_one_value_with_the_rules": with_rules,
                "horizon_cells": HORIZON,
                "note": (
                    "cells are weekly (52 a year) for the rules, daily for the old median; "
                    "pinned false: the estimate was not within ±p % at the end of the horizon"
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
