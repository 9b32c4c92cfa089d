"""The ingestor's writes to the store: in worker threads, a bounded number at once, retried while the store is
unavailable (capped back-off with jitter, honouring ``Retry-After``), with the store's state kept for health
and metrics. What a write means for the messages (acknowledge, dead-letter, keep) is the ingestor's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from core.backoff import Backoff
from wire import Sample

from .base import Store
from .errors import StoreError, StoreRejected, StoreUnavailable
from .ingest_metrics import IngestMetrics
from .settings import IngestSettings

log = logging.getLogger(__name__)


class StoreWriter:
    """Writes batches of samples (member -> samples) to ``store``; :attr:`store_ok` says whether the last write
    succeeded."""

    def __init__(self, store: Store, settings: IngestSettings, metrics: IngestMetrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.store_ok = True
        self._tasks: set[asyncio.Task[None]] = set()

    # -- writes in flight ---------------------------------------------------------------------------
    def start(self, write: Coroutine[Any, Any, None]) -> None:
        """Run ``write`` (a coroutine that calls :meth:`write`) as one of the writes in flight."""
        self._tasks.add(asyncio.create_task(write, name="ingest-write"))

    async def wait(self, at_most: int) -> None:
        """Wait until at most ``at_most`` writes are in flight; cancelling the waiter does not cancel them.

        A write that failed with an error it does not handle itself re-raises it here.
        """
        while True:
            for done in [w for w in self._tasks if w.done()]:
                self._tasks.discard(done)
                done.result()
            if len(self._tasks) <= at_most:
                return
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    def others_running(self, me: asyncio.Task[Any] | None) -> bool:
        """Whether a write other than ``me`` is still in flight."""
        return any(not w.done() for w in self._tasks if w is not me)

    async def drain(self, timeout_s: float) -> None:
        """Let running writes finish; one still retrying an unavailable store after ``timeout_s`` is given up
        (its messages stay unacknowledged, with the broker)."""
        tasks, self._tasks = self._tasks, set()
        if not tasks:
            return
        await asyncio.wait(tasks, timeout=timeout_s)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await task

    # -- one write ----------------------------------------------------------------------------------
    async def write(self, samples: Mapping[str, Sequence[Sample]], *, messages: int, final: bool) -> bool:
        """Write ``samples`` (of ``messages`` messages, for the logs); ``True`` once the store has them, ``False``
        if it rejected them. An unavailable store is retried until it answers, except with ``final`` (shutdown):
        then the error is raised."""
        s = self.settings
        backoff = Backoff(min(s.retry_initial_s, s.retry_max_s), s.retry_max_s)
        while True:
            try:
                t0 = time.perf_counter()
                await asyncio.to_thread(self._write_all, samples)
                self.metrics.observe_write(time.perf_counter() - t0)
                self.set_ok(True)
                return True
            except StoreUnavailable as exc:
                self.metrics.store_error("unavailable")
                self.set_ok(False)
                if final:
                    raise
                wait = backoff.next(exc.retry_after)
                log.warning(
                    "store unavailable (%s); %d messages wait unacknowledged; retrying in %.1f s", exc, messages, wait
                )
                await asyncio.sleep(wait)
            except StoreRejected as exc:
                self.metrics.store_error("rejected")
                log.error("store rejected a batch (%s); writing its messages one by one", exc)
                return False
            except Exception:
                # A store error nobody wrapped: keep the data and retry like an outage rather than stop ingesting.
                self.metrics.store_error("unexpected")
                self.set_ok(False)
                if final:
                    log.exception("unexpected error writing %d messages", messages)
                    raise
                wait = backoff.next()
                log.exception("unexpected error writing %d messages; retrying in %.1f s", messages, wait)
                await asyncio.sleep(wait)

    def _write_all(self, samples: Mapping[str, Sequence[Sample]]) -> None:
        self.store.write_many(samples)

    def set_ok(self, ok: bool) -> None:
        if ok != self.store_ok:
            log.info("store writes %s", "succeed again" if ok else "fail; holding acknowledgements")
        self.store_ok = ok
        self.metrics.set_store_up(ok)
