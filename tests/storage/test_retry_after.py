"""``Retry-After`` end to end over HTTP: a throttling proxy in front of a real server.

No real InfluxDB can be made to answer 429 / 503 on demand, so a small HTTP proxy
sits in front of a real InfluxDB 1.x (v1 ``/write``) or a real VictoriaMetrics
(``/api/v2/write`` through influxdb-client). It refuses the first N write requests
with 429 or 503 and ``Retry-After: 1`` and forwards everything else (later writes,
queries) to the server unchanged. The tests check what the store does with that:
it waits the announced delay before retrying (not its own shorter back-off), sends
the same request again, and gives up with ``StoreUnavailable(retry_after=…)`` once
``write_attempts`` are used up, having stored nothing. ``Retry-After`` may also be an
HTTP-date (RFC 9110); that form is honoured too.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage import SeriesQuery, Store, StoreSettings, StoreUnavailable, open_store
from testkit.servers import InfluxServer, VictoriaMetricsServer
from wire import Sample

from .conftest import influx_settings

M = "m-7e57ab"
A = "a-0000000b"
RETRY_AFTER_S = 1.0
#: The store adds up to 10 % jitter to the delay; the rest is scheduling and a loopback round trip.
SLACK_S = 0.1 * RETRY_AFTER_S + 0.6
WRITE_PATHS = frozenset({"/write", "/api/v2/write"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)


@dataclass(frozen=True)
class WriteSeen:
    """One write request as the proxy saw it."""

    path: str
    body_sha256: str
    status: int  # what the client got: the refusal, or the upstream's answer
    arrived: float  # time.monotonic() when the request line arrived
    answered: float  # time.monotonic() with the response complete, just before it was sent


class ThrottlingProxy:
    """Refuses the first ``refuse`` write requests with ``status`` and ``Retry-After``; forwards the rest."""

    def __init__(
        self, upstream: str, *, refuse: int, status: int = 429, retry_after: str | Callable[[], str] = "1"
    ) -> None:
        target = urllib.parse.urlsplit(upstream)
        assert target.scheme == "http" and target.hostname == "127.0.0.1" and target.port
        self.upstream_host, self.upstream_port = target.hostname, target.port
        self.refuse, self.status, self.retry_after = refuse, status, retry_after
        self.writes: list[WriteSeen] = []
        self.forwarded_paths: list[str] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._refused = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def retry_after_value(self) -> str:
        return self.retry_after() if callable(self.retry_after) else self.retry_after

    def _take_refusal(self) -> bool:
        with self._lock:
            if self._refused < self.refuse:
                self._refused += 1
                return True
            return False

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=10)
        try:
            conn.request(method, path, body=body if body or method == "POST" else None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    for _ in range(100_000):
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline().strip():  # trailers, then the empty line
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    raise ValueError("request body has too many chunks")
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _handle(self) -> None:
                arrived = time.monotonic()
                try:
                    body = self._body()
                    is_write = urllib.parse.urlsplit(self.path).path in WRITE_PATHS
                    if is_write and proxy._take_refusal():
                        status = proxy.status
                        reply_headers = [
                            ("Content-Type", "application/json"),
                            ("Retry-After", proxy.retry_after_value()),
                        ]
                        reply_body = b'{"error":"engine: cache maximum memory size exceeded"}'
                    else:
                        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                        status, reply_headers, reply_body = proxy._forward(self.command, self.path, headers, body)
                        with proxy._lock:
                            proxy.forwarded_paths.append(self.path)
                    if is_write:
                        # Recorded before the answer goes out: once the client has its answer, the write is in
                        # ``writes`` (recording it afterwards raced the client and the test reading the list).
                        seen = WriteSeen(self.path, hashlib.sha256(body).hexdigest(), status, arrived, time.monotonic())
                        with proxy._lock:
                            proxy.writes.append(seen)
                    self._reply(status, reply_headers, reply_body)
                except BaseException as exc:
                    with proxy._lock:
                        proxy.errors.append(exc)
                    raise

            do_GET = do_POST = _handle

        return Handler


@pytest.fixture
def proxies() -> Iterator[list[ThrottlingProxy]]:
    started: list[ThrottlingProxy] = []
    try:
        yield started
    finally:
        for p in started:
            p.close()


def samples(base_ts: int) -> list[Sample]:
    out = [
        Sample(ts=base_ts + i * 10**9, asset=A, asset_class="press", signal="power_kw", value=10.0 + i, quality=i % 2)
        for i in range(20)
    ]
    out.append(Sample(ts=base_ts, asset=A, asset_class="press", signal="state", value="running"))
    return out


def v1_store(server: InfluxServer, proxy: ThrottlingProxy, **extra: object) -> Store:
    return open_store(influx_settings(server, url=proxy.url, timeout_s=5, **extra))


def v2_store(vm: VictoriaMetricsServer, proxy: ThrottlingProxy, **extra: object) -> Store:
    settings = {"kind": "influxdb2", "url": proxy.url, "token": "vm-ignores-tokens", "org": "mdh", "bucket": "mdh"}
    return open_store(StoreSettings.model_validate({**settings, "timeout_s": 5, **extra}))


def assert_waited_retry_after(writes: list[WriteSeen]) -> None:
    """Each retry arrived no sooner than Retry-After after the refusal before it, and not much later."""
    for refused, retry in itertools.pairwise(writes):
        gap = retry.arrived - refused.answered
        assert RETRY_AFTER_S <= gap <= RETRY_AFTER_S + SLACK_S, f"retried {gap:.3f} s after a Retry-After: 1"


@pytest.mark.integration
@pytest.mark.parametrize(("status", "refusals"), [(429, 2), (503, 1)])
def test_v1_write_waits_retry_after_then_lands_exactly_once(
    influx_server: InfluxServer, proxies: list[ThrottlingProxy], status: int, refusals: int
) -> None:
    proxy = ThrottlingProxy(influx_server.url, refuse=refusals, status=status)
    proxies.append(proxy)
    batch = samples(int(time.time_ns()) // 10**9 * 10**9 - 3600 * 10**9)
    store = v1_store(influx_server, proxy, write_attempts=3)
    try:
        t0 = time.monotonic()
        assert store.write(M, batch) == len(batch)
        elapsed = time.monotonic() - t0
        got = store.query_series(SeriesQuery(members=(M,)))
    finally:
        store.close()

    assert not proxy.errors
    assert [w.status for w in proxy.writes] == [status] * refusals + [204]
    assert all(w.path.startswith("/write?") and "rp=raw" in w.path for w in proxy.writes)
    assert len({w.body_sha256 for w in proxy.writes}) == 1  # the retry resends the very same request
    assert_waited_retry_after(proxy.writes)
    assert elapsed <= refusals * (RETRY_AFTER_S + SLACK_S) + 2.0
    assert sum(p.startswith("/write?") for p in proxy.forwarded_paths) == 1  # InfluxDB received the batch once

    assert got.height == len(batch)
    power = got.filter(got["signal"] == "power_kw")
    assert power["value"].to_list() == [10.0 + i for i in range(20)]
    assert power["quality"].to_list() == [i % 2 for i in range(20)]
    assert got.filter(got["signal"] == "state")["text"].to_list() == ["running"]


@pytest.mark.integration
def test_v1_write_honours_retry_after_given_as_an_http_date(
    influx_server: InfluxServer, proxies: list[ThrottlingProxy]
) -> None:
    """RFC 9110 allows ``Retry-After: <HTTP-date>``; two seconds ahead, whole seconds: a wait of 1 to 2 s."""
    proxy = ThrottlingProxy(
        influx_server.url, refuse=1, status=503, retry_after=lambda: formatdate(time.time() + 2, usegmt=True)
    )
    proxies.append(proxy)
    batch = samples(time.time_ns() // 10**9 * 10**9 - 3600 * 10**9)
    store = v1_store(influx_server, proxy, write_attempts=2)
    try:
        assert store.write(M, batch) == len(batch)
        assert store.query_series(SeriesQuery(members=(M,))).height == len(batch)
    finally:
        store.close()
    assert not proxy.errors
    assert [w.status for w in proxy.writes] == [503, 204]
    gap = proxy.writes[1].arrived - proxy.writes[0].answered
    assert 0.9 <= gap <= 2.0 * 1.1 + SLACK_S, f"retried {gap:.3f} s after a Retry-After two seconds ahead"


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["influxdb1", "influxdb2"])
def test_more_refusals_than_attempts_is_unavailable_with_retry_after_and_stores_nothing(
    request: pytest.FixtureRequest, proxies: list[ThrottlingProxy], kind: str
) -> None:
    batch = samples(time.time_ns() // 10**6 * 10**6 - 60 * 10**9)
    if kind == "influxdb1":
        server: InfluxServer = request.getfixturevalue("influx_server")
        proxy = ThrottlingProxy(server.url, refuse=5, status=503)
        proxies.append(proxy)
        store = v1_store(server, proxy, write_attempts=2)
    else:
        vm: VictoriaMetricsServer = request.getfixturevalue("victoria_metrics")
        proxy = ThrottlingProxy(vm.url, refuse=5, status=429)
        proxies.append(proxy)
        store = v2_store(vm, proxy, write_attempts=2)
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.write(M, batch)
        assert info.value.retry_after == RETRY_AFTER_S
        assert info.value.retryable
        if kind == "influxdb1":
            assert store.query_series(SeriesQuery(members=(M,))).height == 0
    finally:
        store.close()

    assert not proxy.errors
    assert len(proxy.writes) == 2  # write_attempts, no more
    assert all(w.status == proxy.status for w in proxy.writes)
    assert_waited_retry_after(proxy.writes)
    assert not any(urllib.parse.urlsplit(p).path in WRITE_PATHS for p in proxy.forwarded_paths)
    if kind == "influxdb2":
        assert vm.export(f'{{member="{M}"}}', expect_points=0) == []


@pytest.mark.integration
def test_v2_write_waits_retry_after_then_lands(
    victoria_metrics: VictoriaMetricsServer, proxies: list[ThrottlingProxy]
) -> None:
    proxy = ThrottlingProxy(victoria_metrics.url, refuse=1, status=429)
    proxies.append(proxy)
    batch = samples(time.time_ns() // 10**6 * 10**6 - 60 * 10**9)
    store = v2_store(victoria_metrics, proxy)
    try:
        assert store.write(M, batch) == len(batch)
    finally:
        store.close()

    assert not proxy.errors
    assert [w.status for w in proxy.writes] == [429, 204]
    assert all(w.path.startswith("/api/v2/write?") for w in proxy.writes)
    assert proxy.writes[0].body_sha256 == proxy.writes[1].body_sha256
    assert_waited_retry_after(proxy.writes)

    series = victoria_metrics.export(f'{{__name__="samples_value",member="{M}"}}', expect_points=20)
    assert len(series) == 1
    assert series[0]["metric"]["signal"] == "power_kw"
    assert series[0]["values"] == [10.0 + i for i in range(20)]
    assert series[0]["timestamps"] == [s.ts // 10**6 for s in batch[:20]]
