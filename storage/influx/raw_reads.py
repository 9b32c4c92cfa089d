"""The raw samples the InfluxDB rollup keeper (:mod:`storage.influx.rollups`) reads back: the new samples of the
assets it folds, and the span of the assets it recomputes, with their predecessors."""

from __future__ import annotations

import polars as pl

from wire.catalog import COUNTER_SIGNALS

from ..base import RAW_SCHEMA
from ..incremental import Key, widen_start
from ..rollups import LOOKBACK_NS
from .connection import InfluxConnection, source
from .influxql import tag_in, time_range, where
from .rollup_points import keys_condition, within

#: (member, asset) pairs per query that names its assets.
KEYS_PER_QUERY = 50
#: A fold reads all assets in one query when their folded times lie within this of the newest one.
BULK_SPAN_NS = 120 * 10**9

_GROUP = 'GROUP BY "member", "asset", "asset_class", "signal"'
_FLAT_COLUMNS = '"member", "asset", "asset_class", "signal", "value", "text", "quality"'


def read_new(db: InfluxConnection, folding: dict[Key, tuple[int, int]]) -> pl.DataFrame:
    """Raw samples of every folding asset after its folded time, up to its last marker's sample."""
    raw_src = source("samples", db.raw_rp)
    newest = max(f for f, _ in folding.values())
    bulk = {k: v for k, v in folding.items() if v[0] >= newest - BULK_SPAN_NS}
    frames: list[pl.DataFrame] = []
    groups: list[tuple[dict[Key, tuple[int, int]], bool]] = []
    if len(bulk) > KEYS_PER_QUERY:
        groups.append((bulk, False))
        rest = [k for k in folding if k not in bulk]
    else:
        rest = list(folding)
    groups += [
        ({k: folding[k] for k in rest[i : i + KEYS_PER_QUERY]}, True) for i in range(0, len(rest), KEYS_PER_QUERY)
    ]
    for group, by_key in groups:
        lo = min(f for f, _ in group.values())
        hi = max(h for _, h in group.values())
        cond = where(time_range(lo + 1, hi + 1), keys_condition(list(group)) if by_key else None)
        # tags as columns, not GROUP BY: one series instead of one per (asset, signal), ~3x faster to answer
        raw = db.execute(f"SELECT {_FLAT_COLUMNS} FROM {raw_src} WHERE {cond}", chunked=True).frame(RAW_SCHEMA)
        frames.append(within(raw, group))
    return pl.concat(frames) if frames else pl.DataFrame(schema=RAW_SCHEMA)


def read_span(
    db: InfluxConnection, bound: dict[Key, int], start: int, *, widen: bool = True
) -> tuple[pl.DataFrame, int]:
    """The raw rows of the assets of ``bound`` from ``start`` (``widen``: widened back to a state sample without
    a successor, see :func:`~storage.incremental.widen_start`) up to their bound (inclusive), after every counter
    and state series' last good sample before it as its predecessor; and the start it read from."""
    raw_src = source("samples", db.raw_rp)
    cond = keys_condition(list(bound))

    def predecessors(before_ns: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        before = where(time_range(before_ns - LOOKBACK_NS, before_ns), '"quality" < 2', cond)
        counters = db.execute(
            f'SELECT last("value") AS "value" FROM {raw_src} WHERE {before} '
            f"AND {tag_in('signal', COUNTER_SIGNALS)} {_GROUP}"
        ).frame(RAW_SCHEMA)
        states = db.execute(
            f'SELECT last("text") AS "text" FROM {raw_src} WHERE {before} '
            f"AND {tag_in('signal', ('state', 'downtime_reason'))} {_GROUP}"
        ).frame(RAW_SCHEMA)
        return counters, states

    prev_counters, prev_states = predecessors(start)
    widened = widen_start(start, prev_states) if widen else start
    if widened < start:
        start = widened
        prev_counters, prev_states = predecessors(start)
    span = where(time_range(start, max(bound.values()) + 1), cond)
    raw = db.execute(f'SELECT "value", "text", "quality" FROM {raw_src} WHERE {span} {_GROUP}', chunked=True).frame(
        RAW_SCHEMA
    )
    raw = within(raw, {k: (start - 1, b) for k, b in bound.items()})
    prev = pl.concat([prev_counters, prev_states]).with_columns(pl.lit(0, dtype=pl.UInt8).alias("quality"))
    return pl.concat([prev, raw]), start
