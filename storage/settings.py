"""Settings of the hub's storage side, and the factory that opens a store from them.

Plain pydantic models: the hub composes them into its one settings class
(``[store]`` and ``[ingest]`` tables of the hub configuration file).
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from core.configfile import with_paths_resolved
from core.mqtt import MqttEndpoint
from wire.codec import DEFAULT_MAX_AHEAD_S

from .base import Store

StoreKind = Literal["duckdb", "influxdb1", "influxdb2"]


class StoreSettings(BaseModel):
    """Which store to use and how to reach it.

    * ``duckdb``: ``path`` of the DuckDB file.
    * ``influxdb1``: ``url``, ``database``, ``username`` / ``password`` (InfluxDB 1.x; v1 write and query).
    * ``influxdb2``: ``url``, ``org``, ``bucket``, ``token`` for writing through ``/api/v2/write``
      (InfluxDB 2.x / 3.x); queries go to the v1 ``/query`` endpoint with ``database`` as the
      database name (2.x maps it to the bucket through DBRP; by default it is the bucket's name).
      InfluxDB 1.8's v2 compatibility takes ``username`` / ``password`` instead of a token.

    ``retention_days`` keeps raw samples that long (``None``: for ever), ``rollup_retention_days``
    the hourly rollups. They apply to the DuckDB store and to InfluxDB 1.x (retention policies
    ``raw`` and ``rollups``); on 2.x/3.x retention is a property of the bucket (give ``retention_days`` the
    bucket's all the same: the ingestor refuses samples older than it, see storage.ingestor).
    """

    model_config = ConfigDict(extra="forbid")

    kind: StoreKind = "duckdb"
    path: Path = Path("data/hub.duckdb")
    url: str = "http://127.0.0.1:8086"
    database: str = "metalldaten"
    org: str = ""
    bucket: str = ""
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    create_database: bool = Field(default=True, description="InfluxDB 1.x: create database and retention policies")
    retention_days: int | None = Field(default=None, ge=1)
    rollup_retention_days: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    write_attempts: int = Field(default=3, ge=1, le=20)
    rollup_cache_rows: int = Field(
        default=200_000, ge=0, le=20_000_000, description="InfluxDB: rollup rows of settled hours kept for queries"
    )
    rollup_cache_days: int = Field(default=7, ge=1, le=3660, description="InfluxDB: oldest hour the cache keeps")

    @model_validator(mode="after")
    def _check(self) -> StoreSettings:
        if self.kind == "influxdb2" and self.token is None and self.username is None:
            raise ValueError("kind 'influxdb2' needs a token (or username and password for InfluxDB 1.8)")
        if (
            self.rollup_retention_days is not None
            and self.retention_days is not None
            and self.rollup_retention_days < self.retention_days
        ):
            raise ValueError("rollup_retention_days must not be shorter than retention_days")
        if self.rollup_retention_days is not None and self.rollup_cache_days > self.rollup_retention_days:
            raise ValueError(
                f"rollup_cache_days ({self.rollup_cache_days}) must not be longer than rollup_retention_days "
                f"({self.rollup_retention_days}): the cache would answer hours InfluxDB has dropped"
            )
        return self

    def resolve_paths(self, base: Path) -> StoreSettings:
        """A copy whose relative paths are taken relative to ``base`` (an in-memory DuckDB stays so)."""
        return with_paths_resolved(self, base, ("ca_file",) if str(self.path) == ":memory:" else ("path", "ca_file"))


def open_store(settings: StoreSettings) -> Store:
    """Open the store ``settings`` describe. Raises :class:`~storage.errors.StoreError` if it cannot."""
    if settings.kind == "duckdb":
        from .duckdb import DuckDBStore

        return DuckDBStore(
            settings.path,
            retention_days=settings.retention_days,
            rollup_retention_days=settings.rollup_retention_days,
        )
    from .influx import InfluxStore

    return InfluxStore(
        flavour=settings.kind,
        url=settings.url,
        database=settings.database,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        token=settings.token.get_secret_value() if settings.token else None,
        org=settings.org,
        bucket=settings.bucket or settings.database,
        retention_days=settings.retention_days,
        rollup_retention_days=settings.rollup_retention_days,
        create_database=settings.create_database,
        timeout_s=settings.timeout_s,
        write_attempts=settings.write_attempts,
        rollup_cache_rows=settings.rollup_cache_rows,
        rollup_cache_days=settings.rollup_cache_days,
        verify=str(settings.ca_file) if settings.ca_file else True,
    )


def _default_client_id() -> str:
    return f"mdh-ingestor-{socket.gethostname()[:24]}-{secrets.token_hex(8)}"


class IngestSettings(BaseModel):
    """How the ingestor reaches the broker, and how it batches.

    ``max_inflight_messages`` is sent to the broker as the MQTT v5 *Receive Maximum*: the broker
    delivers at most that many unacknowledged messages, so when the store is slow or down
    the ingestor stops acknowledging and the broker stops sending (memory stays bounded;
    the backlog waits in the broker's queue). ``shared_group`` ``None`` subscribes without a
    shared-subscription group (MQTT 3.1.1 brokers, a single ingestor).
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    #: The broker's ingestor listener (broker_config/mosquitto.conf), where client ids are the ingestors' own.
    port: int = Field(default=8885, ge=1, le=65535)
    tls: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = "ingestor"
    password: SecretStr | None = None
    #: Unique per ingestor instance and unguessable (the broker keeps each one's session and unacknowledged
    #: messages under it): the host name for the operator's eye plus a random part drawn at start. Set it
    #: explicitly to resume the same broker session after a restart.
    client_id: str = Field(default_factory=lambda: _default_client_id(), min_length=1, max_length=64)
    protocol: Literal["5", "3.1.1"] = "5"
    #: Shared-subscription group; "" (or none) subscribes without one (MQTT 3.1.1 brokers, a single ingestor).
    shared_group: str | None = Field(default="ingest", pattern=r"^[A-Za-z0-9_-]{0,64}$")
    session_expiry_s: int = Field(default=3600, ge=0)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    batch_max_samples: int = Field(default=20_000, ge=1)
    batch_max_delay_s: float = Field(default=0.05, gt=0, le=60)
    max_inflight_messages: int = Field(default=500, ge=1, le=65535)
    #: Hard bound on messages held unacknowledged in memory (see storage.ingestor); at least max_inflight_messages.
    max_pending_messages: int = Field(default=2000, ge=1)
    max_payload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: A batch holding a sample stamped more than this many seconds ahead of the hub's clock is refused
    #: (dead-lettered with the code ``future``): see wire.codec.DEFAULT_MAX_AHEAD_S.
    max_ahead_s: float = Field(default=DEFAULT_MAX_AHEAD_S, gt=0, le=7 * 86_400)
    #: Distinct assets and gateways a member may send from, per ingest worker and start (see storage.quota).
    max_assets_per_member: int = Field(default=10_000, ge=1)
    max_gateways_per_member: int = Field(default=100, ge=1)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0, le=600)
    dead_letter_path: Path = Path("data/dead-letters.jsonl")
    dead_letter_max_bytes: int = Field(default=256 * 1024 * 1024, ge=4096)
    rollup_refresh_s: float | None = Field(default=5.0, gt=0)
    retention_check_s: float = Field(default=3600.0, gt=0)
    #: Batches written to the store at the same time: while one write waits for the store the next is encoded
    #: and sent, so the store always has work; each batch is acknowledged once its own write succeeded.
    max_writes_in_flight: int = Field(default=2, ge=1, le=16)
    #: Ingestor processes on the shared subscription (see docs/hub.md): the hub process runs the first and
    #: starts the others; more than one needs a shared_group and a store several processes can write to.
    workers: int = Field(default=1, ge=1, le=16)

    @model_validator(mode="after")
    def _check_bounds(self) -> IngestSettings:
        if self.max_pending_messages < self.max_inflight_messages:
            raise ValueError("max_pending_messages must be at least max_inflight_messages")
        return self

    def endpoint(self) -> MqttEndpoint:
        """The broker connection: a persistent session (the broker keeps unacknowledged messages for
        ``session_expiry_s``), manual acknowledgements, reconnects within 1 s .. 60 s."""
        return MqttEndpoint(
            name="ingest",
            host=self.host,
            port=self.port,
            client_id=self.client_id,
            username=self.username or None,
            password=self.password.get_secret_value() if self.password else None,
            tls=self.tls,
            ca_file=self.ca_file,
            client_cert=self.cert_file,
            client_key=self.key_file,
            protocol=self.protocol,
            clean_session=False,
            keepalive_s=self.keepalive_s,
            backoff_min_s=min(1.0, self.retry_max_s),
            backoff_max_s=max(2.0, min(self.retry_max_s, 60.0)),
            manual_ack=True,
            session_expiry_s=self.session_expiry_s,
            receive_maximum=self.max_inflight_messages,
        )

    def resolve_paths(self, base: Path) -> IngestSettings:
        """A copy whose relative paths are taken relative to ``base``."""
        return with_paths_resolved(self, base, ("ca_file", "cert_file", "key_file", "dead_letter_path"))
