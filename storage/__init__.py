"""Hub storage: the store interface, the embedded DuckDB store, the InfluxDB store,
hourly rollups and the ingestor that feeds them."""

from .base import (
    AGGS,
    ROLLUP_SCHEMA,
    SERIES_SCHEMA,
    Agg,
    RollupQuery,
    SeriesQuery,
    Store,
    empty_rollups,
    empty_series,
)
from .duckdb_store import DuckDBStore
from .errors import StoreError, StoreRejected, StoreUnavailable
from .ingestor import Ingestor, RegisterProvider
from .rollups import compute_rollups
from .settings import IngestSettings, StoreKind, StoreSettings, open_store

__all__ = [
    "AGGS",
    "ROLLUP_SCHEMA",
    "SERIES_SCHEMA",
    "Agg",
    "DuckDBStore",
    "IngestSettings",
    "Ingestor",
    "RegisterProvider",
    "RollupQuery",
    "SeriesQuery",
    "Store",
    "StoreError",
    "StoreKind",
    "StoreRejected",
    "StoreSettings",
    "StoreUnavailable",
    "compute_rollups",
    "empty_rollups",
    "empty_series",
    "open_store",
]
