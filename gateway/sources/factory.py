"""The one place that turns a gateway's settings into running sources (the gateway, preview and check use it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import SourceContext, SourceRunner
from .mqtt import MqttSourceRunner
from .opcua import OpcuaSourceRunner

if TYPE_CHECKING:
    from ..config import GatewaySettings

#: The source plugins, by the settings key of their section (``[[opcua]]``, ``[[mqtt]]``).
KINDS = ("opcua", "mqtt")


def build_sources(settings: GatewaySettings, ctx: SourceContext) -> list[SourceRunner]:
    """One runner per configured source, in configuration order (OPC UA first, then MQTT)."""
    runners: list[SourceRunner] = []
    for oc in settings.opcua:
        runners.append(OpcuaSourceRunner(oc, ctx.normaliser(), ctx.sink, pki_dir=ctx.pki_dir))
    for mc in settings.mqtt:
        runners.append(MqttSourceRunner(mc, ctx.normaliser(), ctx.sink, client_id=ctx.client_id(mc.name)))
    return runners
