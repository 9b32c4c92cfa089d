#!/usr/bin/env bash
# Run the whole test suite against real servers (Mosquitto, InfluxDB 1.x, VictoriaMetrics, asyncua, Chromium).
# Installs the Debian packages it needs (as root, or with sudo) and the Python test tools.
# Arguments go to pytest.
set -euo pipefail
EXTRA=test source "$(dirname "$0")/bootstrap.sh"
apt_install mosquitto mosquitto-clients influxdb victoria-metrics chromium docker-compose
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
