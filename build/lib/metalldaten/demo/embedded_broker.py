"""An MQTT 3.1.1 broker inside the demo process (amqtt), so the demo needs no installed server.

Production uses Mosquitto configured from broker_config/; the embedded broker is
for the demo only: plain TCP on loopback, anonymous, MQTT 3.1.1 (no shared
subscriptions, so the demo runs one ingestor).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from amqtt.broker import Broker

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def embedded_broker(port: int, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run a broker on ``host:port`` for the duration of the block; yields ``host:port``."""
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 200}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    log.info("embedded MQTT broker listening on %s:%d", host, port)
    try:
        yield f"{host}:{port}"
    finally:
        await broker.shutdown()
