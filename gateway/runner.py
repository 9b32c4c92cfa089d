"""The gateway process: sources -> normalise -> disk buffer -> uplink, as one async context manager.

::

    async with Gateway(settings) as gw:   # opens the buffer, connects the uplink, starts /health
        await gw.run()                    # until gw.stop() (or SIGTERM in the CLI): then drain and flush

Several gateways can run in one process (the demo runs thirteen); each has its own buffer file,
metrics registry and health port (``health.port = 0`` turns the endpoint off).

:meth:`Gateway.reload` applies a changed configuration while running (sources added, removed or
changed, a new policy) without touching the buffer or unchanged sources; with ``config_path`` the
gateway re-reads that file on :meth:`Gateway.request_reload` (SIGHUP in the CLI). See :mod:`.reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from core.configfile import ConfigError
from wire.codec import Codec
from wire.model import SCHEMA_VERSION, Batch, Sample

from .buffer import DiskBuffer
from .config import GatewaySettings, load_gateway_settings
from .errors import DiskBufferError, GatewayError, ReloadRefused
from .metrics import HealthServer
from .normalise import Normaliser, Watermarks
from .policy import compile_policy
from .pseudonymise import Journal, MemberKey, Pseudonymiser, load_key
from .reload import ReloadPlan, pid_file, plan_reload, remove_pid, write_pid
from .sources import SourceContext, SourceRunner, build_sources
from .uplink import Uplink

log = logging.getLogger(__name__)


class Gateway:
    """One edge gateway. ``key`` may be passed in-process instead of reading ``identity.key_file``."""

    def __init__(
        self, settings: GatewaySettings, *, key: MemberKey | None = None, config_path: Path | None = None
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        ident = settings.identity
        self.key = key or load_key(ident.key_file)
        self.pseudonymiser = Pseudonymiser(self.key, length=ident.pseudonym_hex, journal=Journal(ident.journal_file))
        self.gateway_pseudonym = self.pseudonymiser.gateway(ident.gateway_name)
        self.member = ident.member
        self.policy = compile_policy(settings.policy)
        self._codec = Codec(level=settings.uplink.compression_level)
        b = settings.buffer
        self.buffer = DiskBuffer(
            b.path,
            seal=self._seal,
            max_bytes=b.max_bytes,
            overflow=b.overflow,
            batch_size=settings.uplink.batch_size,
            batch_time_s=settings.uplink.batch_time_s,
            live_window_s=b.live_window_s,
        )
        self.uplink = Uplink(settings.uplink, self.buffer, member=self.member, gateway=self.gateway_pseudonym)
        self._classes = settings.asset_classes()
        self.watermarks = Watermarks()
        self._ctx = ctx = SourceContext(
            normaliser=lambda: Normaliser(
                self.policy, self.pseudonymiser, asset_classes=self._classes, watermarks=self.watermarks
            ),
            sink=self._sink,
            pki_dir=b.path.parent / "pki",
            client_id=lambda name: f"mdh-{self.gateway_pseudonym}-{self.pseudonymiser('g', 'source:' + name)[2:10]}",
        )
        self.sources: list[SourceRunner] = build_sources(settings, ctx)
        self.health: HealthServer | None = None
        self._stop = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._running = False
        self._run_done = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reload_requested = asyncio.Event()
        #: Reloads by result (``ok``, ``refused``), and why the last one was refused (until one succeeds).
        self.reloads: Counter[str] = Counter()
        self.reload_error: str | None = None

    # -- pure helpers ------------------------------------------------------------------------------

    def _seal(self, batch_id: str, samples: list[Sample]) -> bytes:
        batch = Batch(
            schema=SCHEMA_VERSION,
            batch_id=batch_id,
            member=self.member,
            gateway=self.gateway_pseudonym,
            key_id=self.key.key_id,
            sent_ns=time.time_ns(),
            samples=samples,
        )
        return self._codec.encode(batch)

    def _flush(self, *, seal_all: bool = False) -> None:
        marks = self.watermarks.take_dirty()
        try:
            self.buffer.flush(seal_all=seal_all, marks=marks)
        except DiskBufferError as exc:
            for key, ts in marks.items():  # saved with the next successful flush
                self.watermarks.dirty[key] = max(ts, self.watermarks.dirty.get(key, ts))
            log.error("gateway %s: %s; samples stay in memory and are retried", self.gateway_pseudonym, exc)

    def _sink(self, samples: list[Sample], on_durable: Callable[[], None] | None = None) -> None:
        self.buffer.add(samples, on_durable)
        if self.buffer.unsealed >= self.buffer.batch_size:
            self._batch_ready.set()  # a full batch: write, seal and publish it now, not at the next tick

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        await self._stack.__aenter__()
        try:
            self.buffer.open()
            self._stack.callback(self.buffer.close)
            self.watermarks.ts.update(self.buffer.watermarks())
            await self._stack.enter_async_context(self.uplink)
            if self.config_path is not None:  # `metalldaten gateway reload` finds the process by this file
                pid = pid_file(self.settings)
                write_pid(pid)
                self._stack.callback(remove_pid, pid)
            h = self.settings.health
            if h.port:
                self.health = await self._stack.enter_async_context(HealthServer(self, h.host, h.port))
        except BaseException:
            await self._stack.aclose()
            raise
        log.info(
            "gateway %s of member %s started with %d source(s)", self.gateway_pseudonym, self.member, len(self.sources)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._running:
            self.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run_done.wait(), self.settings.uplink.drain_timeout_s + 10)
        await self._stack.aclose()

    def stop(self) -> None:
        """Ask :meth:`run` to drain, flush and return (safe to call from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Run every source, the flusher, the heartbeat and the uplink until :meth:`stop`."""
        self._running = True
        self._run_done.clear()
        try:
            await self._run()
        finally:
            self._running = False
            self._run_done.set()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._tasks = {s.name: tg.create_task(s.run(), name=f"source-{s.name}") for s in self.sources}
            helpers = [tg.create_task(self._flush_loop()), tg.create_task(self._heartbeat_loop())]
            if self.config_path is not None:
                helpers.append(tg.create_task(self._reload_loop()))
            uplink = tg.create_task(self.uplink.run(), name="uplink")
            await self._stop.wait()
            log.info("gateway %s stopping: flushing and draining", self.gateway_pseudonym)
            self._flush()  # acknowledges buffered source messages while their sessions still run
            source_tasks = list(self._tasks.values())
            for t in source_tasks:
                t.cancel()
            await asyncio.gather(*source_tasks, return_exceptions=True)
            self._tg = None
            for t in helpers:
                t.cancel()
            self._flush(seal_all=True)
            self.uplink.wake()
            drained = await self.uplink.drain(self.settings.uplink.drain_timeout_s)
            if not drained:
                log.warning(
                    "gateway %s: %d samples stay buffered for the next start",
                    self.gateway_pseudonym,
                    self.buffer.depth_samples,
                )
            uplink.cancel()

    # -- reload ------------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Ask the running gateway to re-read ``config_path`` (safe to call from a signal handler)."""
        self._reload_requested.set()

    async def reload(self, new: GatewaySettings) -> ReloadPlan:
        """Apply ``new`` while running: stop removed and changed sources, start added and changed ones, apply
        the policy. :class:`ReloadRefused` (or :class:`PolicyError`) leaves everything as it was."""
        if self._tg is None:
            raise ReloadRefused("the gateway is not running")
        plan = plan_reload(self.settings, new)
        policy = compile_policy(new.policy) if plan.policy_changed else self.policy
        stopping = [s for s in self.sources if (s.kind, s.name) in plan.stop]
        if stopping:
            self._flush()  # acknowledges what the stopping sources delivered, while their sessions still run
        tasks = [self._tasks.pop(s.name) for s in stopping]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sources = [s for s in self.sources if s not in stopping]
        if plan.policy_changed:
            self.policy, self._classes = policy, new.asset_classes()
            for s in self.sources:
                s.normaliser.set_policy(policy, self._classes)
        starting = {name for _, name in plan.start}
        only_new = new.model_copy(
            update={kind: [c for c in getattr(new, kind) if c.name in starting] for kind in ("opcua", "mqtt")}
        )
        for runner in build_sources(only_new, self._ctx):
            self.sources.append(runner)
            self._tasks[runner.name] = self._tg.create_task(runner.run(), name=f"source-{runner.name}")
        self.settings = new
        return plan

    async def _reload_loop(self) -> None:
        assert self.config_path is not None
        while True:
            await self._reload_requested.wait()
            self._reload_requested.clear()
            try:
                new = await asyncio.to_thread(load_gateway_settings, self.config_path)
                plan = await self.reload(new)
            except (ConfigError, GatewayError) as exc:
                self.reloads["refused"] += 1
                self.reload_error = str(exc)
                log.error(
                    "gateway %s: reload refused, the running configuration continues: %s", self.gateway_pseudonym, exc
                )
                continue
            self.reloads["ok"] += 1
            self.reload_error = None
            log.info(
                "gateway %s reloaded: %d source(s) started, %d stopped, %d unchanged%s",
                self.gateway_pseudonym,
                len(plan.start),
                len(plan.stop),
                len(plan.keep),
                ", policy applied" if plan.policy_changed else "",
            )

    async def _flush_loop(self) -> None:
        """Flush when a full batch is waiting, else every ``flush_interval_s``; publish what was sealed at once."""
        interval = self.settings.buffer.flush_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_ready.wait(), interval)
            self._batch_ready.clear()
            sealed = self.buffer.sealed
            self._flush()
            if self.buffer.sealed != sealed:  # else the uplink has nothing new to send: let it sleep
                self.uplink.wake()

    async def _heartbeat_loop(self) -> None:
        period = self.settings.uplink.heartbeat_s
        tick = min(5.0, period / 4)
        older = int((period - tick) * 1e9)
        while True:
            await asyncio.sleep(tick)
            now = time.time_ns()
            for s in self.sources:
                if s.connected:
                    repeated = s.normaliser.repeat_stale(now, older, confirmed_since_ns=now - int(period * 1e9))
                    if repeated:
                        self.buffer.add(repeated)
