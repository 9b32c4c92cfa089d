#!/usr/bin/env bash
# Run the demo: thirteen simulated factories replay their history, then run live -> gateways -> broker -> hub
# (embedded store) -> analytics API and dashboard. Needs nothing but Python packages (Mosquitto is used if
# installed). Arguments go to `metalldaten demo` (e.g. --seconds 90, --history-days 10, --workdir DIR).
set -euo pipefail
EXTRA=hub source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/metalldaten demo "$@"
