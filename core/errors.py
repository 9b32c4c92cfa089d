"""The one error root of the hub.

::

    MdhError                 -- root: ``retryable``, ``retry_after``, ``exit_code``
    ├── WireError            -- wire contract (wire.errors)
    ├── ConfigError          -- a configuration file that cannot be used (core.configfile)
    ├── GatewayError         -- the edge gateway (gateway.errors)
    ├── StoreError           -- the stores (storage.errors)
    ├── ApiError             -- a request the API refuses (api.errors)
    └── TokenFileError       -- the API's tokens file (api.errors)

The command line turns any ``MdhError`` into its message and a non-zero exit (``core.cli``).
The class itself lives in ``wire.errors`` because the wire contract, below this package,
must share the root without importing anything of ours.
"""

from __future__ import annotations

from wire.errors import MdhError

__all__ = ["MdhError"]
