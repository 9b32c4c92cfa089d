"""The edge gateway: reads machines (OPC UA, local MQTT), applies the member's sharing policy,
pseudonymises every identifier with the member's key, buffers on disk and sends batches to the hub.

In-process use (the demo runs several gateways in one event loop)::

    from gateway import Gateway, load_gateway_settings

    settings = load_gateway_settings("gateway.toml")
    async with Gateway(settings) as gw:       # Gateway(settings, *, key: MemberKey | None = None)
        task = asyncio.create_task(gw.run())  # runs until gw.stop(); then drains and flushes
        ...
        gw.stop()
        await task
"""

from .config import GatewaySettings, load_gateway_settings
from .errors import (
    DiskBufferError,
    GatewayError,
    KeyFileError,
    PolicyError,
    ReloadRefused,
    SourceError,
    UplinkError,
)
from .normalise import Normaliser, Reading, quality_of
from .policy import Policy, PolicySettings, compile_policy
from .pseudonymise import MemberKey, Pseudonymiser, generate_key, load_key, pseudonym, reveal
from .runner import Gateway

__all__ = [
    "DiskBufferError",
    "Gateway",
    "GatewayError",
    "GatewaySettings",
    "KeyFileError",
    "MemberKey",
    "Normaliser",
    "Policy",
    "PolicyError",
    "PolicySettings",
    "Pseudonymiser",
    "Reading",
    "ReloadRefused",
    "SourceError",
    "UplinkError",
    "compile_policy",
    "generate_key",
    "load_gateway_settings",
    "load_key",
    "pseudonym",
    "quality_of",
    "reveal",
]
