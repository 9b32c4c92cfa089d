"""InfluxQL for the InfluxDB store: building queries and turning answers into frames (pure; no I/O).

Only the InfluxQL subset that InfluxDB 1.8, 2.x (v1 compatibility API) and 3.x
all serve is used: ``SELECT`` of fields and the plain aggregates ``mean``, ``min``,
``max``, ``last``, ``sum``, ``count``, ``WHERE`` on tags, fields and ``time``,
``GROUP BY time(...)`` and tags, ``fill(none)`` and ``LIMIT``. No ``INTEGRAL``,
``SAMPLE``, ``SLIMIT``, ``HOLT_WINTERS``, subqueries or ``INTO``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import polars as pl

from wire.codec import MAX_TS_NS, MIN_TS_NS

from ..base import SeriesQuery
from ..errors import StoreRejected

SERIES_TAGS: tuple[str, ...] = ("member", "asset", "asset_class", "signal")
_AGG = {
    "mean": 'mean("value")',
    "min": 'min("value")',
    "max": 'max("value")',
    "last": 'last("value")',
    "sum": 'sum("value")',
    # count every point (state samples have no "value" field but always a "quality")
    "count": 'count("quality")',
}


def ident(name: str) -> str:
    """A double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """A single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tag_in(tag: str, values: Sequence[str] | None) -> str | None:
    """``(tag = 'a' OR tag = 'b')``; ``None`` for no filter; an always-false condition for an empty list."""
    if values is None:
        return None
    if not values:
        return "false"  # placeholder; callers short-circuit empty filters before querying
    return "(" + " OR ".join(f"{ident(tag)} = {literal(v)}" for v in values) + ")"


def time_range(start_ns: int | None, end_ns: int | None) -> str:
    """Always bounded: without bounds InfluxDB 1.x caps grouped queries at now(), hiding future-stamped data."""
    lo = MIN_TS_NS if start_ns is None else start_ns
    hi = MAX_TS_NS if end_ns is None else end_ns
    return f"time >= {int(lo)} AND time < {int(hi)}"


def where(*conditions: str | None) -> str:
    return " AND ".join(c for c in conditions if c)


def series_query(source: str, q: SeriesQuery) -> str:
    """The InfluxQL for a series query; ``source`` is the quoted (retention policy and) measurement.

    Results come grouped per series; with ``limit``, each series returns at most ``limit + 1``
    points from ``after``'s timestamp on (one point per series and instant), which is enough to
    merge the first ``limit`` rows after ``after`` in (ts, member, asset, signal) order.
    """
    start = q.start_ns
    if q.after is not None:
        start = q.after[0] if start is None else max(start, q.after[0])
    cond = where(
        time_range(start, q.end_ns),
        tag_in("signal", q.signals),
        tag_in("asset_class", q.asset_classes),
        tag_in("member", q.members),
        tag_in("asset", q.assets),
    )
    tags = ", ".join(ident(t) for t in SERIES_TAGS)
    if q.every_s:
        sql = (
            f'SELECT {_AGG[q.agg]} AS "value", last("text") AS "text", max("quality") AS "quality" FROM {source} '
            f"WHERE {cond} GROUP BY time({int(q.every_s)}s), {tags} fill(none)"
        )
    else:
        sql = f'SELECT "value", "text", "quality" FROM {source} WHERE {cond} GROUP BY {tags}'
    if q.limit is not None:
        sql += f" LIMIT {int(q.limit) + 1}"
    return sql


class _Series(msgspec.Struct):
    name: str = ""
    tags: dict[str, str] = {}
    columns: list[str] = []
    values: list[list[Any]] = []


class _Result(msgspec.Struct):
    statement_id: int = 0
    series: list[_Series] = []
    error: str | None = None


class _Response(msgspec.Struct):
    results: list[_Result] = []
    error: str | None = None


_decoder = msgspec.json.Decoder(_Response)


@dataclass
class Rows:
    """Rows of one statement collected from one or several (chunked) responses, column-wise."""

    columns: dict[str, list[Any]] = field(default_factory=dict)
    n: int = 0

    def add(self, series: _Series) -> None:
        if not series.values:
            return
        names = list(series.columns) + list(series.tags)
        for name in names:
            if name not in self.columns:
                self.columns[name] = [None] * self.n
        width = len(series.columns)
        if all(len(row) == width for row in series.values):  # InfluxDB sends full rows: transpose at C speed
            for name, column in zip(series.columns, zip(*series.values, strict=True), strict=True):
                self.columns[name].extend(column)
        else:
            for i, name in enumerate(series.columns):
                self.columns[name].extend(row[i] if i < len(row) else None for row in series.values)
        k = len(series.values)
        for tag, value in series.tags.items():
            self.columns[tag].extend([value] * k)
        self.n += k
        for col in self.columns.values():
            if len(col) < self.n:
                col.extend([None] * (self.n - len(col)))

    def frame(self, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """The rows as a frame with exactly ``schema``'s columns (missing ones null)."""
        data = {name: self.columns.get(name, [None] * self.n) for name in schema}
        if "ts" in schema and "time" in self.columns:
            data["ts"] = self.columns["time"]
        if "hour" in schema and "time" in self.columns:
            data["hour"] = self.columns["time"]
        raw_schema = {name: (pl.Int64 if name in ("ts", "hour") else dtype) for name, dtype in schema.items()}
        return pl.DataFrame(data, schema=raw_schema, strict=False)


def parse_response(lines: Iterable[bytes], rows: Rows | None = None) -> Rows:
    """Collect the first statement's series from a (possibly chunked: one JSON per line) answer.

    Raise :class:`StoreRejected` with InfluxDB's message when it reports an error.
    """
    rows = rows or Rows()
    for line in lines:
        if not line.strip():
            continue
        try:
            resp = _decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise StoreRejected(f"InfluxDB answered with something that is not JSON: {line[:200]!r}") from exc
        if resp.error:
            raise StoreRejected(f"InfluxDB refused the query: {resp.error}")
        for result in resp.results:
            if result.error:
                raise StoreRejected(f"InfluxDB refused the query: {result.error}")
            for series in result.series:
                rows.add(series)
    return rows
