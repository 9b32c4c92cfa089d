#!/usr/bin/env bash
# Run the demo: simulated factories -> gateways -> embedded broker -> hub (embedded store) -> analytics API.
# Needs nothing but Python packages. Arguments go to `metalldaten demo` (e.g. --seconds 60).
set -euo pipefail
EXTRA=hub source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/metalldaten demo "$@"
