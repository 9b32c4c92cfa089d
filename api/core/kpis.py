"""KPIs per asset and period, computed with polars from hourly rollups (pure; see docs/kpis.md).

Input is a rollup frame (:data:`storage.ROLLUP_SCHEMA`): per (member, asset, hour)
the counter increases (already reset-safe), seconds per machine state and gauge
statistics. Per period (hour, day, week starting Monday, month; UTC) we sum the
additive quantities and derive:

* ``energy_per_good_part_kwh`` = energy / good parts
* ``co2e_per_good_part_kg``    = energy x emission factor of the member / good parts
* ``utilisation``              = running seconds / observed seconds (seconds with a known state)
* ``scrap_rate``               = scrap parts / all parts (capped at 1)
* ``good_parts_per_hour``      = good parts / running hours

Downtime by reason: ``seconds_down_<reason>`` per period, the seconds the asset's ``downtime_reason``
signal held each reason (see :func:`downtime_by_reason`).

``good parts`` = max(parts_total - parts_scrap, 0) over the period. Every division
by zero gives null, never inf or NaN. Hours without data (gaps) add nothing: they
are neither running nor observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

import polars as pl

from storage import DOWNTIME_COLUMNS
from wire import MACHINE_STATES

#: KPI periods (UTC; a week starts on Monday). Benchmarks use the closed periods of at least a day:
#: an hour has too few contributors' data to publish anything.
Period = Literal["hour", "day", "week", "month"]
PERIODS: tuple[Period, ...] = get_args(Period)
BenchmarkPeriod = Literal["day", "week", "month"]
BENCHMARK_PERIODS: tuple[BenchmarkPeriod, ...] = get_args(BenchmarkPeriod)
#: Each period as a polars duration (truncation and ranges).
INTERVALS: dict[str, str] = {"hour": "1h", "day": "1d", "week": "1w", "month": "1mo"}
_TRUNCATE = INTERVALS

#: The additive quantities per asset and period, from which every KPI is derived.
TOTALS: tuple[str, ...] = (
    "energy_kwh",
    "co2e_kg",
    "parts_total",
    "parts_scrap",
    "parts_good",
    "seconds_running",
    "seconds_observed",
    *DOWNTIME_COLUMNS.values(),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiSpec:
    name: str
    unit: str
    description: str
    higher_is_better: bool
    #: Additive totals whose concentration the disclosure rules check for this KPI.
    basis: tuple[str, ...]


KPIS: dict[str, KpiSpec] = {
    k.name: k
    for k in (
        KpiSpec(
            name="energy_per_good_part_kwh",
            unit="kWh",
            description="Electrical energy per good part",
            higher_is_better=False,
            basis=("energy_kwh", "parts_good"),
        ),
        KpiSpec(
            name="co2e_per_good_part_kg",
            unit="kg",
            description="CO2-equivalent emissions of the electrical energy per good part",
            higher_is_better=False,
            basis=("co2e_kg", "parts_good"),
        ),
        KpiSpec(
            name="utilisation",
            unit="1",
            description="Share of the observed time the machine was running",
            higher_is_better=True,
            basis=("seconds_running",),
        ),
        KpiSpec(
            name="scrap_rate",
            unit="1",
            description="Share of the parts produced that were scrapped",
            higher_is_better=False,
            basis=("parts_total", "parts_scrap"),
        ),
        KpiSpec(
            name="good_parts_per_hour",
            unit="1/h",
            description="Good parts per running hour",
            higher_is_better=True,
            basis=("parts_good", "seconds_running"),
        ),
    )
}


def to_ns(value: datetime) -> int:
    """An aware datetime as ns since the epoch, exactly (no float rounding)."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def period_start(column: str | pl.Expr, period: Period) -> pl.Expr:
    """The UTC start of the period containing each timestamp."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.truncate(_TRUNCATE[period])


def period_end(column: str | pl.Expr, period: Period) -> pl.Expr:
    """The (exclusive) end of the period that starts at each timestamp."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.offset_by(_TRUNCATE[period])


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den``, null where ``den`` is not positive or the quotient overflows (never inf or NaN)."""
    quotient = num / den
    return pl.when((den > 0) & quotient.is_finite()).then(quotient).otherwise(None)


def asset_totals(
    rollups: pl.DataFrame,
    period: Period,
    emission_factors: Mapping[str, float],
    default_factor: float,
) -> pl.DataFrame:
    """Additive totals per (member, asset, asset_class, period_start); see :data:`TOTALS`."""
    factors = pl.DataFrame(
        {"member": list(emission_factors), "factor": [float(v) for v in emission_factors.values()]},
        schema={"member": pl.String, "factor": pl.Float64},
    )
    observed = pl.sum_horizontal([pl.col(f"seconds_{s}") for s in MACHINE_STATES])
    return (
        rollups.lazy()
        .join(factors.lazy(), on="member", how="left")
        .with_columns(
            period_start=period_start("hour", period),
            co2e_kg=pl.col("energy_kwh") * pl.col("factor").fill_null(default_factor),
            seconds_observed=observed,
        )
        .group_by(["member", "asset", "period_start"])
        .agg(
            pl.col("asset_class").last(),
            pl.col("energy_kwh").sum(),
            pl.col("co2e_kg").sum(),
            pl.col("parts_total").sum(),
            pl.col("parts_scrap").sum(),
            pl.col("seconds_running").sum(),
            pl.col("seconds_observed").sum(),
            *[pl.col(c).sum() for c in DOWNTIME_COLUMNS.values()],
        )
        .with_columns(parts_good=pl.max_horizontal(pl.col("parts_total") - pl.col("parts_scrap"), pl.lit(0.0)))
        .with_columns(period_end=period_end("period_start", period))
        .select("member", "asset", "asset_class", "period_start", "period_end", *TOTALS)
        .sort(["member", "asset", "period_start"])
        .collect()
    )


def kpi_exprs() -> list[pl.Expr]:
    """Expressions deriving every KPI from the columns of :data:`TOTALS`."""
    return [
        _div(pl.col("energy_kwh"), pl.col("parts_good")).alias("energy_per_good_part_kwh"),
        _div(pl.col("co2e_kg"), pl.col("parts_good")).alias("co2e_per_good_part_kg"),
        _div(pl.col("seconds_running"), pl.col("seconds_observed")).alias("utilisation"),
        _div(pl.min_horizontal(pl.col("parts_scrap"), pl.col("parts_total")), pl.col("parts_total")).alias(
            "scrap_rate"
        ),
        _div(pl.col("parts_good"), pl.col("seconds_running") / 3600.0).alias("good_parts_per_hour"),
    ]


def add_kpis(totals: pl.DataFrame) -> pl.DataFrame:
    """``totals`` with one column per KPI appended."""
    return totals.with_columns(kpi_exprs())


def compute_kpis(
    rollups: pl.DataFrame,
    period: Period,
    emission_factors: Mapping[str, float],
    default_factor: float,
) -> pl.DataFrame:
    """KPIs per asset and period: the totals of :func:`asset_totals` and one column per KPI."""
    return add_kpis(asset_totals(rollups, period, emission_factors, default_factor))


def pool(totals: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Sum the additive totals over assets, grouped by ``by``, and derive the KPIs of the pooled totals."""
    return add_kpis(totals.group_by(by).agg([pl.col(c).sum() for c in TOTALS]).sort(by))


def downtime_by_reason(row: Mapping[str, object]) -> dict[str, float]:
    """The downtime seconds of one totals row by reason, leaving out reasons with no downtime."""
    out: dict[str, float] = {}
    for reason, column in DOWNTIME_COLUMNS.items():
        v = row.get(column)
        if isinstance(v, int | float) and v > 0:
            out[reason] = float(v)
    return out
