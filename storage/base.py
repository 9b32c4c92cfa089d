"""The store interface shared by the embedded DuckDB store and the InfluxDB store.

A store keeps one row per (member, asset, signal, timestamp); writing the same
sample twice leaves one row (redelivery is harmless). Queries return polars
frames with the fixed columns below, so the API never sees which store it runs on.

Series frame (:data:`SERIES_SCHEMA`): ``ts`` (UTC, ns), ``member``, ``asset``,
``asset_class``, ``signal``, ``value`` (float; null for state signals), ``text``
(the state for state signals, else null), ``quality`` (0 good, 1 uncertain, 2 bad).

Rollup frame (:data:`ROLLUP_SCHEMA`): one row per (member, asset, hour) with
counter deltas, seconds per machine state and per downtime reason, and gauge statistics; see
:mod:`storage.rollups` for how they are computed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

import polars as pl

from wire import DOWNTIME_REASONS, MACHINE_STATES, Sample
from wire.catalog import COUNTER_SIGNALS, GAUGE_SIGNALS

from .ledger import ReleasedCell

#: Downsampling aggregations of a series query (``every`` / ``agg``); the one list, also used by the API.
Agg = Literal["mean", "min", "max", "last", "sum", "count"]
AGGS: tuple[Agg, ...] = get_args(Agg)

SERIES_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("ns", "UTC"),
    "member": pl.String(),
    "asset": pl.String(),
    "asset_class": pl.String(),
    "signal": pl.String(),
    "value": pl.Float64(),
    "text": pl.String(),
    "quality": pl.UInt8(),
}
#: The series frame as read from a store, before ``ts`` becomes a datetime (ns since the epoch, Int64).
RAW_SCHEMA: dict[str, pl.DataType] = {**SERIES_SCHEMA, "ts": pl.Int64()}

#: Gauges kept in the hourly rollups (mean/min/max each): every gauge of the catalogue.
GAUGE_STATS: tuple[str, ...] = GAUGE_SIGNALS
#: Counter signal -> its rollup column (the hour's delta), for every counter of the catalogue.
COUNTER_COLUMNS: dict[str, str] = {
    "energy_kwh": "energy_kwh",
    "parts_total": "parts_total",
    "parts_scrap_total": "parts_scrap",
}
if tuple(COUNTER_COLUMNS) != COUNTER_SIGNALS:
    raise RuntimeError("COUNTER_COLUMNS must name every counter signal of the catalogue, in its order")

#: Downtime reasons kept in the rollups as seconds per hour (``none`` is not downtime and is not kept).
DOWNTIME_COLUMNS: dict[str, str] = {r: f"seconds_down_{r}" for r in DOWNTIME_REASONS if r != "none"}

ROLLUP_SCHEMA: dict[str, pl.DataType] = {
    "member": pl.String(),
    "asset": pl.String(),
    "asset_class": pl.String(),
    "hour": pl.Datetime("ns", "UTC"),
    **{column: pl.Float64() for column in COUNTER_COLUMNS.values()},
    **{f"seconds_{s}": pl.Float64() for s in MACHINE_STATES},
    **{column: pl.Float64() for column in DOWNTIME_COLUMNS.values()},
    **{f"{g}_{stat}": pl.Float64() for g in GAUGE_STATS for stat in ("mean", "min", "max")},
    "samples": pl.Int64(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesQuery:
    """Filters of a series query. ``None`` means no filter; times are ns since the epoch, UTC.

    ``every`` is a duration in seconds for downsampling (bucket start as ``ts``);
    ``limit`` bounds the rows returned, and ``after`` (the sort key of the last row
    of the previous page: ts_ns, member, asset, signal) continues from there.
    Rows are ordered by (ts, member, asset, signal).
    """

    signals: tuple[str, ...] | None = None
    asset_classes: tuple[str, ...] | None = None
    members: tuple[str, ...] | None = None
    assets: tuple[str, ...] | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    every_s: int | None = None
    agg: Agg = "mean"
    limit: int | None = None
    after: tuple[int, str, str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RollupQuery:
    """Filters of a rollup query; ``start_ns`` inclusive, ``end_ns`` exclusive, on the hour start.

    Before reading, the store folds in what it holds but has not yet folded of the requested assets whose
    pending data overlaps the requested period, and of no other asset. ``refresh_max_assets`` bounds that:
    when more assets than that are pending, or the background refresh is busy with them, the rows are read
    as kept, and :attr:`Rollups.as_of_ns` says up to when they are complete. ``None``: no bound.
    """

    asset_classes: tuple[str, ...] | None = None
    members: tuple[str, ...] | None = None
    assets: tuple[str, ...] | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    refresh_max_assets: int | None = None


@dataclass(frozen=True, slots=True)
class Rollups:
    """Rollup rows (:data:`ROLLUP_SCHEMA`) and ``as_of_ns``: every sample the store had accepted by then is in
    them (``None``: not known, the keeper has not completed a refresh since it started)."""

    frame: pl.DataFrame
    as_of_ns: int | None


@runtime_checkable
class Store(Protocol):
    """What the ingestor and the API need of a time-series store.

    Methods are synchronous; async callers run them in a worker thread. ``write``
    returns only after the store has durably accepted the samples.
    """

    def write(self, member: str, samples: Sequence[Sample]) -> int:
        """Store ``samples`` of ``member``; return how many were given. Idempotent."""
        ...

    def write_many(self, batches: Mapping[str, Sequence[Sample]]) -> int:
        """Store the batches of several members (member -> samples), as the ingestor's flush holds them; return
        how many samples were given. Idempotent. The embedded store writes them in one transaction (its cost is
        per statement and transaction, not per sample); InfluxDB one member after the other."""
        ...

    def query_series(self, query: SeriesQuery) -> pl.DataFrame: ...

    def query_rollups(self, query: RollupQuery) -> pl.DataFrame:
        """The rows of :meth:`read_rollups`."""
        ...

    def read_rollups(self, query: RollupQuery) -> Rollups:
        """Rollup rows of ``query`` and how fresh they are (see :class:`RollupQuery`)."""
        ...

    def refresh_rollups(self) -> int:
        """Bring the rollups up to date with everything written so far; return how many assets were refreshed
        (folded in incrementally or recomputed from raw)."""
        ...

    @property
    def retention_ns(self) -> int | None:
        """How long raw samples are kept (``None``: for ever). The ingestor refuses older ones: a store would drop
        them (InfluxDB refuses the whole request as a partial write) or delete them within the hour."""
        ...

    @property
    def late_recomputes(self) -> Mapping[str, int]:
        """Assets refreshed with late samples since the store was opened, by how their rollups were recomputed:
        ``window`` (only the hours the samples change, :mod:`storage.late`) or ``full`` (from the late hour up to
        the present)."""
        ...

    def enforce_retention(self, now_ns: int | None = None) -> int:
        """Delete what is older than the retention; return how many raw samples went (0 if the server does it)."""
        ...

    def released_cells(
        self, kpi: str, asset_class: str, start_ns: int, end_ns: int, period: str | None = None
    ) -> list[ReleasedCell]:
        """Release-ledger entries of ``kpi`` / ``asset_class`` whose period overlaps [start_ns, end_ns)."""
        ...

    def release(self, cells: Sequence[ReleasedCell]) -> None:
        """Add cells to the release ledger; one already there stays as it was (see :mod:`storage.ledger`)."""
        ...

    def delete_member(self, member: str, *, group: str | None = None, now_ns: int | None = None) -> dict[str, int]:
        """Delete every raw sample, rollup and rollup marker of ``member`` and forget what is cached of it; erase
        the contributors' values of the released cells ``group`` (its corporate group) contributed to (see
        :func:`storage.ledger.erase_values`). Returns the rows deleted per table or measurement (and the ledger
        cells whose values were erased, under ``release_ledger``). Call it once the member can send no more."""
        ...

    def close(self) -> None: ...


def empty_series() -> pl.DataFrame:
    return pl.DataFrame(schema=SERIES_SCHEMA)


def empty_rollups() -> pl.DataFrame:
    return pl.DataFrame(schema=ROLLUP_SCHEMA)


def samples_frame(member: str, samples: Sequence[Sample]) -> pl.DataFrame:
    """Turn wire samples into a frame with the raw-table columns (ts as Int64 ns)."""
    return batches_frame({member: samples})


def batches_frame(batches: Mapping[str, Sequence[Sample]]) -> pl.DataFrame:
    """:func:`samples_frame` of several members' batches (member -> samples), one after the other."""
    members = list(itertools.chain.from_iterable(itertools.repeat(m, len(s)) for m, s in batches.items()))
    samples = list(itertools.chain.from_iterable(batches.values()))
    n = len(samples)
    values: list[float | None] = [None] * n
    texts: list[str | None] = [None] * n
    for i, s in enumerate(samples):
        v = s.value
        if isinstance(v, str):
            texts[i] = v
        else:
            values[i] = float(v)
    return pl.DataFrame(
        {
            "member": members,
            "asset": [s.asset for s in samples],
            "asset_class": [s.asset_class for s in samples],
            "signal": [s.signal for s in samples],
            "ts": [s.ts for s in samples],
            "value": values,
            "text": texts,
            "quality": [s.quality for s in samples],
        },
        schema=RAW_SCHEMA,
    )
