"""The InfluxDB store: InfluxDB 1.x (v1 ``/write``), 2.x and 3.x (``/api/v2/write``), InfluxQL for reading.

Writes are synchronous: :meth:`InfluxStore.write` returns only after InfluxDB
answered 204 for every request of the batch, so the ingestor acknowledges a
message only once its samples are stored. Requests are retried a few times
(honouring ``Retry-After``); then :class:`StoreUnavailable` tells the caller to
keep the data and try later. A point written twice overwrites itself (same
measurement, tags and timestamp), so redelivery never duplicates.

Schema (see docs/storage.md): measurement ``samples`` (tags member, asset,
asset_class, signal; fields value / text / quality), ``rollup_dirty`` markers and
``rollups`` (see :mod:`storage.influx.rollups`). On InfluxDB 1.x raw data lives
in the retention policy ``raw`` and rollups in ``rollups`` (durations from the
settings); on 2.x/3.x everything goes to one bucket whose retention is set on the
bucket.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC
from typing import Literal

import httpx
import polars as pl

from core.backoff import Backoff
from wire import Sample

from ..base import SERIES_SCHEMA, RollupQuery, Rollups, SeriesQuery, empty_series
from ..errors import StoreError, StoreRejected, StoreUnavailable
from ..ledger import ReleasedCell
from .batchlog import marker_bounds
from .connection import InfluxConnection, source
from .deletion import count_member_points, delete_points_v1, delete_points_v2, erase_ledger_values
from .influxql import Rows, ident, literal, parse_response, series_query, time_range, where
from .lineprotocol import SampleEncoder, encode_lines, encode_point
from .rollup_cache import RollupCache
from .rollup_points import dirty_markers
from .rollups import InfluxRollupKeeper

log = logging.getLogger(__name__)

Flavour = Literal["influxdb1", "influxdb2"]
#: Points per write request (InfluxDB recommends 5,000-10,000; smaller requests overlap better with encoding).
CHUNK_POINTS = 10_000
#: Ledger look-ups reach back this far before a window, so that a month that began before it is found.
_LONGEST_PERIOD_NS = 32 * 86_400 * 10**9
#: Write requests of one batch sent concurrently (the next one is encoded meanwhile).
REQUESTS_IN_FLIGHT = 1
#: Threads sending requests, shared by every batch written at the same time (the ingestor writes several
#: batches concurrently, see ``max_writes_in_flight``; InfluxDB ingests concurrent requests on several cores).
SENDER_THREADS = 4
_RETRYABLE = frozenset({404, 408, 429, 500, 502, 503, 504, 401, 403})


def _retry_after(headers: httpx.Headers | dict[str, str] | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110)."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def status_error(status: int, body: str, retry_after: float | None, what: str) -> StoreError:
    """Map an HTTP status of InfluxDB to a store error.

    Authentication and missing-database errors count as *unavailable*: they need an
    operator, and the data must wait for them rather than be thrown away.
    """
    message = f"InfluxDB {what} failed with HTTP {status}: {body[:300]}"
    if status in _RETRYABLE or status >= 500:
        return StoreUnavailable(message, retry_after=retry_after)
    return StoreRejected(message)


class InfluxStore:
    """A :class:`~storage.base.Store` on InfluxDB. Build it with :func:`storage.open_store`."""

    def __init__(
        self,
        *,
        flavour: Flavour,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        org: str = "",
        bucket: str = "",
        retention_days: int | None = None,
        rollup_retention_days: int | None = None,
        create_database: bool = True,
        timeout_s: float = 10.0,
        write_attempts: int = 3,
        max_retry_after_s: float = 30.0,
        verify: str | bool = True,
        rollup_cache_rows: int = 0,
        rollup_cache_days: int = 7,
    ) -> None:
        self.flavour = flavour
        self.url = url.rstrip("/")
        self.database = database
        self._bucket = bucket or database
        self._org = org
        self._retention_days = retention_days
        self._rollup_retention_days = rollup_retention_days
        self._create_database = create_database
        self._write_attempts = max(1, write_attempts)
        self._max_retry_after = max_retry_after_s
        headers = {}
        auth: tuple[str, str] | None = None
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username:
            auth = (username, password or "")
        self._http = httpx.Client(timeout=timeout_s, headers=headers, auth=auth, verify=verify)
        self._v2_write: Callable[[bytes], None] | None = None
        if flavour == "influxdb2":
            self._v2_write = self._make_v2_writer(token or f"{username or ''}:{password or ''}", timeout_s, verify)
        #: One encoder for every writing thread (it is thread-safe): its cache of series keys is warmed once.
        self._encoder = SampleEncoder()
        #: Sends one request while the calling thread encodes the next (the GIL is free during network waits).
        self._sender = ThreadPoolExecutor(max_workers=SENDER_THREADS, thread_name_prefix="influx-send")
        self._schema_ready = flavour == "influxdb2"
        self._schema_lock = threading.Lock()
        self.raw_rp = "raw" if flavour == "influxdb1" else None
        self.rollup_rp = "rollups" if flavour == "influxdb1" else None
        #: The release ledger is kept forever: its own retention policy where this store manages the schema.
        self.ledger_rp = "ledger" if flavour == "influxdb1" and create_database else None
        self._ledger_lock = threading.Lock()
        self.rollups = InfluxRollupKeeper(
            InfluxConnection(
                execute=self.execute, write_lines=self.write_lines, raw_rp=self.raw_rp, rollup_rp=self.rollup_rp
            ),
            RollupCache(max_rows=rollup_cache_rows, max_age_ns=rollup_cache_days * 86_400 * 10**9),
        )

    @property
    def retention_ns(self) -> int | None:
        """The configured ``retention_days`` (of the ``raw`` policy on 1.x; on 2.x/3.x the bucket's, as configured)."""
        return None if self._retention_days is None else self._retention_days * 86_400 * 10**9

    @property
    def late_recomputes(self) -> dict[str, int]:
        return dict(self.rollups.recomputes)

    # -- sources -------------------------------------------------------------------------------------
    def source(self, measurement: str, rp: str | None) -> str:
        return source(measurement, rp)

    # -- writing -------------------------------------------------------------------------------------
    def write(self, member: str, samples: Sequence[Sample]) -> int:
        """Write ``samples`` in requests of :data:`CHUNK_POINTS`, up to :data:`REQUESTS_IN_FLIGHT` at a time,
        encoding the next request while others are sent. Returns once InfluxDB accepted every request."""
        if not samples:
            return 0
        self._ensure_schema()
        encoder = self._encoder
        chunks = [samples[i : i + CHUNK_POINTS] for i in range(0, len(samples), CHUNK_POINTS)]
        sending: list[Future[None]] = []
        written_ns = 0
        bounds = marker_bounds(samples)
        try:
            for i, chunk in enumerate(chunks):
                body = encoder.encode(member, chunk)
                if i == len(chunks) - 1:
                    # Markers go last: once they are visible, all the batch's data is too.
                    for f in sending:
                        f.result()
                    sending.clear()
                    written_ns = time.time_ns()
                    body += b"\n" + dirty_markers(member, bounds, written_ns=written_ns, writer=self.rollups.log.writer)
                while len(sending) >= REQUESTS_IN_FLIGHT:
                    sending.pop(0).result()
                sending.append(self._sender.submit(self.write_lines, body, rp=self.raw_rp))
            while sending:
                sending.pop(0).result()
            self.rollups.wrote(member, samples, written_ns, bounds)  # folded without reading them back
        finally:
            for f in sending:
                f.cancel()
            for f in sending:
                with contextlib.suppress(Exception):
                    f.result()
        return len(samples)

    def write_many(self, batches: Mapping[str, Sequence[Sample]]) -> int:
        """One member after the other (each write is already split into requests sent concurrently)."""
        return sum(self.write(member, samples) for member, samples in batches.items())

    def write_lines(self, body: bytes, *, rp: str | None) -> None:
        """POST line protocol (ns precision), retrying retryable failures; raise a :class:`StoreError`."""
        attempt = 0
        backoff = Backoff(min(0.2, self._max_retry_after), self._max_retry_after)
        while True:
            attempt += 1
            try:
                self._post_lines(body, rp)
                return
            except StoreUnavailable as exc:
                if attempt >= self._write_attempts:
                    raise
                delay = backoff.next(exc.retry_after)
                log.warning("InfluxDB write attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
                time.sleep(delay)

    def _post_lines(self, body: bytes, rp: str | None) -> None:
        if self._v2_write is not None:
            self._v2_write(body)
            return
        params = {"db": self.database, "precision": "ns"}
        if rp:
            params["rp"] = rp
        try:
            r = self._http.post(f"{self.url}/write", params=params, content=body)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach InfluxDB at {self.url}: {exc}") from exc
        if r.status_code != 204:
            raise status_error(r.status_code, r.text, _retry_after(r.headers), "write")

    def _make_v2_writer(self, token: str, timeout_s: float, verify: str | bool) -> Callable[[bytes], None]:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        client = InfluxDBClient(
            url=self.url,
            token=token,
            org=self._org,
            timeout=int(timeout_s * 1000),
            retries=False,
            verify_ssl=verify is not False,
            ssl_ca_cert=verify if isinstance(verify, str) else None,
        )
        self._v2_client = client
        api = client.write_api(write_options=SYNCHRONOUS)

        def write(body: bytes) -> None:
            try:
                api.write(bucket=self._bucket, org=self._org or "-", record=body, write_precision=WritePrecision.NS)  # type: ignore[arg-type]
            except ApiException as exc:
                headers = dict(exc.headers or {})
                raise status_error(
                    int(exc.status or 0), str(exc.body or exc.reason), _retry_after(headers), "write"
                ) from exc
            except (Urllib3Error, OSError) as exc:
                raise StoreUnavailable(f"cannot reach InfluxDB at {self.url}: {exc}") from exc

        return write

    # -- schema (InfluxDB 1.x) ----------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self._create_database:
                db = ident(self.database)
                self.execute(f"CREATE DATABASE {db}")
                for rp, days, default in (
                    ("raw", self._retention_days, " DEFAULT"),
                    ("rollups", self._rollup_retention_days, ""),
                    ("ledger", None, ""),
                ):
                    duration = f"{int(days)}d" if days else "INF"
                    shard = "1d" if days and days <= 180 else "7d"
                    existing = self.execute(f"SHOW RETENTION POLICIES ON {db}")
                    verb = "ALTER" if rp in (existing.columns.get("name") or []) else "CREATE"
                    repl = "" if verb == "ALTER" else " REPLICATION 1"
                    self.execute(
                        f"{verb} RETENTION POLICY {ident(rp)} ON {db} DURATION {duration}{repl} "
                        f"SHARD DURATION {shard}{default}"
                    )
            self._schema_ready = True

    # -- reading -------------------------------------------------------------------------------------
    def execute(self, q: str, *, chunked: bool = False) -> Rows:
        """Run one InfluxQL statement through the v1 ``/query`` endpoint; return its rows (ns epoch times)."""
        params = {"db": self.database, "q": q, "epoch": "ns"}
        if chunked:
            params.update(chunked="true", chunk_size="20000")
        try:
            with self._http.stream("POST", f"{self.url}/query", data=params) as r:
                if r.status_code != 200:
                    body = r.read().decode(errors="replace")
                    if r.status_code == 400:
                        raise StoreRejected(f"InfluxDB refused the query: {body[:300]}")
                    raise status_error(r.status_code, body, _retry_after(r.headers), "query")
                return parse_response(r.iter_lines() if chunked else [r.read()])  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach InfluxDB at {self.url}: {exc}") from exc

    def query_series(self, query: SeriesQuery) -> pl.DataFrame:
        if any(v == () for v in (query.signals, query.asset_classes, query.members, query.assets)):
            return empty_series()
        self._ensure_schema()
        rows = self.execute(series_query(self.source("samples", self.raw_rp), query), chunked=True)
        frame = rows.frame(SERIES_SCHEMA)
        if frame.height == 0:
            return empty_series()
        frame = frame.sort(["ts", "member", "asset", "signal"])
        if query.after is not None:
            t, m, a, s = query.after
            member, asset, signal = pl.col("member"), pl.col("asset"), pl.col("signal")
            frame = frame.filter(
                (pl.col("ts") > t)
                | (
                    (pl.col("ts") == t)
                    & ((member > m) | ((member == m) & (asset > a)) | ((member == m) & (asset == a) & (signal > s)))
                )
            )
        if query.limit is not None:
            frame = frame.head(query.limit)
        if frame.height == 0:
            return empty_series()
        return frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC"))).select(
            [pl.col(c).cast(t) for c, t in SERIES_SCHEMA.items()]
        )

    def query_rollups(self, query: RollupQuery) -> pl.DataFrame:
        return self.read_rollups(query).frame

    def read_rollups(self, query: RollupQuery) -> Rollups:
        self._ensure_schema()
        return self.rollups.query(query)

    def refresh_rollups(self) -> int:
        """Bring the rollups up to date with everything written so far; return how many assets were refreshed."""
        self._ensure_schema()
        return self.rollups.refresh()

    # -- release ledger ------------------------------------------------------------------------------
    def released_cells(
        self, kpi: str, asset_class: str, start_ns: int, end_ns: int, period: str | None = None
    ) -> list[ReleasedCell]:
        """Ledger entries of ``kpi`` and ``asset_class`` whose period overlaps [start_ns, end_ns)."""
        self._ensure_schema()
        cond = where(
            f"{ident('kpi')} = {literal(kpi)}",
            f"{ident('asset_class')} = {literal(asset_class)}",
            None if period is None else f"{ident('period')} = {literal(period)}",
            time_range(start_ns - _LONGEST_PERIOD_NS, end_ns),
        )
        source = self.source("release_ledger", self.ledger_rp)
        rows = self.execute(f"SELECT {ident('entry')} FROM {source} WHERE {cond}")
        cells = [ReleasedCell.from_json(text) for text in rows.columns.get("entry", [])]
        found = [c for c in cells if c.period_end_ns > start_ns and c.period_start_ns < end_ns]
        return sorted(found, key=lambda c: (c.period_start_ns, c.period))

    def release(self, cells: Sequence[ReleasedCell]) -> None:
        """Add ``cells`` to the ledger; a cell already there stays as it was (the first release wins).

        InfluxDB has no conditional write, so the check and the write run under one lock:
        one API process per store releases cells (the embedded hub or the API role).
        """
        if not cells:
            return
        with self._ledger_lock:
            lo = min(c.period_start_ns for c in cells)
            hi = max(c.period_end_ns for c in cells)
            existing: set[tuple[str, str, str, int]] = set()
            for kpi, asset_class in {(c.kpi, c.asset_class) for c in cells}:
                existing.update(c.key for c in self.released_cells(kpi, asset_class, lo, hi))
            lines = [
                encode_point(
                    "release_ledger",
                    {"kpi": c.kpi, "asset_class": c.asset_class, "period": c.period},
                    {"entry": c.to_json()},
                    c.period_start_ns,
                )
                for c in cells
                if c.key not in existing
            ]
            if lines:
                self.write_lines(encode_lines(lines), rp=self.ledger_rp)

    # -- deletion ----------------------------------------------------------------------------------------
    def delete_member(self, member: str, *, group: str | None = None, now_ns: int | None = None) -> dict[str, int]:
        """Delete the member's points (see :mod:`storage.influx.deletion`); forget its cached series keys."""
        self._ensure_schema()
        rps = {"raw": self.raw_rp, "rollups": self.rollup_rp}
        counts = count_member_points(self.execute, rps, member)
        if self.flavour == "influxdb1":
            delete_points_v1(self.execute, member)
        else:
            delete_points_v2(self._post_delete, member)
        left = count_member_points(self.execute, rps, member)
        if any(left.values()):
            raise StoreUnavailable(f"InfluxDB still holds points of {member} after the deletion: {left}")
        self._encoder.forget(member)
        self.rollups.forget(member)
        counts["release_ledger"] = (
            0
            if group is None
            else erase_ledger_values(
                self.execute, self.write_lines, self.ledger_rp, group, time.time_ns() if now_ns is None else now_ns
            )
        )
        return counts

    def _post_delete(self, body: dict[str, str]) -> httpx.Response:
        try:
            return self._http.post(
                f"{self.url}/api/v2/delete", params={"org": self._org or "-", "bucket": self._bucket}, json=body
            )
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach InfluxDB at {self.url}: {exc}") from exc

    def enforce_retention(self, now_ns: int | None = None) -> int:
        """InfluxDB enforces retention itself (retention policies or bucket retention); nothing to do here."""
        return 0

    def close(self) -> None:
        self._sender.shutdown(wait=True)
        self._http.close()
        client = getattr(self, "_v2_client", None)
        if client is not None:
            client.close()
