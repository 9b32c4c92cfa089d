"""How many released cells a member needs to pin one competitor's value by shaping its own input gradually.

The attack (no rule survives it forever, so it is measured): ten contributors in one
peer group, the other nine constant every day; the attacker moves its own daily value
slowly up and down (a triangle wave that stays inside the plausibility rule: within a
factor 2 of its own 14-day median and a factor 4 of the peer median). The published
median is the mean of the five middle values, so as the attacker's value crosses the
others' values the median follows it with slope 1/5 between two kinks, the third and the
eighth smallest of the others' values. The attacker averages the published medians per
value it used and fits that clamp model; it has pinned a competitor once the fitted kink
lies within ±p % of the true value at five checks in a row.

Baseline in the same run: the same attacker against the same rules without the keyed
noise and without rounding (``noise 0``, 15 significant digits).

Prints one JSON line: cells (days) needed with and without the protection.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time

import _common  # noqa: F401  (the import path)
import numpy as np

from api.core.disclosure import Contribution, Published, Rules, plausible, publish

MAX_DAYS = 40_000
TIME_LIMIT_S = 15.0
KEY = b"benchmark-cell-key-0123456789abc"


def run(rules: Rules, seed: int) -> dict[str, int | bool]:
    rng = random.Random(seed)
    others = sorted(2.0 * math.exp(0.4 * rng.gauss(0, 1)) for _ in range(9))
    target = others[2]  # the lower kink
    peer_median = statistics.median(others)
    lo, hi = peer_median / 1.9, peer_median * 1.9
    history: list[float] = []
    sums: dict[float, list[float]] = {}
    grid = np.linspace(lo, hi, 40)
    streak = 0
    started = time.perf_counter()
    for day in range(MAX_DAYS):
        if time.perf_counter() - started > TIME_LIMIT_S:
            return {"pinned": False, "cells": day}
        phase = (day % 240) / 120.0  # 240-day triangle: slow enough for the drift rule
        v = round(lo + (hi - lo) * (phase if phase <= 1 else 2 - phase), 3)
        own_history = statistics.median(history[-14:]) if history else None
        me = Contribution(group="me", value=v, totals={"energy_kwh": 1.0}, history=own_history)
        cell = [Contribution(group=f"g{i}", value=x, totals={"energy_kwh": 1.0}) for i, x in enumerate(others)] + [me]
        kept, _ = plausible(cell, rules)
        history.append(v)
        if len(kept) < 10:
            continue  # the attacker's value was excluded: the day shows no median
        result = publish(kept, ["energy_kwh"], rules, key=KEY, cell_id=f"day-{day}")
        if not isinstance(result, Published) or "median" not in result.figures:
            continue
        sums.setdefault(v, []).append(result.figures["median"])
        if day % 60 or len(sums) < 10:
            continue
        xs = np.array(sorted(sums))
        ys = np.array([statistics.fmean(sums[x]) for x in xs])
        ws = np.array([len(sums[x]) for x in xs])
        best = (math.inf, 0.0)
        for a in grid:
            for b in grid[grid > a]:
                clamp = np.clip(xs, a, b) / 5.0
                c = float(np.average(ys - clamp, weights=ws))  # the four others' sum / 5
                err = float(np.average((ys - clamp - c) ** 2, weights=ws))
                if err < best[0]:
                    best = (err, float(a))
        streak = streak + 1 if abs(best[1] - target) <= rules.p_percent * target else 0
        if streak >= 5:
            return {"pinned": True, "cells": day + 1}
    return {"pinned": False, "cells": MAX_DAYS}


def main() -> None:
    protected = Rules()
    bare = Rules(noise=0.0, significant_digits=15)
    seeds = [1, 2, 3]
    baseline = [run(bare, s) for s in seeds]
    with_rules = [run(protected, s) for s in seeds]
    print(
        json.dumps(
            {
                "benchmark": "disclosure_shaper",
                "peer_group": 10,
                "p_percent": protected.p_percent,
                "cells_to_pin_one_value_without_noise_and_rounding": baseline,
                "cells_to_pin_one_value_with_the_rules": with_rules,
                "limit_cells": MAX_DAYS,
                "note": "pinned false: not pinned after that many cells (the cell or time limit)",
            }
        )
    )


if __name__ == "__main__":
    main()
