"""Hub storage: the store interface, the embedded DuckDB store, the InfluxDB store,
hourly rollups and the ingestor that feeds them (reference: docs/storage.md).

Layout: ``base`` (the :class:`Store` protocol and frame schemas), ``rollups`` (the
pure rollup computation both stores share), ``incremental`` (the pure fold of new
samples into kept rollup rows), ``duckdb/`` and ``influx/`` (one
package per backend: store, connection, rollup keeper), ``ingestor`` with its
helpers (``validate``, ``deadletter``, ``gateways``, ``housekeeping``).

Public API::

    open_store(settings: StoreSettings) -> Store
        # DuckDBStore for kind "duckdb", InfluxStore for "influxdb1" / "influxdb2"

    class Store(Protocol):
        def write(self, member: str, samples: Sequence[Sample]) -> int   # synchronous, idempotent
        def write_many(self, batches: Mapping[str, Sequence[Sample]]) -> int   # a flush of several members
        def query_series(self, query: SeriesQuery) -> pl.DataFrame       # SERIES_SCHEMA
        def query_rollups(self, query: RollupQuery) -> pl.DataFrame      # ROLLUP_SCHEMA
        def read_rollups(self, query: RollupQuery) -> Rollups            # rows and as_of_ns
        def refresh_rollups(self) -> int                                 # housekeeping
        def enforce_retention(self, now_ns: int | None = None) -> int   # housekeeping
        def released_cells(...) -> list[ReleasedCell]; def release(cells) -> None   # release ledger
        def close(self) -> None

    class Ingestor:                                  # async context manager
        def __init__(self, settings: IngestSettings, store: Store,
                     register_provider: RegisterProvider, registry: CollectorRegistry | None = None)
        async def run(self) -> None                  # until stop() (or cancelled)
        def stop(self) -> None
        connected: asyncio.Event                     # set while connected and subscribed
        def gateways(self) -> list[GatewayState]     # birth/death and last seen
        registry, metrics, stored_samples, dead_lettered, pending_messages, store_ok

    RegisterProvider = Callable[[], MemberRegister]  # anything with is_active(pseudonym) -> bool

    StoreSettings(kind, path, url, database, org, bucket, token, username, password, ca_file,
                  create_database, retention_days, rollup_retention_days, timeout_s, write_attempts,
                  rollup_cache_rows, rollup_cache_days)
    IngestSettings(host, port, tls, ca_file, cert_file, key_file, username, password, client_id, protocol,
                   shared_group, session_expiry_s, keepalive_s, batch_max_samples, batch_max_delay_s,
                   max_inflight_messages, max_pending_messages, max_payload_bytes, retry_initial_s,
                   retry_max_s, dead_letter_path, dead_letter_max_bytes, rollup_refresh_s, retention_check_s)
"""

from .base import (
    AGGS,
    DOWNTIME_COLUMNS,
    ROLLUP_SCHEMA,
    SERIES_SCHEMA,
    Agg,
    RollupQuery,
    Rollups,
    SeriesQuery,
    Store,
    empty_rollups,
    empty_series,
)
from .deadletter import read_dead_letters
from .duckdb import DuckDBStore
from .errors import StoreError, StoreRejected, StoreUnavailable
from .gateways import GatewayState
from .influx import InfluxStore
from .ingestor import Ingestor, MemberRegister, RegisterProvider
from .ledger import ReleasedCell
from .rollups import compute_rollups
from .settings import IngestSettings, StoreKind, StoreSettings, open_store

__all__ = [
    "AGGS",
    "DOWNTIME_COLUMNS",
    "ROLLUP_SCHEMA",
    "SERIES_SCHEMA",
    "Agg",
    "DuckDBStore",
    "GatewayState",
    "InfluxStore",
    "IngestSettings",
    "Ingestor",
    "MemberRegister",
    "RegisterProvider",
    "ReleasedCell",
    "RollupQuery",
    "Rollups",
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
    "read_dead_letters",
]
