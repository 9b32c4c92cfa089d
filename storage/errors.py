"""Errors of the storage package.

::

    StoreError               -- the store did not accept or answer a request
    ├── StoreUnavailable     -- cannot reach the store now; retryable (retry_after seconds, if known)
    └── StoreRejected        -- the store refused the data or query; retrying the same will not help
"""

from __future__ import annotations

from core.errors import MdhError


class StoreError(MdhError):
    """Root error of the stores; ``retryable`` and ``retry_after`` come from :class:`MdhError`."""


class StoreUnavailable(StoreError):
    retryable = True


class StoreRejected(StoreError):
    retryable = False
