"""The one MQTT client of the hub: paho-mqtt in its own thread, bridged to asyncio.

Used by the gateway's uplink and MQTT source and by the hub's ingestor. What it guarantees:

- paho calls back on its network thread; every callback only hands the event to the event loop
  with ``loop.call_soon_threadsafe`` and returns at once, so a slow consumer never stalls the
  connection (keep-alives and acknowledgements keep flowing);
- the thread owns reconnecting, with capped exponential back-off and jitter
  (:class:`core.backoff.Backoff`; paho's own reconnect delay has no jitter and is not used);
- subscriptions are renewed on every connect, also after a broker restart that lost the session;
- connection state is an :class:`asyncio.Event` (``connected``; ``subscribed`` once the broker
  granted every filter) plus a hook (``on_connection``) for a metric;
- with ``manual_ack`` a message is acknowledged only when its consumer says so, and only on the
  connection it arrived on: an acknowledgement after a reconnect is dropped, and the broker
  delivers the message again (every message carries its connection's ``generation``);
- the password never shows in a ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .backoff import Backoff
from .errors import MdhError

__all__ = ["Message", "MqttClient", "MqttEndpoint", "MqttError", "topic_matches"]

log = logging.getLogger(__name__)

#: Connection generations, unique across every client of the process: an acknowledgement is honoured
#: only by the connection (of the client) that delivered the message.
_GENERATIONS = itertools.count(1)


class MqttError(MdhError):
    """A publish the client could not hand to paho (the connection is retried on its own)."""

    retryable = True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT subscription filter ``topic_filter`` (``+`` and ``#``)."""
    return bool(mqtt.topic_matches_sub(topic_filter, topic))


@dataclass(frozen=True, kw_only=True)
class MqttEndpoint:
    """Where and how to connect. ``clean_session`` ``False`` keeps the broker session across connections
    (MQTT 3.1.1 clean session off, MQTT 5 clean start off with ``session_expiry_s``)."""

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
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    clean_session: bool = True
    keepalive_s: int = 30
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    manual_ack: bool = False
    #: MQTT 5: seconds the broker keeps the session after a disconnect (with ``clean_session`` off).
    session_expiry_s: int | None = None
    #: MQTT 5 Receive Maximum: unacknowledged messages the broker may have in flight to us.
    receive_maximum: int | None = None
    #: Messages we may have in flight to the broker (QoS 1 without PUBACK yet).
    max_inflight: int = 1000

    def __repr__(self) -> str:  # never show the password
        return f"MqttEndpoint(name={self.name!r}, host={self.host!r}, port={self.port}, client_id={self.client_id!r})"

    def replace(self, **changes: Any) -> MqttEndpoint:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    #: Connection generation the message arrived on; an ack is only valid on the same connection.
    generation: int
    #: The retain flag as delivered: set on a message the broker replays from its retained store and,
    #: over MQTT 5 with ``retain_as_published``, on a live one its publisher sent as retained.
    retain: bool = False


_paho_log = logging.getLogger(__name__ + ".paho")


