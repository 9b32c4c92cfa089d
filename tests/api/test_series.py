"""``/v1/series``: every format round-trips into polars, cursors page through all rows exactly once."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from storage import SERIES_SCHEMA, DuckDBStore, SeriesQuery, Store, StoreSettings, open_store
from wire import Sample

from .conftest import T0, Hub, make_hub


def from_json(body: dict[str, Any]) -> pl.DataFrame:
    frame = pl.DataFrame(body["data"], schema={**SERIES_SCHEMA, "ts": pl.String}, orient="row")
    return frame.with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.9fZ", time_unit="ns", time_zone="UTC"))


def from_csv(content: bytes) -> pl.DataFrame:
    frame = pl.read_csv(io.BytesIO(content), schema={**SERIES_SCHEMA, "ts": pl.String})
    return frame.with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.9fZ", time_unit="ns", time_zone="UTC"))


READERS = {
    "json": lambda r: from_json(r.json()),
    "csv": lambda r: from_csv(r.content),
    "arrow": lambda r: pl.read_ipc_stream(io.BytesIO(r.content)),
    "parquet": lambda r: pl.read_parquet(io.BytesIO(r.content)),
}
ACCEPT = {
    "json": "application/json",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
QUERY = "member=m-c00001&signal=state&signal=energy_kwh&start=2026-03-02T06:00:00Z&end=2026-03-03T12:00:00Z"


@pytest.mark.parametrize("fmt", list(READERS))
@pytest.mark.parametrize("how", ["param", "accept"])
def test_formats_round_trip(hub: Hub, filled_store: DuckDBStore, fmt: str, how: str) -> None:
    expected = filled_store.query_series(
        SeriesQuery(
            members=("m-c00001",),
            signals=("state", "energy_kwh"),
            start_ns=1772431200 * 10**9,
            end_ns=1772539200 * 10**9,
        )
    )
    assert expected.height > 500  # both texts (states) and numbers, across the data gap of m-c00001
    headers = hub.auth("analyst")
    url = f"/v1/series?{QUERY}"
    if how == "param":
        url += f"&format={fmt}"
    else:
        headers["Accept"] = ACCEPT[fmt]
    r = hub.client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(ACCEPT[fmt])
    assert r.headers["x-row-count"] == str(expected.height)
    got = READERS[fmt](r)
    assert got.schema == pl.Schema(SERIES_SCHEMA)
    assert got.equals(expected)


@pytest.mark.parametrize("fmt", list(READERS))
def test_downsampled_and_empty_results_round_trip(hub: Hub, filled_store: DuckDBStore, fmt: str) -> None:
    for url, query in (
        (
            "/v1/series?signal=power_kw&every=1h&agg=max&member=m-d00001",
            SeriesQuery(signals=("power_kw",), every_s=3600, agg="max", members=("m-d00001",)),
        ),
        ("/v1/series?signal=temperature_c", SeriesQuery(signals=("temperature_c",))),
    ):
        expected = filled_store.query_series(query)
        r = hub.client.get(f"{url}&format={fmt}", headers=hub.auth("analyst"))
        assert r.status_code == 200
        assert READERS[fmt](r).equals(expected)


def test_accept_with_quality_and_unknown(hub: Hub) -> None:
    r = hub.client.get(
        "/v1/series?limit=1",
        headers={**hub.auth("analyst"), "Accept": "text/csv;q=0.5, application/vnd.apache.parquet"},
    )
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    r = hub.client.get("/v1/series?limit=1", headers={**hub.auth("analyst"), "Accept": "image/png"})
    assert r.status_code == 406 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("fmt", "page"), [("json", 997), ("arrow", 4000)])
def test_cursor_pages_cover_every_row_exactly_once(hub: Hub, filled_store: DuckDBStore, fmt: str, page: int) -> None:
    expected = filled_store.query_series(SeriesQuery(members=("m-b00001", "m-c00001"), signals=("parts_total",)))
    pages: list[pl.DataFrame] = []
    cursor: str | None = None
    while True:
        url = f"/v1/series?member=m-b00001&member=m-c00001&signal=parts_total&limit={page}&format={fmt}"
        if cursor:
            url += f"&cursor={cursor}"
        r = hub.client.get(url, headers=hub.auth("analyst"))
        assert r.status_code == 200
        pages.append(READERS[fmt](r))
        cursor = r.json()["next_cursor"] if fmt == "json" else r.headers.get("x-next-cursor")
        if fmt != "json":
            assert (cursor is None) == ("link" not in r.headers)
        if cursor is None:
            break
        assert pages[-1].height == page
    assert len(pages) == -(-expected.height // page)
    assert pl.concat(pages).equals(expected)


def test_member_paging_stays_in_own_data(hub: Hub) -> None:
    r = hub.client.get("/v1/series?limit=10", headers=hub.auth("member_b"))
    cursor = r.json()["next_cursor"]
    r2 = hub.client.get(f"/v1/series?limit=10&cursor={cursor}", headers=hub.auth("member_b"))
    assert {row["member"] for row in r.json()["data"] + r2.json()["data"]} == {"m-b00001"}


def test_page_size_is_capped(tmp_path, filled_store: DuckDBStore) -> None:  # type: ignore[no-untyped-def]
    from .conftest import make_hub

    h = make_hub(tmp_path, filled_store, max_page_rows=50)
    r = h.client.get("/v1/series?limit=100000", headers=h.auth("analyst"))
    assert r.json()["rows"] == 50 and r.json()["next_cursor"]


@pytest.mark.parametrize(("every", "status"), [("9999d", 200), ("99999h", 200), ("10000d", 422), ("0s", 422)])
def test_widest_buckets_are_served_and_wider_ones_refused(hub: Hub, every: str, status: int) -> None:
    r = hub.client.get(f"/v1/series?every={every}&agg=max&signal=power_kw", headers=hub.auth("analyst"))
    assert r.status_code == status, r.text
    if status == 200:
        assert {row["member"] for row in r.json()["data"]} == {
            "m-a00001",
            "m-a00002",
            "m-b00001",
            "m-c00001",
            "m-d00001",
            "m-e00001",
            "m-f00001",
        }


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_arrow_compressions_round_trip(hub: Hub, filled_store: DuckDBStore, compression: str) -> None:
    import pyarrow as pa

    expected = filled_store.query_series(SeriesQuery(members=("m-e00001",), signals=("state", "power_kw")))
    r = hub.client.get(
        f"/v1/series?member=m-e00001&signal=state&signal=power_kw&format=arrow&compression={compression}",
        headers=hub.auth("analyst"),
    )
    assert pl.read_ipc_stream(io.BytesIO(r.content)).equals(expected)
    assert pa.ipc.open_stream(r.content).read_all().num_rows == expected.height


@pytest.fixture(params=["duckdb", pytest.param("influxdb1", marks=pytest.mark.integration)])
def small_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store of each kind with a few samples of one member (InfluxDB 1.x: a real server)."""
    if request.param == "duckdb":
        store = open_store(StoreSettings(kind="duckdb", path=tmp_path / "hub.duckdb"))
    else:
        server = request.getfixturevalue("influxdb")
        store = open_store(
            StoreSettings.model_validate(
                {
                    "kind": "influxdb1",
                    "url": server.url,
                    "database": "guard",
                    "username": server.username,
                    "password": server.password,
                }
            )
        )
    ts0 = int(T0.timestamp()) * 10**9
    store.write(
        "m-a00001",
        [Sample(ts0 + i * 60 * 10**9, "a-00000a01", "cnc_milling", "power_kw", float(i)) for i in range(5)],
    )
    try:
        yield store
    finally:
        store.close()


