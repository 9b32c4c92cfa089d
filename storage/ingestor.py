"""The ingestor: MQTT → validate → batch → store → acknowledge. Nothing is acknowledged before the
store has it, and no input, however malformed, stops it: bad messages go to the dead letters.

::

    paho thread ──call_soon_threadsafe──► queue ──► consume(): check, dead-letter, batch
                                                        │ (every batch_max_samples or batch_max_delay_s)
                                                        ▼
                                           flush(): store.write per member (worker thread),
                                                    up to max_writes_in_flight batches at once
                                                        │ success                │ StoreUnavailable
                                                        ▼                        ▼
                                           ack every message of the batch   keep them unacked, back off
                                                                            (capped, with jitter), retry

A message is acknowledged only after its samples are in the store (or after it was
written to the dead letters). While the store is down nothing is acknowledged.
While one batch is being written the next one is decoded and handed to the store as
well (``max_writes_in_flight``, default 2), so that the store always has a request to
work on; each batch is acknowledged when its own write succeeded, in whatever order the
writes finish (a sample is a point keyed by series and time, so order does not matter). The
broker is asked to deliver at most ``max_inflight_messages`` unacknowledged messages
(MQTT v5 Receive Maximum), but brokers do not all keep to it exactly (Mosquitto 2.0
sends a further window after each acknowledgement), so the ingestor also enforces
its own bound: beyond ``max_pending_messages`` held messages it *sheds* arrivals
(neither keeps nor acknowledges them) and, once the store has caught up, reconnects
with its persistent session so that the broker redelivers them. Memory stays
bounded; the backlog waits in the broker. Redelivered messages are written again,
which the stores make harmless.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from prometheus_client import CollectorRegistry

from core.mqtt import Message, MqttClient
from wire import Sample
from wire.topics import SAMPLES_FILTER, STATUS_FILTER, shared_filter

from .base import Store
from .deadletter import DeadLetterFile
from .errors import StoreRejected, StoreUnavailable
from .gateways import GatewayState, GatewayTracker
from .housekeeping import housekeep
from .ingest_metrics import IngestMetrics, LateRecomputes
from .quota import MemberQuota
from .refusal_desk import RefusalDesk
from .refusals import RecentRefusals
from .settings import IngestSettings
from .store_writer import StoreWriter
from .validate import Accepted, Refused, accepted_window, check_message

log = logging.getLogger(__name__)


class MemberRegister(Protocol):
    def is_active(self, pseudonym: str) -> bool: ...


#: Returns the current register (e.g. :class:`core.register.RegisterFile`, which re-reads on change).
RegisterProvider = Callable[[], MemberRegister]


@dataclass
class _Pending:
    messages: list[Message] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))
    count: int = 0
    since: float = 0.0


class Ingestor:
    """``async with Ingestor(settings, store, register_provider) as ing: await ing.run()``.

    ``run()`` returns after :meth:`stop` (or is cancelled); leaving the context drains:
    what is batched is written once more and acknowledged, the rest stays with the broker.
    """

    def __init__(
        self,
        settings: IngestSettings,
        store: Store,
        register_provider: RegisterProvider,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._register = register_provider
        self._last_register: MemberRegister | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        instance = f"{socket.gethostname()}/{settings.client_id}"
        self.metrics = IngestMetrics(self.registry, instance=instance)
        self.registry.register(LateRecomputes(lambda: store.late_recomputes, instance=instance))
        self.recent_refusals = RecentRefusals()
        self.dead_letters = DeadLetterFile(settings.dead_letter_path, max_bytes=settings.dead_letter_max_bytes)
        self.refusal_desk = RefusalDesk(self.metrics, self.dead_letters, self.recent_refusals)
        self.gateways_tracker = GatewayTracker()
        self.quota = MemberQuota(
            max_assets=settings.max_assets_per_member, max_gateways=settings.max_gateways_per_member
        )
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._pending = _Pending()
        self.writer = StoreWriter(store, settings, self.metrics)
        self._writing = 0
        self._taking = 0
        self._link: MqttClient | None = None
        self._shed = 0
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------------
    async def __aenter__(self) -> Ingestor:
        self._start_link()
        return self

    def _start_link(self) -> None:
        s = self.settings
        samples = shared_filter(s.shared_group, SAMPLES_FILTER)
        self._link = MqttClient(
            s.endpoint(),
            subscriptions=[(samples, 1), (STATUS_FILTER, 1)],
            # No retained messages on subscribing, and the publisher's retain flag kept on live ones,
            # so that the ingestor sees (and refuses) every message a member published as retained.
            retain_as_published=True,
            on_message=self._arrived,
            on_connection=self._connection_changed,
        )
        self._link.start()
        log.info("connecting to broker %s:%d; subscribing to %s and %s", s.host, s.port, samples, STATUS_FILTER)

    async def _resync(self) -> None:
        """Reconnect (resuming the session) so that the broker redelivers the messages we shed."""
        log.info("reconnecting to have %d shed messages redelivered", self._shed)
        self._shed = 0
        if self._link is not None:
            await self._link.stop()
        self._start_link()

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        try:
            await asyncio.wait_for(self._drain(), timeout=10)
        except Exception as e:
            log.warning("could not write the last batch on shutdown (%s); the broker will redeliver it", e)
        finally:
            if self._link is not None:
                await self._link.stop()

    async def _drain(self) -> None:
        await self.writer.drain(timeout_s=5)
        if self._pending.messages:
            await self._flush(final=True)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(self._consume())
            housekeeping = tg.create_task(housekeep(self.store, self.settings))
            await self._stopping.wait()
            consumer.cancel()
            housekeeping.cancel()

    # -- state --------------------------------------------------------------------------------------
    @property
    def store_ok(self) -> bool:
        """Whether the last write to the store succeeded."""
        return self.writer.store_ok

    @property
    def stored_samples(self) -> int:
        """Samples written to the store since start (``mdh_ingest_samples_total``)."""
        return self.metrics.samples_stored()

    @property
    def dead_lettered(self) -> int:
        """Messages refused into the dead letters since start (``mdh_ingest_dead_letters_total``)."""
        return self.metrics.dead_lettered()

    @property
    def refusals(self) -> dict[str, int]:
        """Refusals since start, by reason (``mdh_ingest_refused_total``)."""
        return self.metrics.refusals()

    def gateways(self) -> list[GatewayState]:
        """Birth/death and last-seen of every gateway heard of."""
        return self.gateways_tracker.snapshot()

    def health(self) -> dict[str, object]:
        """The ingestor's state for an operators' health check: ``ok`` while connected and the store accepts writes;
        ``degraded`` with the reasons while messages were refused in the last minutes (see storage.refusals) or a
        gateway's clock runs ahead (see storage.gateways)."""
        connected = self.connected.is_set()
        reasons = self.recent_refusals.active() + self.gateways_tracker.clock_warnings()
        return {
            "ok": connected and self.store_ok,
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "broker_connected": connected,
            "store_ok": self.store_ok,
            "pending_messages": self.pending_messages,
            "stored_samples": self.stored_samples,
            "dead_lettered": self.dead_lettered,
            "refused": dict(sorted(self.refusals.items())),
        }

    @property
    def pending_messages(self) -> int:
        return self._writing + self._taking + len(self._pending.messages) + self._queue.qsize()

    def _arrived(self, message: Message) -> None:
        """A message arrived (on the event loop). Over the memory bound it is shed: not kept, not acknowledged."""
        if self.pending_messages >= self.settings.max_pending_messages:
            if self._shed == 0:
                log.warning(
                    "%d messages held unacknowledged; shedding further ones until the store catches up "
                    "(the broker keeps them and redelivers them after a reconnect)",
                    self.pending_messages,
                )
            self._shed += 1
            self.metrics.inc_messages("shed")
            return
        self._queue.put_nowait(message)

    def _connection_changed(self, up: bool) -> None:
        self.metrics.set_connected(up)
        if up:
            self.connected.set()
        else:
            self.connected.clear()

    # -- consuming ----------------------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            timeout = None
            if self._pending.messages:
                timeout = max(0.0, self._pending.since + self.settings.batch_max_delay_s - time.monotonic())
            try:
                # In this task, not in one of its own as ``asyncio.wait_for`` runs it (Python 3.11): there the
                # message left the queue a loop step before this task counted it as taken, and an arrival in
                # that step was admitted over max_pending_messages.
                async with asyncio.timeout(timeout):
                    first = await self._queue.get()
            except TimeoutError:
                await self._flush()
                continue
            messages = [first]
            while not self._queue.empty() and len(messages) < 32:
                messages.append(self._queue.get_nowait())
            self._taking = len(messages)
            try:
                await self._take(messages)
            finally:
                self._taking = 0
            if self._pending.count >= self.settings.batch_max_samples:
                await self._flush()

    def _checker(self) -> Callable[[Message], Accepted | Refused]:
        """:func:`check_message` with the current register, the payload limit and the sample times accepted now
        (:func:`accepted_window`)."""
        register = self._current_register()
        max_bytes = self.settings.max_payload_bytes
        earliest, latest = accepted_window(
            time.time_ns(), retention_ns=self.store.retention_ns, max_ahead_s=self.settings.max_ahead_s
        )

        def check(m: Message) -> Accepted | Refused:
            return check_message(
                m.topic,
                m.payload,
                register.is_active,
                max_payload_bytes=max_bytes,
                retained=m.retain,
                earliest_ns=earliest,
                latest_ns=latest,
            )

        return check

    def _current_register(self) -> MemberRegister:
        try:
            register = self._register()
            if register is not self._last_register:
                # a member suspended, removed or deleted: its gateways' status is not kept any more
                self.metrics.forget_gateways(self.gateways_tracker.forget(register.is_active))
                self.quota.forget(register.is_active)
            self._last_register = register
        except Exception as exc:
            if self._last_register is None:
                raise
            log.error("cannot read the member register (%s); keeping the last one read", exc)
        assert self._last_register is not None
        return self._last_register

    async def _take(self, messages: list[Message]) -> None:
        check = self._checker()
        verdicts = await asyncio.to_thread(lambda: [check(m) for m in messages])
        refused: list[tuple[Message, Refused]] = []
        done: list[Message] = []
        now_ns = time.time_ns()
        for message, verdict in zip(messages, verdicts, strict=True):
            if isinstance(verdict, Accepted):
                over = self.quota.admit(verdict.member, verdict.gateway, verdict.assets)
                if over is not None:
                    verdict = Refused("quota", over)
            if isinstance(verdict, Refused):
                self.refusal_desk.count(verdict.code, verdict.reason)
                refused.append((message, verdict))
                continue
            if verdict.status is not None:
                state = self.gateways_tracker.status(
                    verdict.member, verdict.gateway, verdict.status.state == "online", now_ns
                )
                self.metrics.inc_messages("status")
                done.append(message)
            else:
                assert verdict.batch is not None
                state = self.gateways_tracker.seen(verdict.member, verdict.gateway, now_ns, verdict.batch.sent_ns)
                self.metrics.gateway_clock(state.member, state.gateway, state.clock_ahead_s)
                p = self._pending
                if not p.messages:
                    p.since = time.monotonic()
                p.messages.append(message)
                p.samples[verdict.member].extend(verdict.batch.samples)
                p.count += len(verdict.batch.samples)
            self.metrics.gateway_seen(state.member, state.gateway, now_ns / 1e9)
        self.metrics.set_gateways(self.gateways_tracker.online_count())
        if refused and await self.refusal_desk.record(refused):
            done.extend(m for m, _ in refused)
        self._ack(done)
        self.metrics.set_pending(self.pending_messages)

    def _ack(self, messages: list[Message]) -> None:
        if self._link is None:
            return
        for m in messages:
            if m.qos > 0 and not self._link.ack(m):
                log.debug("message %d arrived on an earlier connection; the broker redelivers it", m.mid)

    # -- writing ------------------------------------------------------------------------------------
    async def _flush(self, *, final: bool = False) -> None:
        """Hand the pending batch to a writer; at most ``max_writes_in_flight`` writes run while the next batch fills.

        With ``final`` the batch is written now (shutdown), without retrying an unavailable store.
        """
        await self.writer.wait(0 if final else self.settings.max_writes_in_flight - 1)
        batch, self._pending = self._pending, _Pending()
        if not batch.messages:
            return
        # held from the hand-over on, not from the writer task's first step: arrivals in between count them
        self._writing += len(batch.messages)
        if final:
            await self._write_batch(batch, final=True)
            return
        self.writer.start(self._write_batch(batch))

    async def _write_batch(self, p: _Pending, *, final: bool = False) -> None:
        """Write ``p`` (retrying while the store is unavailable), then acknowledge its messages (``p``'s messages
        are counted as being written by :meth:`_flush`)."""
        try:
            stored = await self.writer.write(p.samples, messages=len(p.messages), final=final)
            if not stored:
                # still held while they are written one by one
                await self._isolate_rejected(p.messages)
        finally:
            self._writing -= len(p.messages)
        if stored:
            self.metrics.inc_samples(p.count)
            self.metrics.inc_messages("stored", len(p.messages))
            self._ack(p.messages)
        self.metrics.set_pending(self.pending_messages)
        if self._shed and not final and not self.writer.others_running(asyncio.current_task()):
            # the last write in flight: reconnecting now loses no acknowledgement of another write
            await self._resync()

    async def _isolate_rejected(self, messages: list[Message]) -> None:
        check = self._checker()
        for m in messages:
            verdict = check(m)
            if not isinstance(verdict, Accepted) or verdict.batch is None:
                continue
            try:
                await asyncio.to_thread(self.store.write, verdict.member, verdict.batch.samples)
            except StoreRejected as exc:
                self.refusal_desk.count("store_rejected", str(exc))
                if not await self.refusal_desk.record([(m, Refused("store_rejected", str(exc)[:500]))]):
                    continue
            except StoreUnavailable:
                # Leave it unacknowledged: the broker redelivers it after a reconnect.
                continue
            else:
                self.metrics.inc_samples(len(verdict.batch.samples))
                self.metrics.inc_messages("stored")
            self._ack([m])
