"""Errors of the edge gateway.

::

    GatewayError                -- root of everything the gateway raises on purpose
    ├── KeyFileError            -- the member's key file is missing, malformed or too open
    ├── PolicyError             -- the pseudonymisation policy cannot be compiled
    ├── SourceError             -- an OPC UA or MQTT source failed (``retryable``)
    ├── DiskBufferError         -- the disk buffer cannot be opened or written
    ├── UplinkError             -- the hub connection failed (``retryable``, ``retry_after``)
    └── ReloadRefused           -- a changed configuration cannot be applied while running

Configuration files that cannot be used raise :class:`core.configfile.ConfigError`
(shared by every service) before any of these can happen. ``retryable`` and ``retry_after``
come from the common root :class:`core.errors.MdhError`.
"""

from __future__ import annotations

from core.errors import MdhError


class GatewayError(MdhError):
    """Root error of the gateway."""


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


class ReloadRefused(GatewayError):
    """A changed configuration cannot be applied while running; the running one continues."""