def _loop_writes(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's write hook: nothing to do, the bridge's loop (woken by paho) writes the queued packets."""


class MqttClient:
    """Owns one paho client and its thread. Hooks run in the event loop, never in paho's thread.

    ``subscriptions`` are ``(filter, qos)`` pairs, subscribed on every connect. With
    ``retain_as_published`` (MQTT 5) the broker sends no retained messages on subscribing and keeps
    the publisher's retain flag on live ones, so that a consumer sees every message sent as retained.
    ``on_connect`` runs after each connect; ``on_message`` per message; ``on_publish(mid, reason_code)``
    per PUBACK (a reason code >= 0x80 is a refusal); ``on_connection(up)`` whenever the connection
    becomes usable (connected and, if there are subscriptions, granted) or is lost.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        retain_as_published: bool = False,
        on_connect: Callable[[MqttClient], None] | None = None,
        on_message: Callable[[Message], None] | None = None,
        on_publish: Callable[[int, int], None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.subscriptions = list(subscriptions)
        self._retain_as_published = retain_as_published
        self._on_connect = on_connect
        self._on_message = on_message
        self._on_publish = on_publish
        self._on_connection = on_connection
        self.connected = asyncio.Event()
        #: Set when the broker granted every subscription on the current connection; cleared on disconnect.
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self.last_error: str | None = None
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(min(endpoint.backoff_min_s, endpoint.backoff_max_s), endpoint.backoff_max_s)
        self.client = self._make_client(will)

    def __repr__(self) -> str:
        return f"MqttClient({self.endpoint!r})"

    @property
    def generation(self) -> int:
        """The current connection's generation (changes on every connect)."""
        return self._generation

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
        client.on_log = self._paho_log
        if ep.username is not None:
            client.username_pw_set(ep.username, ep.password)
        if ep.tls:
            ctx = ssl.create_default_context(cafile=str(ep.ca_file) if ep.ca_file else None)
            if ep.client_cert is not None:
                ctx.load_cert_chain(str(ep.client_cert), str(ep.client_key) if ep.client_key else None)
            client.tls_set_context(ctx)
        if will is not None:
            client.will_set(will[0], will[1], qos=1)
        client.max_inflight_messages_set(ep.max_inflight)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_subscribe = self._paho_subscribe
        client.on_message = self._paho_message
        client.on_publish = self._paho_publish
        # Only the bridge's thread touches the socket. Without a registered write hook, paho writes a packet
        # queued from another thread (publish, ack, disconnect from the event loop) in that thread, while the
        # bridge's thread may be writing too: two writers can interleave a partly sent packet. With the hook, a
        # queued packet only wakes the loop (paho's socket pair, see _run), which then writes it.
        client.on_socket_register_write = _loop_writes
        return client

    def _subscribe(self, client: mqtt.Client) -> None:
        if self._retain_as_published and self.endpoint.protocol == "5":
            client.subscribe(
                [
                    (
                        f,
                        SubscribeOptions(
                            qos=q, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
                        ),
                    )
                    for f, q in self.subscriptions
                ]
            )
        else:
            client.subscribe(list(self.subscriptions))

    # -- paho thread side: hand over and return at once --------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _paho_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self._call(self._set_error, f"connection refused: {rc}")
            return
        self._backoff.reset()
        self._generation = next(_GENERATIONS)
        if self.subscriptions:
            self._subscribe(client)
        self._call(self._connected)

    def _paho_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._call(self._disconnected, str(rc))

    def _paho_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed or not rcs:
            self._call(self._set_error, f"subscription refused: {', '.join(failed) or 'no reason codes'}")
            return
        self._call(self._granted)

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is None:
            return
        topic = msg._topic.decode("utf-8", "replace")  # .topic raises on invalid UTF-8; consumers refuse it
        message = Message(topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, bool(msg.retain))
        self._call(self._on_message, message)

    def _paho_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        std = mqtt.LOGGING_LEVEL.get(LogLevel(level), logging.DEBUG)
        if self._stop.is_set() and buf.startswith("Client is not connected"):
            std = logging.DEBUG  # paho's loop says so (as an error) once after every clean DISCONNECT
        _paho_log.log(std, "%s", buf)

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        if self._on_publish is not None:
            self._call(self._on_publish, mid, rc.value)

    def _connect_once(self) -> None:
        ep = self.endpoint
        if ep.protocol != "5":
            self.client.connect(ep.host, ep.port, keepalive=ep.keepalive_s)
            return
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if ep.session_expiry_s is not None:
            props.SessionExpiryInterval = ep.session_expiry_s
        if ep.receive_maximum is not None:
            props.ReceiveMaximum = ep.receive_maximum
        if ep.clean_session:  # a clean start on the first connection only, as paho does by default
            self.client.connect(ep.host, ep.port, keepalive=ep.keepalive_s, properties=props)
        else:
            self.client.connect(ep.host, ep.port, keepalive=ep.keepalive_s, clean_start=False, properties=props)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self._connect_once()
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._call(self._set_error, f"{type(exc).__name__}: {exc}")
            else:
                if not first:
                    self.reconnects += 1
                first = False
                # paho's loop() rather than loop_forever(): loop() keeps the socket pair by which a packet queued
                # from another thread wakes the loop at once (loop_forever() only has it under loop_start())
                while self.client.loop(timeout=1.0) == mqtt.MQTT_ERR_SUCCESS:
                    pass
            if self._stop.wait(self._backoff.next()):
                break

    # -- event loop side ---------------------------------------------------------------------------

    def _connected(self) -> None:
        self.last_error = None
        log.info("mqtt %s: connected to %s:%d", self.endpoint.name, self.endpoint.host, self.endpoint.port)
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect(self)
        if not self.subscriptions and self._on_connection is not None:
            self._on_connection(True)

    def _granted(self) -> None:
        self.subscribed.set()
        if self._on_connection is not None:
            self._on_connection(True)

    def _disconnected(self, reason: str) -> None:
        was_connected = self.connected.is_set()  # paho may report one disconnect twice
        if was_connected and self._stop.is_set():  # our own clean stop: nothing went wrong
            log.info("mqtt %s: disconnected (%s)", self.endpoint.name, reason)
        elif was_connected:
            log.warning("mqtt %s: disconnected (%s)", self.endpoint.name, reason)
        self.connected.clear()
        self.subscribed.clear()
        if was_connected and self._on_connection is not None:
            self._on_connection(False)

    def _set_error(self, error: str) -> None:
        if error != self.last_error:
            log.warning("mqtt %s: %s", self.endpoint.name, error)
        self.last_error = error

    def start(self) -> None:
        """Start connecting (in the background); call from the event loop the hooks should run in."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.endpoint.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self.connected.clear()
        self.subscribed.clear()

    async def __aenter__(self) -> MqttClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue a message with paho; returns its ``mid`` (its PUBACK reaches ``on_publish``)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish failed: {mqtt.error_string(info.rc)}")
        return int(info.mid)

    def ack(self, message: Message) -> bool:
        """Acknowledge ``message`` if it came on the current connection (else the broker redelivers it)."""
        if message.qos == 0:
            return True
        if message.generation != self._generation or not self.client.is_connected():
            return False
        return bool(self.client.ack(message.mid, message.qos) == mqtt.MQTT_ERR_SUCCESS)
