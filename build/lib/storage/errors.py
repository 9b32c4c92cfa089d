"""Errors of the storage package.

::

    StoreError               -- the store did not accept or answer a request
    ├── StoreUnavailable     -- cannot reach the store now; retryable (retry_after seconds, if known)
    └── StoreRejected        -- the store refused the data or query; retrying the same will not help
"""

from __future__ import annotations


class StoreError(Exception):
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(StoreError):
    retryable = True


class StoreRejected(StoreError):
    retryable = False
