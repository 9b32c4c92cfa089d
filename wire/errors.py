"""Errors of the wire contract, and the root of every error the hub raises on purpose.

::

    MdhError                  -- root of all our errors (re-exported by ``core.errors``)
    └── WireError                 -- a payload or topic that breaks the contract
    ├── PayloadTooLarge       -- compressed or decompressed size over the limit
    ├── UnsupportedSchema     -- schema version the receiver does not know
    └── InvalidBatch          -- decodes, but a field is wrong (reason names it)

Every ``WireError`` carries a short machine-readable ``code`` (used as a counter
label and in dead letters) and a human ``reason``.

``MdhError`` is defined here, in the bottom-most package, because the wire contract
imports nothing of ours and its errors must still share the one root; every other
package takes it from ``core.errors``.
"""

from __future__ import annotations


class MdhError(Exception):
    """Root of every error the hub raises on purpose.

    ``retryable``: trying the same again later may succeed (a server is down, not a request wrong).
    ``retry_after``: seconds to wait first, when the other side said so. ``exit_code``: what the
    command line exits with when this error ends a command (2: fix the invocation or the files).
    """

    retryable = False
    exit_code = 1

    def __init__(self, message: str, *, retryable: bool | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after


class WireError(MdhError, ValueError):
    code = "invalid"

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class PayloadTooLarge(WireError):
    code = "too_large"


class UnsupportedSchema(WireError):
    code = "schema"


class InvalidBatch(WireError):
    code = "invalid"
