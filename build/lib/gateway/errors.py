"""Errors of the edge gateway.

::

    GatewayError                -- root of everything the gateway raises on purpose
    ├── KeyFileError            -- the member's key file is missing, malformed or too open
    ├── PolicyError             -- the pseudonymisation policy cannot be compiled
    ├── SourceError             -- an OPC UA or MQTT source failed (``retryable``)
    ├── DiskBufferError         -- the disk buffer cannot be opened or written
    └── UplinkError             -- the hub connection failed (``retryable``, ``retry_after``)

Configuration files that cannot be used raise :class:`metalldaten.configfile.ConfigError`
(shared by every service) before any of these can happen.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root error of the gateway."""

    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after


class KeyFileError(GatewayError):
    """The key file is missing, malformed or readable by others."""


class PolicyError(GatewayError):
    """The policy section cannot be compiled into rules."""


class SourceError(GatewayError):
    """A source could not connect, resolve its nodes or read."""

    retryable = True


class DiskBufferError(GatewayError):
    """The disk buffer cannot be opened or written."""


class UplinkError(GatewayError):
    """The uplink to the hub broker failed."""

    retryable = True
