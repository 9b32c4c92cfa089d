"""Stores for the contract suite: the embedded DuckDB store and the InfluxDB store on a real InfluxDB 1.x."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import Store, StoreSettings, open_store
from testkit.servers import InfluxServer, start_influxdb

_db_names = itertools.count()


@pytest.fixture(scope="module")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = start_influxdb(tmp_path_factory.mktemp("influxdb"))
    try:
        yield server
    finally:
        server.stop()


def influx_settings(server: InfluxServer, **extra: object) -> StoreSettings:
    return StoreSettings.model_validate(
        {
            "kind": "influxdb1",
            "url": server.url,
            "database": f"contract{next(_db_names)}",
            "username": server.username,
            "password": server.password,
            **extra,
        }
    )


@pytest.fixture(params=["duckdb", pytest.param("influxdb1", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "duckdb":
        s = open_store(StoreSettings(kind="duckdb", path=tmp_path / "hub.duckdb"))
    else:
        s = open_store(influx_settings(request.getfixturevalue("influx_server")))
    try:
        yield s
    finally:
        s.close()
