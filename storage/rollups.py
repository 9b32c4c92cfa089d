"""Hourly rollups per asset: the pure computation and the keeper that maintains them.

:func:`compute_rollups` turns raw samples into one row per (member, asset, hour):

* counters (``energy_kwh``, ``parts_total``, ``parts_scrap_total``): the sum of the
  increases between consecutive samples, each increase booked to the hour of the
  later sample. A decrease is a reset (the machine restarted and counts from
  zero), so the increase is the new value itself, never a negative figure. The
  first sample of an asset has no predecessor and adds nothing.
* ``state`` and ``downtime_reason``: each value holds from its sample until the next state sample, but at
  most :data:`MAX_STATE_GAP_S` (gateways repeat the current state at least once a
  minute; a longer silence is a gap and is not counted as any state). Intervals
  are split at hour boundaries. The last sample of an asset stays open until the
  next one arrives. Downtime is kept per reason (``seconds_down_<reason>``); ``none`` is not kept.
* gauges: mean, min and max of the samples in the hour.

Samples of bad quality are ignored. This module is pure (frames in, frames out)
and shared by both stores: :mod:`storage.duckdb.rollups` and
:mod:`storage.influx.rollups` keep the rollups of their backend up to date with it.
"""

from __future__ import annotations

import polars as pl

from wire import MACHINE_STATES, Quality

from .base import COUNTER_COLUMNS, DOWNTIME_COLUMNS, GAUGE_STATS, ROLLUP_SCHEMA, empty_rollups

HOUR_NS = 3600 * 10**9
MAX_STATE_GAP_S = 300
GAP_NS = MAX_STATE_GAP_S * 10**9
#: How far back a recompute looks for the predecessor of a counter sample.
LOOKBACK_NS = 24 * HOUR_NS

_COUNTERS = COUNTER_COLUMNS
_KEYS = ["member", "asset", "hour"]
_STATE_COLUMNS = [f"seconds_{st}" for st in MACHINE_STATES] + list(DOWNTIME_COLUMNS.values())
_HOUR = (pl.col("ts") // HOUR_NS) * HOUR_NS
#: The gauge statistics columns of a rollup row (mean, min and max of every gauge).
GAUGE_COLUMNS = tuple(f"{g}_{stat}" for g in GAUGE_STATS for stat in ("mean", "min", "max"))


def _state_seconds(raw: pl.DataFrame, signal: str, columns: dict[str, str]) -> pl.DataFrame:
    """Seconds per value of the state signal ``signal`` per (member, asset, hour), one column per value.

    Each sample holds until the next sample of the same signal, at most :data:`GAP_NS`, split at hour
    boundaries; values not in ``columns`` (``downtime_reason`` ``none``) are not kept.
    """
    states = (
        raw.filter(pl.col("signal") == signal)
        .sort(["member", "asset", "ts"])
        .with_columns(nxt=pl.col("ts").shift(-1).over(["member", "asset"]))
        .filter(pl.col("nxt").is_not_null())
        .with_columns(end=pl.min_horizontal(pl.col("nxt"), pl.col("ts") + GAP_NS))
        .with_columns(h0=_HOUR, boundary=_HOUR + HOUR_NS)
    )
    first = states.select(
        "member",
        "asset",
        "text",
        pl.col("h0").alias("hour"),
        (pl.min_horizontal("end", "boundary") - pl.col("ts")).alias("ns"),
    )
    second = states.filter(pl.col("end") > pl.col("boundary")).select(
        "member", "asset", "text", pl.col("boundary").alias("hour"), (pl.col("end") - pl.col("boundary")).alias("ns")
    )
    return (
        pl.concat([first, second])
        .group_by(["member", "asset", "hour"])
        # round: polars may divide by multiplying with 1e-9, which is off in the last bit (60.00000000000001)
        .agg([(pl.col("ns").filter(pl.col("text") == v).sum() / 1e9).round(9).alias(c) for v, c in columns.items()])
    )


def compute_rollups(raw: pl.DataFrame, *, gauges: bool = True) -> pl.DataFrame:
    """Rollups of ``raw`` (columns member, asset, asset_class, signal, ts [Int64 ns], value, text, quality).

    ``gauges=False`` leaves the gauge columns null (a fold merges the gauges from sums of its own)."""
    if raw.height == 0:
        return empty_rollups()
    raw = raw.filter(pl.col("quality") < int(Quality.BAD)).with_columns(pl.col("ts").cast(pl.Int64))
    hour = _HOUR
    base = raw.group_by(["member", "asset", (hour).alias("hour")]).agg(
        pl.col("asset_class").last(), pl.len().cast(pl.Int64).alias("samples")
    )

    counters = (
        raw.filter(pl.col("signal").is_in(list(_COUNTERS)))
        .sort(["member", "asset", "signal", "ts"])
        .with_columns(prev=pl.col("value").shift(1).over(["member", "asset", "signal"]))
        .with_columns(
            delta=pl.when(pl.col("prev").is_null())
            .then(None)
            .when(pl.col("value") < pl.col("prev"))
            .then(pl.col("value"))
            .otherwise(pl.col("value") - pl.col("prev"))
        )
        .group_by(["member", "asset", hour.alias("hour")])
        .agg([pl.col("delta").filter(pl.col("signal") == sig).sum().alias(col) for sig, col in _COUNTERS.items()])
    )

    state_secs = _state_seconds(raw, "state", {st: f"seconds_{st}" for st in MACHINE_STATES}).join(
        _state_seconds(raw, "downtime_reason", DOWNTIME_COLUMNS), on=_KEYS, how="full", coalesce=True
    )

    parts = [counters, state_secs]
    if gauges:
        parts.append(
            raw.filter(pl.col("signal").is_in(list(GAUGE_STATS)))
            .group_by(["member", "asset", hour.alias("hour")])
            .agg(
                [
                    getattr(pl.col("value").filter(pl.col("signal") == g), stat)().alias(f"{g}_{stat}")
                    for g in GAUGE_STATS
                    for stat in ("mean", "min", "max")
                ]
            )
        )

    # A state that runs past the hour counts in the next hour even when that hour has no sample of its own.
    spill = state_secs.join(base, on=_KEYS, how="anti").join(
        raw.group_by(["member", "asset"]).agg(pl.col("asset_class").last()), on=["member", "asset"], how="left"
    )
    out = pl.concat(
        [base, spill.select(*_KEYS, "asset_class", pl.lit(0, dtype=pl.Int64).alias("samples"))], how="vertical"
    )
    for part in parts:
        out = out.join(part, on=_KEYS, how="left")
    if not gauges:
        out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in GAUGE_COLUMNS)
    fill = {c: pl.col(c).fill_null(0.0) for c in COUNTER_COLUMNS.values()}
    fill.update({c: pl.col(c).fill_null(0.0) for c in _STATE_COLUMNS})
    out = out.with_columns(**fill).with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))
    return out.select([pl.col(c).cast(t) for c, t in ROLLUP_SCHEMA.items()]).sort(_KEYS)
