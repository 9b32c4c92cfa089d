"""Ingest worker processes: ``[ingest] workers = N`` runs N ingestors on the shared subscription.

One Python process decodes, checks and encodes on one core at a time (the GIL), so on a
machine with more cores a hub can run several ingestors that share the broker's
subscription (``$share/<shared_group>/...``): the broker hands every message to exactly
one of them. The hub process runs worker 1 itself (beside the API when it runs both roles)
and starts workers 2..N as child processes, each with the ingest role only:

* its own broker session: the client id gets ``-w<k>`` appended (``client_id`` set in the
  file resumes each worker's own session after a restart);
* its own dead-letter file (``dead-letters.w<k>.jsonl`` beside the configured one), so that
  no two processes append to and rotate one file;
* its own operators' listener on the next port (``metrics_listen`` port + k - 1; port 0 picks
  a free one, which the worker logs), since each process has its own metrics.

The hub supervises them: a worker that exits is logged, shown in the hub's health (degraded,
with the reason) and restarted with capped back-off; on SIGTERM the hub stops every worker
(SIGTERM: it writes and acknowledges what it has batched) and waits for it. What a worker held
unacknowledged when it died stays with the broker, which delivers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from core.backoff import Backoff

log = logging.getLogger(__name__)

#: Seconds a stopping worker gets to write its last batch before it is killed.
STOP_TIMEOUT_S = 30.0
#: A worker that ran this long before it exited is restarted without waiting (the back-off starts over).
HEALTHY_RUN_S = 60.0


@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess | None = None
    restarts: int = 0
    last_exit: str | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 30.0))


class WorkerProcesses:
    """``async with WorkerProcesses(target, args_of, indexes=range(2, n + 1)) as w: ...``.

    ``target(*args_of(k))`` runs worker ``k`` in a spawned process (a fresh interpreter: nothing
    of the parent's threads or event loop is inherited); it must be a module-level function and
    its arguments picklable.
    """

    def __init__(
        self,
        target: Callable[..., None],
        args_of: Callable[[int], tuple[Any, ...]],
        *,
        indexes: range,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._target = target
        self._args_of = args_of
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(k) for k in indexes]
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self._running = Gauge(
            "mdh_hub_ingest_workers_running",
            "Ingest worker processes running (besides the hub's own)",
            registry=registry,
        )
        self._exits = Counter(
            "mdh_hub_ingest_worker_exits", "Ingest worker processes that exited unexpectedly", registry=registry
        )

    async def __aenter__(self) -> WorkerProcesses:
        for worker in self._workers:
            self._start(worker)
        self._supervisor = asyncio.create_task(self._supervise(), name="ingest-workers")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await asyncio.to_thread(self._stop_all)

    def stop(self) -> None:
        """No more restarts: the hub is stopping (leaving the context stops the workers)."""
        self._stopping = True

    def _start(self, worker: _Worker) -> None:
        process = self._context.Process(
            target=self._target, args=self._args_of(worker.index), name=f"mdh-ingest-{worker.index}", daemon=False
        )
        process.start()
        worker.process = process
        log.info("ingest worker %d started (pid %s)", worker.index, process.pid)
        self._running.set(self.running)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        started = {w.index: loop.time() for w in self._workers}
        while True:
            for worker in self._workers:
                p = worker.process
                if p is None or p.is_alive():
                    continue
                worker.last_exit = self._exit_of(worker)
                worker.process = None
                worker.restarts += 1
                self._exits.inc()
                self._running.set(self.running)
                if loop.time() - started[worker.index] > HEALTHY_RUN_S:
                    worker.backoff.reset()
                delay = worker.backoff.next()
                log.error("%s; restarting it in %.1f s", worker.last_exit, delay)
                loop.call_later(delay, self._restart, worker, started)
            await asyncio.sleep(0.5)

    def _restart(self, worker: _Worker, started: dict[int, float]) -> None:
        if self._stopping or worker.process is not None:
            return
        started[worker.index] = asyncio.get_running_loop().time()
        self._start(worker)

    def _stop_all(self) -> None:
        processes = [w.process for w in self._workers if w.process is not None]
        for p in processes:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker's hub drains and acknowledges
        for p in processes:
            p.join(STOP_TIMEOUT_S)
            if p.is_alive():
                log.error("ingest worker %s did not stop within %.0f s; killing it", p.name, STOP_TIMEOUT_S)
                p.kill()
                p.join(5)
        for w in self._workers:
            w.process = None
        self._running.set(0)

    @staticmethod
    def _exit_of(w: _Worker) -> str | None:
        """Why the worker's current process ended, if it did (before the supervisor has noticed)."""
        p = w.process
        if p is None or p.exitcode is None:
            return None
        return f"ingest worker {w.index} exited with code {p.exitcode}"

    def pids(self) -> list[int]:
        """Process ids of the workers running now."""
        return [w.process.pid for w in self._workers if w.process is not None and w.process.pid is not None]

    @property
    def running(self) -> int:
        return sum(1 for w in self._workers if w.process is not None and w.process.is_alive())

    def health(self) -> dict[str, object]:
        """``ok`` while every worker runs; each worker's pid, restarts and why it last exited."""
        workers = [
            {
                "index": w.index,
                "running": w.process is not None and w.process.is_alive(),
                "pid": w.process.pid if w.process is not None else None,
                "restarts": w.restarts,
                "last_exit": self._exit_of(w) or w.last_exit,
            }
            for w in self._workers
        ]
        return {"ok": all(w["running"] for w in workers), "workers": workers}
