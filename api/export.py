"""Export: everything the hub holds of one member, as Parquet files in a zip with a manifest.

The archive (``GET /v1/export`` for a member token, ``metalldaten members export``
for the trustee) holds:

- ``series.parquet``: every raw sample of the member (the columns of ``/v1/series``);
- ``rollups.parquet``: its hourly rollups per asset (what KPIs are computed from);
- ``kpis.parquet``: its KPIs per asset and day (the columns of ``/v1/kpis``);
- ``contributions.parquet``: per released benchmark cell its corporate group contributed
  to, the cell and the member's own value (its assets of the class pooled, from its data
  as held now); the other contributors' values are never part of it;
- ``manifest.json``: the member, when, and per file its rows, columns and SHA-256.

Series are read a page at a time and written row group by row group, so memory stays
bounded by the page size, whatever the member's history.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import polars as pl
import pyarrow.parquet as pq

from core.register import DEFAULT_EMISSION_FACTOR, Register
from storage import RollupQuery, SeriesQuery, Store
from wire import ASSET_CLASSES

from .core.cells import from_ns, own_values
from .core.kpis import KPIS, Period, compute_kpis

#: Rows per page read from the store while writing ``series.parquet``.
PAGE_ROWS = 200_000
CONTRIBUTION_SCHEMA: dict[str, pl.DataType] = {
    "kpi": pl.String(),
    "asset_class": pl.String(),
    "period": pl.String(),
    "period_start": pl.Datetime("ns", "UTC"),
    "period_end": pl.Datetime("ns", "UTC"),
    "status": pl.String(),
    "released_at": pl.Datetime("ns", "UTC"),
    "own_value": pl.Float64(),
}


@dataclass(frozen=True, slots=True)
class ExportedFile:
    name: str
    rows: int
    sha256: str
    columns: list[str]


@dataclass(slots=True)
class Manifest:
    member: str
    generated_at: str
    files: list[ExportedFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "generated_at": self.generated_at,
            "files": [{"name": f.name, "rows": f.rows, "sha256": f.sha256, "columns": f.columns} for f in self.files],
            "notes": [
                "series.parquet holds every raw sample of the member the hub stores, as GET /v1/series serves it",
                "kpis.parquet holds the member's KPIs per asset and UTC day, as GET /v1/kpis?period=day serves them",
                "contributions.parquet holds the member's own value in each released benchmark cell its group "
                "contributed to; the published figures of those cells are aggregates of at least five groups",
            ],
        }


def _series_pages(store: Store, member: str) -> Iterator[pl.DataFrame]:
    after: tuple[int, str, str, str] | None = None
    while True:
        page = store.query_series(SeriesQuery(members=(member,), limit=PAGE_ROWS, after=after))
        if page.height:
            yield page
        if page.height < PAGE_ROWS:
            return
        last = page.row(page.height - 1, named=True)
        after = (int(page["ts"].dt.epoch("ns")[-1]), last["member"], last["asset"], last["signal"])


def _write_series(store: Store, member: str, target: Path) -> int:
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for page in _series_pages(store, member):
            table = page.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(target, table.schema, compression="zstd")
            writer.write_table(table)
            rows += page.height
        if writer is None:
            from storage import empty_series

            pq.write_table(empty_series().to_arrow(), target, compression="zstd")
    finally:
        if writer is not None:
            writer.close()
    return rows


def contributions_frame(store: Store, register: Register, member: str, rollups: pl.DataFrame) -> pl.DataFrame:
    """The member's own value in each released cell whose contributor set holds its corporate group."""
    entry = register.get(member)
    if entry is None or rollups.height == 0:
        return pl.DataFrame(schema=CONTRIBUTION_SCHEMA)
    factors = {member: entry.emission_factor_kg_per_kwh}
    lo = int(rollups["hour"].dt.epoch("ns").min())  # type: ignore[arg-type]
    hi = int(rollups["hour"].dt.epoch("ns").max()) + 3600 * 10**9  # type: ignore[arg-type]
    rows: list[dict[str, object]] = []
    for asset_class in sorted(set(rollups["asset_class"].to_list()) & set(ASSET_CLASSES)):
        mine = rollups.filter(pl.col("asset_class") == asset_class)
        for kpi in KPIS:
            cells = [c for c in store.released_cells(kpi, asset_class, lo, hi) if entry.group in c.groups]
            own: dict[tuple[str, datetime], float] = {}
            for period in sorted({c.period for c in cells}):
                values = own_values(
                    mine,
                    kpi=kpi,
                    period=cast(Period, period),
                    member=member,
                    emission_factors=factors,
                    default_factor=DEFAULT_EMISSION_FACTOR,
                )
                own.update({(period, start): v for start, v in values.items()})
            for c in cells:
                start = from_ns(c.period_start_ns)
                rows.append(
                    {
                        "kpi": kpi,
                        "asset_class": asset_class,
                        "period": c.period,
                        "period_start": start,
                        "period_end": from_ns(c.period_end_ns),
                        "status": c.status,
                        "released_at": from_ns(c.released_at_ns),
                        "own_value": own.get((c.period, start)),
                    }
                )
    return pl.DataFrame(rows, schema=CONTRIBUTION_SCHEMA)


def write_export(store: Store, register: Register, member: str, out: IO[bytes], *, now: datetime) -> Manifest:
    """Write the member's archive to ``out`` (a binary file); return its manifest."""
    manifest = Manifest(member=member, generated_at=now.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    entry = register.get(member)
    factors = {member: entry.emission_factor_kg_per_kwh} if entry is not None else {}
    with tempfile.TemporaryDirectory(prefix="mdh-export-") as tmp, zipfile.ZipFile(out, "w") as archive:
        work = Path(tmp)
        series_rows = _write_series(store, member, work / "series.parquet")
        rollups = store.query_rollups(RollupQuery(members=(member,)))
        frames = {
            "rollups.parquet": rollups,
            "kpis.parquet": compute_kpis(rollups, "day", factors, DEFAULT_EMISSION_FACTOR),
            "contributions.parquet": contributions_frame(store, register, member, rollups),
        }
        for name, frame in frames.items():
            frame.write_parquet(work / name, compression="zstd")
        counts = {"series.parquet": series_rows, **{n: f.height for n, f in frames.items()}}
        for name, rows in counts.items():
            path = work / name
            # Parquet is compressed already: stored, so a reader can seek into it.
            archive.write(path, name, compress_type=zipfile.ZIP_STORED)
            columns = pq.read_schema(path).names
            manifest.files.append(ExportedFile(name=name, rows=rows, sha256=_sha256(path), columns=columns))
        archive.writestr("manifest.json", json.dumps(manifest.to_dict(), indent=1) + "\n")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
