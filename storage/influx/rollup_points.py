"""Line protocol and selections of the rollup keeper (:mod:`storage.influx.rollups`): dirty markers, rollup rows,
conditions naming assets, and the samples within each asset's bounds."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from ..base import ROLLUP_SCHEMA
from ..incremental import Key
from .batchlog import Bounds
from .influxql import literal
from .lineprotocol import encode_rows, escape_tag_value

_KEY_COLUMNS = ("member", "asset", "asset_class", "hour")
_ROLLUP_FIELDS = tuple(c for c in ROLLUP_SCHEMA if c not in _KEY_COLUMNS)
_TAG_COLUMNS = ("member", "asset", "asset_class")


#: (asset, asset class) pairs whose marker tags are kept escaped (a hub has some thousands; ~350 bytes each).
MARKER_HEADS_CACHED = 32_768


def dirty_markers(member: str, bounds: Bounds, *, written_ns: int, writer: str) -> bytes:
    """One marker point per asset of ``bounds`` (:func:`~storage.influx.batchlog.marker_bounds` of a batch): its
    first and last sample time, stamped ``written_ns``, tagged with the ``writer``."""
    tail = f",member={escape_tag_value(member)},writer={escape_tag_value(writer)} hi_ns="
    stamp = f"i,written_ns={written_ns}i {written_ns}"
    head = _marker_head
    lines = [f"{head(asset, cls)}{tail}{hi}i,lo_ns={lo}{stamp}" for asset, (cls, lo, hi) in bounds.items()]
    return "\n".join(lines).encode()


@functools.lru_cache(maxsize=MARKER_HEADS_CACHED)
def _marker_head(asset: str, asset_class: str) -> str:
    """``rollup_dirty,asset=..,asset_class=..``: escaping the two tags costs more than the rest of the line, and
    every batch marks the same assets again (``lru_cache``: bounded, and thread-safe for the writer threads)."""
    return f"rollup_dirty,asset={escape_tag_value(asset)},asset_class={escape_tag_value(asset_class)}"


def rollup_lines(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """Line protocol of rollup rows given as tuples in the column order of :data:`~storage.base.ROLLUP_SCHEMA`,
    the hour as Int64 ns (member, asset, asset class, hour, then the fields)."""
    return encode_rows("rollups", _TAG_COLUMNS, _ROLLUP_FIELDS, ((r[:3], r[4:], r[3]) for r in rows))


def keys_condition(keys: Sequence[Key]) -> str:
    return "(" + " OR ".join(f'("member" = {literal(m)} AND "asset" = {literal(a)})' for m, a in keys) + ")"


def within(raw: pl.DataFrame, bounds: dict[Key, tuple[int, int]]) -> pl.DataFrame:
    """The rows of ``raw`` with lo < ts <= hi for their asset's (lo, hi)."""
    frame = pl.DataFrame(
        [(m, a, lo, hi) for (m, a), (lo, hi) in bounds.items()],
        schema={"member": pl.String, "asset": pl.String, "_lo": pl.Int64, "_hi": pl.Int64},
        orient="row",
    )
    return (
        raw.join(frame, on=["member", "asset"])
        .filter((pl.col("ts") > pl.col("_lo")) & (pl.col("ts") <= pl.col("_hi")))
        .drop("_lo", "_hi")
    )
