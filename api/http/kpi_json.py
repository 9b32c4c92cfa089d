"""The JSON of ``/v1/kpis`` rows, encoded column by column by polars.

An all-assets hourly answer holds tens of thousands of rows; validating each as a :class:`KpiRow` and
serialising it through pydantic costs seconds, most of it creating Python objects per value. Here polars
encodes each row's object (``struct.json_encode``: JSON escaping, shortest round-trip floats, ``null``
for missing and NaN), datetimes as pydantic writes them (``…Z``, whole seconds: period bounds), and the
``downtime_s`` object from the reasons with downtime only. The result parses to the same value as
pydantic's JSON of the same rows (``tests/api/test_kpis.py`` compares them).
"""

from __future__ import annotations

import polars as pl

from storage import DOWNTIME_COLUMNS

from .schemas import KpiResponse, KpiRow

_SCALARS = [name for name in KpiRow.model_fields if name != "downtime_s"]
_DATETIMES = frozenset(n for n, f in KpiRow.model_fields.items() if "datetime" in str(f.annotation))
_STRINGS = frozenset(n for n, f in KpiRow.model_fields.items() if f.annotation is str)


def kpi_rows_json(frame: pl.DataFrame) -> str:
    """The JSON array of ``frame``'s rows (the columns of :func:`api.core.kpis.compute_kpis`) as KpiRows."""
    if frame.height == 0:
        return "[]"
    exprs = []
    for name in _SCALARS:
        col = pl.col(name)
        if name in _DATETIMES:
            exprs.append(col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif name in _STRINGS:
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col.cast(pl.Float64))
    row = pl.struct(exprs).struct.json_encode()
    downtime = pl.concat_str(
        [
            pl.when(pl.col(column) > 0).then(pl.format('"{}":{}', pl.lit(reason), pl.col(column).cast(pl.Float64)))
            for reason, column in DOWNTIME_COLUMNS.items()
            if column in frame.columns
        ]
        or [pl.lit(None, dtype=pl.String)],
        separator=",",
        ignore_nulls=True,
    ).fill_null("")
    encoded = pl.concat_str(
        [row.str.slice(0, row.str.len_chars() - 1), pl.lit(',"downtime_s":{'), downtime, pl.lit("}}")]
    )
    return "[" + ",".join(frame.select(encoded.alias("json")).to_series().to_list()) + "]"


def kpi_response_json(envelope: KpiResponse, frame: pl.DataFrame) -> str:
    """``envelope`` (its ``data`` empty) with ``frame``'s rows as its data."""
    head = envelope.model_dump_json()
    if not head.endswith('"data":[]}'):
        raise RuntimeError("KpiResponse must end with its data field")
    return head[: -len("[]}")] + kpi_rows_json(frame) + "}"
