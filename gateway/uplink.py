"""Uplink to the hub broker: sealed chunks of the disk buffer, published with QoS 1.

Login is the member pseudonym, the client id is derived from pseudonyms only. A birth message
(``online``; not retained, the hub refuses retained messages) is published on every connect; the last
will says ``offline``. A chunk is deleted from the buffer only when its PUBACK arrives; paho resends
unacknowledged messages itself after a reconnect, and a restarted gateway resends whatever the buffer
still holds (same batch id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from core.mqtt import MqttClient, MqttEndpoint, MqttError
from wire.codec import encode_status
from wire.model import SCHEMA_VERSION, Status
from wire.topics import samples_topic, status_topic

from .buffer import DiskBuffer
from .config import UplinkSettings

log = logging.getLogger(__name__)


class Uplink:
    def __init__(self, cfg: UplinkSettings, buffer: DiskBuffer, *, member: str, gateway: str) -> None:
        self.cfg = cfg
        self.buffer = buffer
        self.member = member
        self.gateway = gateway
        self.topic = samples_topic(member, gateway)
        self.status_topic = status_topic(member, gateway)
        self._inflight: dict[int, int] = {}  # paho mid -> chunk id
        self._refused: set[int] = set()  # chunk ids the broker refused (MQTT 5 reason code); retried on reconnect
        self._wake = asyncio.Event()
        #: Set on every PUBACK: what drain() and the goodbye wait for instead of polling.
        self._acked = asyncio.Event()
        self._goodbye_mid: int | None = None
        self.session: MqttClient | None = None
        self.batches_sent = 0
        self.batches_refused = 0
        self.samples_acked = 0

    def _status(self, state: str) -> bytes:
        return encode_status(
            Status(schema=SCHEMA_VERSION, member=self.member, gateway=self.gateway, state=state, ts_ns=time.time_ns())
        )

    def endpoint(self) -> MqttEndpoint:
        return self.cfg.endpoint(member=self.member, gateway=self.gateway)

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.connected.is_set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def wake(self) -> None:
        self._wake.set()

    def _on_connect(self, client: MqttClient) -> None:
        self._refused.clear()
        client.publish(self.status_topic, self._status("online"), qos=1)
        self._wake.set()

    def _on_publish(self, mid: int, reason: int) -> None:
        self._acked.set()
        chunk_id = self._inflight.pop(mid, None)
        if chunk_id is None:
            if mid == self._goodbye_mid:
                self._goodbye_mid = None
            return  # a status message
        if reason >= 0x80:  # MQTT 5: the broker refused it (e.g. not authorised): keep the chunk
            self._refused.add(chunk_id)
            self.batches_refused += 1
            log.error("uplink: the hub broker refused a batch (reason code %d); it stays buffered", reason)
            return
        n_before = self.buffer.sent
        self.buffer.ack(chunk_id)
        self.samples_acked += self.buffer.sent - n_before
        self._wake.set()

    async def __aenter__(self) -> Uplink:
        self.session = MqttClient(
            self.endpoint(),
            on_connect=self._on_connect,
            on_publish=self._on_publish,
            will=(self.status_topic, self._status("offline")),
        )
        self.session.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            if self.session.connected.is_set():
                # Say goodbye and give the broker a moment to acknowledge it (else the last will says it).
                self._goodbye_mid = self.session.publish(self.status_topic, self._status("offline"))
                await self._until(lambda: self._goodbye_mid is None, 1.0)
            await self.session.stop()

    async def run(self) -> None:
        """Publish sealed chunks while connected, at most ``max_inflight`` unacknowledged at a time."""
        assert self.session is not None
        session = self.session
        while True:
            await session.connected.wait()
            self._wake.clear()
            free = self.cfg.max_inflight - len(self._inflight)
            busy = [*self._inflight.values(), *self._refused]
            chunks = self.buffer.take(free, exclude=busy) if free > 0 else []
            failed = False
            for c in chunks:
                try:
                    mid = session.publish(self.topic, c.payload, qos=1)
                except MqttError as exc:
                    log.warning("uplink: %s; retrying shortly", exc)
                    failed = True
                    break
                self._inflight[mid] = c.id
                self.batches_sent += 1
            # A take that returned fewer chunks than it could took every chunk there was: taking again at once
            # finds nothing (a new chunk, a PUBACK or a connect wakes this loop), so only a failed publish with
            # slots left is retried without waiting.
            if not failed or free <= len(chunks):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):  # (wait_for can swallow a cancellation on 3.11)
                        await self._wake.wait()

    async def drain(self, within_s: float) -> bool:
        """Wait until nothing is buffered or in flight (at most ``within_s``); True if everything went out."""
        return await self._until(lambda: not self._inflight and self.buffer.depth_samples == 0, within_s)

    async def _until(self, done: Callable[[], bool], within_s: float) -> bool:
        """Wait (re-checking after every PUBACK) until ``done()``, at most ``within_s``; the last ``done()``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while not done():
                    self._acked.clear()
                    await self._acked.wait()
        return done()
