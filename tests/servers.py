"""Server fixtures (Mosquitto, InfluxDB 1.x, VictoriaMetrics) on the starters of :mod:`testkit.servers`.

A :class:`~testkit.servers.ServerMissing` raised while a test sets up or runs (by a
fixture, or by a starter the test calls itself) skips the test on a developer
machine and fails it when ``CI=true``: CI must never pass by skipping the real thing.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from testkit.servers import (
    InfluxServer,
    MosquittoServer,
    ServerMissing,
    VictoriaMetricsServer,
    start_influxdb,
    start_mosquitto,
    start_victoria_metrics,
)


def missing(exc: ServerMissing) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(str(exc))
    pytest.skip(str(exc))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except ServerMissing as exc:
        missing(exc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except ServerMissing as exc:
        missing(exc)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "mosquitto")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxServer]:
    server = start_influxdb(tmp_path / "influxdb")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    server = start_victoria_metrics(tmp_path / "victoria-metrics")
    try:
        yield server
    finally:
        server.stop()
