"""Shared fixtures. Server fixtures (Mosquitto, InfluxDB, VictoriaMetrics) live in tests/servers.py, on the
starters of testkit/servers.py."""

from __future__ import annotations

pytest_plugins = ["tests.servers"]
