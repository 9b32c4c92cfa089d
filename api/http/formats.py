"""Encoding series frames as JSON, CSV, Arrow IPC stream or Parquet, chunk by chunk (pure).

Each encoder takes a frame with the series columns and yields bytes, a chunk of
rows at a time, so a large page leaves the server as a stream rather than as one
buffer. Timestamps are RFC 3339 strings with nanoseconds in JSON and CSV, and
``timestamp[ns, UTC]`` in Arrow and Parquet.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .schemas import ArrowCompression, SeriesFormat

CHUNK_ROWS = 65_536

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
#: Accept-header media types understood, and the format each selects.
ACCEPTED: dict[str, str] = {
    **{v: k for k, v in MEDIA_TYPES.items()},
    "application/x-parquet": "parquet",
    "application/vnd.apache.arrow.file": "arrow",
}

_TS_TEXT = "%Y-%m-%dT%H:%M:%S%.9fZ"


def negotiate(accept: str | None, explicit: SeriesFormat | None) -> SeriesFormat | None:
    """The format: ``explicit`` if given, else the first understood media type in ``accept``, else JSON.

    ``None`` means the Accept header names only media types we cannot produce.
    """
    if explicit is not None:
        return explicit
    if not accept:
        return "json"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, media.lower()))
    for neg_q, _, media in sorted(ranked):
        if neg_q == 0:
            continue
        if media in ACCEPTED:
            return ACCEPTED[media]  # type: ignore[return-value]
        if media in ("*/*", "application/*"):
            return "json"
        if media == "text/*":
            return "csv"
    return None


def _chunks(frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
    for offset in range(0, frame.height, CHUNK_ROWS):
        yield frame.slice(offset, CHUNK_ROWS)


def _text_ts(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("ts").dt.to_string(_TS_TEXT))


def encode_json(frame: pl.DataFrame, next_cursor: str | None) -> Iterator[bytes]:
    head: dict[str, Any] = {"rows": frame.height, "next_cursor": next_cursor}
    yield (json.dumps(head)[:-1] + ', "data": [').encode()
    first = True
    for chunk in _chunks(frame):
        body = _text_ts(chunk).write_json()
        inner = body[1:-1]
        if inner:
            yield (inner if first else "," + inner).encode()
            first = False
    yield b"]}"


def encode_csv(frame: pl.DataFrame) -> Iterator[bytes]:
    header = True
    for chunk in _chunks(frame) if frame.height else iter([frame]):
        yield _text_ts(chunk).write_csv(include_header=header).encode()
        header = False


def arrow_table(frame: pl.DataFrame) -> pa.Table:
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


class _Drain(io.RawIOBase):
    """A write-only file whose contents are taken out after each write by the generator."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def encode_arrow(frame: pl.DataFrame, compression: ArrowCompression = "zstd") -> Iterator[bytes]:
    """An Arrow IPC stream; record-batch buffers compressed with ``compression`` (Arrow IPC buffer
    compression, read transparently by pyarrow, polars, pandas and DuckDB)."""
    table = arrow_table(frame)
    sink = _Drain()
    options = pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        yield sink.take()
        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()


def encode_parquet(frame: pl.DataFrame) -> Iterator[bytes]:
    table = arrow_table(frame)
    sink = _Drain()
    with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
        for offset in range(0, max(table.num_rows, 1), CHUNK_ROWS):
            writer.write_table(table.slice(offset, CHUNK_ROWS), row_group_size=CHUNK_ROWS)
            yield sink.take()
    yield sink.take()


def encode(
    frame: pl.DataFrame, fmt: SeriesFormat, next_cursor: str | None, *, compression: ArrowCompression = "zstd"
) -> Iterator[bytes]:
    if fmt == "json":
        return encode_json(frame, next_cursor)
    if fmt == "csv":
        return encode_csv(frame)
    if fmt == "arrow":
        return encode_arrow(frame, compression)
    return encode_parquet(frame)
