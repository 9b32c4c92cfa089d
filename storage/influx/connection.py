"""The narrow view of an InfluxDB store that its rollup keeper works through.

The keeper runs InfluxQL, writes line protocol and needs to know in which
retention policy raw data and rollups live; nothing else of the store. The store
builds one :class:`InfluxConnection` from its own methods and hands it over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .influxql import Rows, ident


class Execute(Protocol):
    def __call__(self, q: str, *, chunked: bool = False) -> Rows: ...


class WriteLines(Protocol):
    def __call__(self, body: bytes, *, rp: str | None) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class InfluxConnection:
    execute: Execute
    write_lines: WriteLines
    raw_rp: str | None
    rollup_rp: str | None


def source(measurement: str, rp: str | None) -> str:
    """The InfluxQL source of ``measurement`` in retention policy ``rp`` (the default one if ``None``)."""
    return f"{ident(rp)}.{ident(measurement)}" if rp else ident(measurement)
