"""The ingestor's MQTT connection: paho-mqtt in its own thread, bridged to asyncio.

paho calls back on its network thread; every callback only hands the event to the
event loop with ``loop.call_soon_threadsafe`` and returns, so a slow consumer can
never stall the connection. Messages are acknowledged manually (``manual_ack``),
by the consumer, once their samples are stored. Subscriptions are renewed on every
connect (also after a broker restart); reconnects back off exponentially, capped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .settings import IngestSettings

log = logging.getLogger(__name__)

SAMPLES_FILTER = "mdh/v1/+/+/samples"
STATUS_FILTER = "mdh/v1/+/+/status"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    #: Connection generation the message arrived on; an ack is only valid on the same connection.
    generation: int
    #: The retain flag as delivered: set on a message the broker replays from its retained store and,
    #: over MQTT 5 (retain-as-published), on a live one its publisher sent as retained. Refused either way.
    retain: bool = False


class MqttLink:
    def __init__(
        self,
        settings: IngestSettings,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Message], None],
        on_connection: Callable[[bool], None],
        next_generation: Callable[[], int],
    ) -> None:
        self._s = settings
        self._loop = loop
        self._on_message = on_message
        self._on_connection = on_connection
        self._next_generation = next_generation
        self.generation = 0
        self.connected = False
        v5 = settings.protocol == "5"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        self._client.enable_logger(logging.getLogger(__name__ + ".paho"))
        self._client.reconnect_delay_set(min_delay=1, max_delay=int(max(2, min(settings.retry_max_s, 60))))
        if settings.username:
            self._client.username_pw_set(
                settings.username, settings.password.get_secret_value() if settings.password else None
            )
        if settings.tls:
            self._client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe

    # -- lifecycle (event loop side) ----------------------------------------------------------------
    def start(self) -> None:
        props = None
        if self._s.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._s.session_expiry_s
            props.ReceiveMaximum = self._s.max_inflight_messages
        self._client.connect_async(
            self._s.host, self._s.port, keepalive=self._s.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        if self._client.is_connected():
            self._client.disconnect()
        self._client.loop_stop()

    def ack(self, message: Message) -> bool:
        """Acknowledge ``message`` if it came on the current connection (else the broker redelivers it)."""
        if message.generation != self.generation or not self.connected:
            return False
        rc = self._client.ack(message.mid, message.qos)
        return rc == mqtt.MQTT_ERR_SUCCESS

    # -- paho thread --------------------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            log.debug("event loop closed; dropping a callback (the broker redelivers unacknowledged messages)")

    def _handle_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the connection: %s", self._s.host, self._s.port, reason)
            return
        # "connected" (to callers) means subscribed: set once the broker granted the subscriptions.
        self.generation = self._next_generation()
        self.connected = True
        group = self._s.shared_group
        samples = f"$share/{group}/{SAMPLES_FILTER}" if group else SAMPLES_FILTER
        if self._s.protocol == "5":
            # No retained messages on subscribing, and the publisher's retain flag kept on live ones,
            # so that the ingestor sees (and refuses) every message a member published as retained.
            def opts() -> SubscribeOptions:
                return SubscribeOptions(
                    qos=1, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
                )

            client.subscribe([(samples, opts()), (STATUS_FILTER, opts())])
        else:
            client.subscribe([(samples, 1), (STATUS_FILTER, 1)])
        log.info(
            "connected to broker %s:%d; subscribing to %s and %s", self._s.host, self._s.port, samples, STATUS_FILTER
        )

    def _handle_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("broker refused the subscriptions: %s (check the ingestor's ACL)", ", ".join(failed))
            return
        self._post(self._on_connection, True)

    def _handle_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connected = False
        log.warning("disconnected from broker %s:%d: %s", self._s.host, self._s.port, reason)
        self._post(self._on_connection, False)

    def _handle_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg._topic.decode("utf-8", "replace")  # .topic raises on invalid UTF-8; the checker refuses it
        message = Message(topic, bytes(msg.payload), msg.mid, msg.qos, self.generation, bool(msg.retain))
        self._post(self._on_message, message)
