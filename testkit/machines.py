"""The simulated machine server for tests and benchmarks: the product's own (the demo's factories run on it),
with asyncua's narration turned down to warnings."""

from __future__ import annotations

import logging

from metalldaten.demo.opcua_server import URI, MachineServer

for _name in ("asyncua", "asyncua.server", "asyncua.server.address_space"):
    logging.getLogger(_name).setLevel(logging.WARNING)

__all__ = ["URI", "MachineServer"]
