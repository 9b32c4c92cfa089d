"""The server fixtures themselves: they start, answer, and survive a stop/start on the same data."""

from __future__ import annotations

import httpx
import pytest

from testkit.servers import InfluxServer, VictoriaMetricsServer

pytestmark = pytest.mark.integration


def test_influxdb_keeps_data_across_restart(influxdb: InfluxServer) -> None:
    auth = {"u": influxdb.username, "p": influxdb.password}
    httpx.post(f"{influxdb.url}/query", params={**auth, "q": "CREATE DATABASE fx"}).raise_for_status()
    r = httpx.post(f"{influxdb.url}/write", params={**auth, "db": "fx"}, content=b"m,t=a v=1.5 1700000000000000000")
    assert r.status_code == 204, r.text
    unauth = httpx.post(f"{influxdb.url}/write", params={"db": "fx"}, content=b"m v=1 1")
    assert unauth.status_code == 401
    influxdb.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{influxdb.url}/ping")
    influxdb.start()
    r = httpx.get(f"{influxdb.url}/query", params={**auth, "db": "fx", "q": "SELECT v FROM m"})
    assert r.json()["results"][0]["series"][0]["values"] == [["2023-11-14T22:13:20Z", 1.5]]


def test_victoria_metrics_accepts_v2_write(victoria_metrics: VictoriaMetricsServer) -> None:
    import time

    ts_ms = int(time.time() * 1000)
    r = httpx.post(f"{victoria_metrics.url}/api/v2/write", params={"precision": "ms"}, content=f"m,t=a v=2.5 {ts_ms}")
    assert r.status_code == 204, r.text
    series = victoria_metrics.export('{__name__="m_v"}', expect_points=1)
    assert series == [{"metric": {"__name__": "m_v", "t": "a"}, "values": [2.5], "timestamps": [ts_ms]}]
