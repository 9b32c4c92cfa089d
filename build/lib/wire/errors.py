"""Errors of the wire contract.

::

    WireError                 -- a payload or topic that breaks the contract
    ├── PayloadTooLarge       -- compressed or decompressed size over the limit
    ├── UnsupportedSchema     -- schema version the receiver does not know
    └── InvalidBatch          -- decodes, but a field is wrong (reason names it)

Every ``WireError`` carries a short machine-readable ``code`` (used as a counter
label and in dead letters) and a human ``reason``.
"""

from __future__ import annotations


class WireError(ValueError):
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
