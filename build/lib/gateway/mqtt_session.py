"""A paho-mqtt client run in its own thread, bridged to asyncio (DESIGN §8.6, §8.8).

paho's network thread only ever reaches the event loop through ``loop.call_soon_threadsafe``;
no callback blocks. The thread owns reconnecting: capped exponential back-off with jitter
(paho's own reconnect has no jitter), and the connection state is visible as ``connected``.
Subscriptions are renewed by the ``on_connect`` hook on every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .backoff import Backoff
from .errors import UplinkError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MqttEndpoint:
    name: str
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    protocol: str = "3.1.1"
    clean_session: bool = True
    keepalive_s: int = 30
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    manual_ack: bool = False

    def __repr__(self) -> str:  # never show the password
        return f"MqttEndpoint(name={self.name!r}, host={self.host!r}, port={self.port})"


class MqttSession:
    """Owns one paho client and its thread. Hooks run in the event loop, never in paho's thread."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        loop: asyncio.AbstractEventLoop,
        *,
        on_connect: Callable[[mqtt.Client], None] | None = None,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
        on_publish: Callable[[int, int], None] | None = None,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._loop = loop
        self._on_connect = on_connect
        self._on_message = on_message
        self._on_publish = on_publish
        self.connected = asyncio.Event()
        #: Set when the broker granted a subscription on the current connection (SUBACK); cleared on disconnect.
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(endpoint.backoff_min_s, endpoint.backoff_max_s)
        self.client = self._make_client(will)

    def _make_client(self, will: tuple[str, bytes] | None) -> mqtt.Client:
        ep = self.endpoint
        v5 = ep.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=ep.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else ep.clean_session,
            reconnect_on_failure=False,
            manual_ack=ep.manual_ack,
        )
        if ep.username is not None:
            client.username_pw_set(ep.username, ep.password)
        if ep.tls:
            ctx = ssl.create_default_context(cafile=str(ep.ca_file) if ep.ca_file else None)
            if ep.client_cert is not None:
                ctx.load_cert_chain(str(ep.client_cert), str(ep.client_key) if ep.client_key else None)
            client.tls_set_context(ctx)
        if will is not None:
            client.will_set(will[0], will[1], qos=1)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_subscribe = self._paho_subscribe
        if self._on_message is not None:
            client.on_message = self._paho_message
        if self._on_publish is not None:
            client.on_publish = self._paho_publish
        return client

    # -- paho thread side: hand over and return at once --------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _paho_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self._call(self._set_error, f"connection refused: {rc}")
            return
        self._backoff.reset()
        self._call(self._connected)

    def _paho_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._call(self._disconnected, str(rc))

    def _paho_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        if rcs and not any(rc.is_failure for rc in rcs):
            self._call(self.subscribed.set)

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._on_message is not None
        self._call(self._on_message, msg)

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        assert self._on_publish is not None
        self._call(self._on_publish, mid, rc.value)

    def _run(self) -> None:
        ep = self.endpoint
        first = True
        while not self._stop.is_set():
            try:
                self.client.connect(ep.host, ep.port, keepalive=ep.keepalive_s)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._call(self._set_error, f"{type(exc).__name__}: {exc}")
            else:
                if not first:
                    self.reconnects += 1
                first = False
                self.client.loop_forever(retry_first_connection=False)
            if self._stop.wait(self._backoff.next()):
                break

    # -- event loop side ---------------------------------------------------------------------------

    def _connected(self) -> None:
        self.last_error = None
        log.info("mqtt %s: connected to %s:%d", self.endpoint.name, self.endpoint.host, self.endpoint.port)
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect(self.client)

    def _disconnected(self, reason: str) -> None:
        if self.connected.is_set():
            log.warning("mqtt %s: disconnected (%s)", self.endpoint.name, reason)
        self.connected.clear()
        self.subscribed.clear()

    def _set_error(self, error: str) -> None:
        if error != self.last_error:
            log.warning("mqtt %s: %s", self.endpoint.name, error)
        self.last_error = error

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.endpoint.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self.connected.clear()

    async def __aenter__(self) -> MqttSession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise UplinkError(f"publish failed: {mqtt.error_string(info.rc)}")
        return int(info.mid)
