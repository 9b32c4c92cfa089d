"""The ``/api/v2/write`` path (InfluxDB 2.x / 3.x) through influxdb-client, against a real VictoriaMetrics.

VictoriaMetrics speaks the v2 write protocol but keeps numbers only, at millisecond
precision, and has no InfluxQL: this leg checks what reaches the server (numeric
fields, tags, timestamps to the millisecond, the dirty markers), and how the store
behaves when the server is gone. Reading is covered by the contract suite.
"""

from __future__ import annotations

import time

import pytest

from storage import StoreSettings, StoreUnavailable, open_store
from storage.errors import StoreRejected
from storage.influx import status_error
from testkit.servers import VictoriaMetricsServer
from wire import Sample

M = "m-c0ffee"


def v2_store(vm: VictoriaMetricsServer, **extra: object):  # type: ignore[no-untyped-def]
    return open_store(
        StoreSettings.model_validate(
            {"kind": "influxdb2", "url": vm.url, "token": "vm-ignores-tokens", "org": "mdh", "bucket": "mdh", **extra}
        )
    )


@pytest.mark.integration
def test_numbers_tags_and_millisecond_timestamps_arrive(victoria_metrics: VictoriaMetricsServer) -> None:
    now_ms = time.time_ns() // 10**6
    samples = [
        Sample(
            ts=(now_ms - 1000 + i) * 10**6 + 123_456,
            asset="a-0000000a",
            asset_class="press",
            signal="power_kw",
            value=1.5 + i,
            quality=i % 3,
        )
        for i in range(200)
    ]
    samples.append(Sample(ts=now_ms * 10**6, asset="a-0000000a", asset_class="press", signal="state", value="idle"))
    store = v2_store(victoria_metrics)
    written_ms = time.time_ns() // 10**6
    try:
        assert store.write(M, samples) == 201
    finally:
        store.close()
    series = victoria_metrics.export('{__name__="samples_value"}', expect_points=200)
    assert len(series) == 1
    assert series[0]["metric"] == {
        "__name__": "samples_value",
        "member": M,
        "asset": "a-0000000a",
        "asset_class": "press",
        "signal": "power_kw",
    }
    assert series[0]["values"] == [1.5 + i for i in range(200)]
    assert series[0]["timestamps"] == [s.ts // 10**6 for s in samples[:200]]
    quality = victoria_metrics.export('{__name__="samples_quality",signal="power_kw"}', expect_points=200)
    assert quality[0]["values"] == [float(i % 3) for i in range(200)]
    # one rollup marker for the asset: stamped with the write's clock, the batch's first and last sample time,
    # tagged with the writing process
    # (VictoriaMetrics keeps them as float64: exact to a few hundred ns at today's epoch)
    lo = victoria_metrics.export('{__name__="rollup_dirty_lo_ns"}', expect_points=1)
    hi = victoria_metrics.export('{__name__="rollup_dirty_hi_ns"}', expect_points=1)
    assert lo[0]["metric"] == {
        "__name__": "rollup_dirty_lo_ns",
        "member": M,
        "asset": "a-0000000a",
        "asset_class": "press",
        "writer": store.rollups.log.writer,
    }
    assert lo[0]["values"] == [pytest.approx(min(s.ts for s in samples), rel=1e-15)]
    assert hi[0]["values"] == [pytest.approx(max(s.ts for s in samples), rel=1e-15)]
    assert written_ms <= lo[0]["timestamps"][0] <= time.time_ns() // 10**6


@pytest.mark.integration
def test_server_gone_is_unavailable_after_the_configured_attempts(victoria_metrics: VictoriaMetricsServer) -> None:
    store = v2_store(victoria_metrics, write_attempts=2, timeout_s=2)
    victoria_metrics.stop()
    sample = Sample(ts=time.time_ns(), asset="a-0000000a", asset_class="press", signal="power_kw", value=1.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.write(M, [sample])
        assert time.monotonic() - t0 < 5
        victoria_metrics.start()
        assert store.write(M, [sample]) == 1  # the same store object recovers once the server is back
    finally:
        store.close()


@pytest.mark.parametrize(
    ("status", "retry_after", "kind"),
    [
        (503, 7.0, StoreUnavailable),
        (429, 2.0, StoreUnavailable),
        (500, None, StoreUnavailable),
        (401, None, StoreUnavailable),  # credentials need an operator; the data waits rather than being dropped
        (404, None, StoreUnavailable),
        (400, None, StoreRejected),
        (413, None, StoreRejected),
    ],
)
def test_http_status_mapping(status: int, retry_after: float | None, kind: type[Exception]) -> None:
    err = status_error(status, "body", retry_after, "write")
    assert type(err) is kind
    assert err.retry_after == retry_after
    assert err.retryable is (kind is StoreUnavailable)
