"""Hub-side observers for gateway tests: a raw MQTT subscriber and a recording TCP relay.

``RawSubscriber`` subscribes to ``#`` with its own paho client and keeps every message as bytes.
``Relay`` forwards a loopback port to the broker and records every byte the gateway sends, so a
test can inspect exactly what reached the hub (CONNECT packet, topics, will, payloads).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import Gateway, GatewaySettings
from testkit.machines import MachineServer
from testkit.waiting import wait_until
from wire import Batch, decode_batch


@dataclass
class RawSubscriber:
    host: str
    port: int
    topic: str = "#"
    #: a persistent session (clean session off, QoS 1): nothing is missed across a broker restart
    persistent: bool = False
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RawSubscriber:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}", clean_session=not self.persistent
        )

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe(self.topic, qos=1)

        def on_subscribe(*_: object) -> None:
            self._ready.set()

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect(self.host, self.port)
        c.loop_start()
        self._client = c
        if not self._ready.wait(10):
            raise RuntimeError("test subscriber did not get SUBACK")
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def batches(self) -> list[Batch]:
        with self._lock:
            msgs = list(self.messages)
        return [decode_batch(p) for t, p, _ in msgs if t.endswith("/samples")]

    def unique_batches(self) -> dict[str, Batch]:
        """Batches by batch id (the hub drops a redelivered batch id)."""
        return {b.batch_id: b for b in self.batches()}

    def samples(self) -> list[tuple[str, str, int, object]]:
        return [(s.asset, s.signal, s.ts, s.value) for b in self.unique_batches().values() for s in b.samples]

    async def wait_for(self, predicate: Callable[[], bool], within_s: float, what: str) -> None:
        await wait_until(predicate, within_s, what)


class Relay:
    """Forward 127.0.0.1:<port> to the broker and record every client-to-broker byte."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, record: bool) -> None:
        try:
            while data := await r.read(65536):
                if record:
                    self.sent += data
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for coro in (self._pipe(reader, uw, True), self._pipe(ur, writer, False)):
            t = asyncio.create_task(coro)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)


async def values_forwarded(
    settings: GatewaySettings,
    server: MachineServer,
    broker_port: int,
    writes: list[float],
    *,
    inspect: Callable[[], None] | None = None,
) -> list[float]:
    """Run a gateway on ``settings``, write ``writes`` to the server's ``Ofen/Temp`` one after another and
    return, sorted, every value that reached the broker (the initial one included). ``inspect`` runs once
    the initial value has been read, before the writes."""
    sub = RawSubscriber("127.0.0.1", broker_port).start()
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await sub.wait_for(lambda: gw.sources[0].readings_in >= 1, 10, "the initial value")
            if inspect is not None:
                inspect()
            for v in writes:
                await server.write("Ofen", "Temp", v)
                await asyncio.sleep(0.2)
            last = writes[-1]
            await sub.wait_for(lambda: last in {v for *_, v in sub.samples()}, 10, "the last change")
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        await server.stop()
    return sorted(float(v) for *_, v in sub.samples())