CONTROL_VALUES = ["power_kw\n", "power_kw\r\nX-Injected: 1", "a\x00b", "x\x1b[31m", "x\x7f", "x\x85", "x\u2028y"]


@pytest.mark.parametrize("param", ["signal", "asset_class", "asset", "member", "agg", "every", "cursor", "format"])
def test_control_characters_in_filters_are_a_422_problem_on_every_store(
    small_store: Store, tmp_path: Path, param: str
) -> None:
    hub = make_hub(tmp_path, small_store)  # type: ignore[arg-type]
    with hub.client as client:
        fine = client.get(
            "/v1/series", params={"signal": "power_kw", "start": "2026-03-01T00:00:00Z"}, headers=hub.auth("analyst")
        )
        assert fine.status_code == 200 and fine.json()["rows"] == 5  # the store answers; only the values differ
        for value in CONTROL_VALUES:
            r = client.get("/v1/series", params={param: value}, headers=hub.auth("analyst"))
            assert r.status_code == 422, (value, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            body = r.json()
            assert body["type"] == "urn:metalldaten:problem:invalid-request" and body["status"] == 422
            assert param in body["detail"] and "control character" in body["detail"], body
        metrics = hub.app.state.ctx.metrics.registry
        refused = metrics.get_sample_value("mdh_api_invalid_requests_total", {"reason": "control_character"})
        assert refused == len(CONTROL_VALUES)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/kpis?asset=a-00000a01%0A",
        "/v1/kpis?kpi=utilisation%00",
        "/v1/benchmarks/utilisation?asset_class=cnc_milling%0A&period=day",
        "/v1/catalog?x%0Ay=1",
        "/v1/tokens/tk-3f9a1c2b%0A",
    ],
)
def test_control_characters_are_refused_on_every_route(hub: Hub, path: str) -> None:
    method = "DELETE" if path.startswith("/v1/tokens/") else "GET"
    r = hub.client.request(method, path, headers=hub.auth("admin" if method == "DELETE" else "analyst"))
    assert r.status_code == 422 and "control character U+00" in r.json()["detail"], r.text
