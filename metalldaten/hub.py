"""The hub process: ingestor and analytics API, in one process or one role each.

``metalldaten hub run --config hub.toml`` runs the roles the file names (both by
default); ``--role ingest`` or ``--role api`` runs one, so that several ingestors
can share the load behind one broker (shared subscription) and the API can scale
on its own. ``[ingest] workers = N`` runs N ingestors on the shared subscription
from one command: this process and N - 1 worker processes it starts and supervises
(see :mod:`metalldaten.workers`). SIGTERM / SIGINT stop the process cleanly: the
ingestors write and acknowledge what they have batched, the API finishes the
requests in flight.

Every role's Prometheus metrics go into one registry, served with a health document on the
operators' listener (``metrics_listen``, loopback by default; see :mod:`metalldaten.operators`),
never on the API port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, cast

import typer
import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import Field, field_validator

from api.http.app import create_app, tune_interpreter
from api.settings import ApiSettings
from core.cli import CliGroup
from core.configfile import ConfigError, FileSettings, load_settings, with_paths_resolved
from core.register import RegisterFile
from storage import Ingestor, IngestSettings, Store, StoreSettings, open_store

from .operators import is_loopback, operators_app, parse_listen
from .workers import WorkerProcesses

log = logging.getLogger(__name__)

Role = Literal["ingest", "api"]


class HubSettings(FileSettings, env_prefix="MDH_HUB__"):
    """The hub's configuration file (see ``metalldaten/hub.example.toml``)."""

    #: The trustee's member register (``metalldaten broker add-member`` writes it).
    register_file: Path = Path("members.toml")
    roles: list[Role] = Field(default_factory=lambda: list[Role](["ingest", "api"]), min_length=1)
    #: ``HOST:PORT`` of the operators' listener (Prometheus ``/metrics`` and ``/healthz``); ``""`` turns it off.
    #: It needs no token, so keep it on loopback or an internal network.
    metrics_listen: str = "127.0.0.1:9464"
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v:
            parse_listen(v)
        return v

    def resolve_paths(self, base: Path) -> HubSettings:
        """A copy with relative paths in the file taken relative to the file's folder."""
        return with_paths_resolved(
            self,
            base,
            ("register_file",),
            store=self.store.resolve_paths(base),
            ingest=self.ingest.resolve_paths(base),
            api=self.api.resolve_paths(base),
        )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the hub: :func:`run_hub` stops every role on SIGTERM / SIGINT.

    (uvicorn's own handlers, one per server, would each take the signal from the one installed before.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def load_hub_settings(path: Path | str) -> HubSettings:
    settings = load_settings(HubSettings, path)
    problems = worker_problems(settings)
    if problems:
        raise ConfigError(path, problems)
    return settings


def worker_problems(settings: HubSettings) -> list[tuple[str, str]]:
    """``(key, expected)`` for ingest workers the rest of the settings cannot support."""
    n = settings.ingest.workers
    if n == 1:
        return []
    problems = []
    if settings.store.kind == "duckdb":
        problems.append(
            (
                "ingest.workers",
                f"1 with the embedded store (got {n}): store.kind 'duckdb' is one process's file "
                f"({settings.store.path}); several ingest workers need an InfluxDB store",
            )
        )
    if not settings.ingest.shared_group:
        problems.append(
            (
                "ingest.workers",
                f"1 without ingest.shared_group (got {n}): only a shared subscription gives each message to one worker",
            )
        )
    return problems


@dataclass
class Hub:
    """The running roles of one hub process (handles for tests and the demo)."""

    settings: HubSettings
    store: Store
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    ingestor: Ingestor | None = None
    workers: WorkerProcesses | None = None
    api_server: uvicorn.Server | None = None
    operators_server: uvicorn.Server | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()
        if self.ingestor is not None:
            self.ingestor.stop()
        if self.workers is not None:
            self.workers.stop()
        for server in (self.api_server, self.operators_server):
            if server is not None:
                server.should_exit = True

    async def wait_started(self, within_s: float = 20.0) -> None:
        """Wait until the API and the operators' listener listen and the ingestor is connected (those that run)."""
        async with asyncio.timeout(within_s):
            for server in (self.api_server, self.operators_server):
                while server is not None and not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
                    await asyncio.sleep(0.05)
            if self.ingestor is not None:
                await self.ingestor.connected.wait()

    @property
    def operators_port(self) -> int | None:
        """The port the operators' listener is bound to (useful with port 0), once it listens."""
        server = self.operators_server
        if server is None or not server.started or not server.servers:
            return None
        return int(server.servers[0].sockets[0].getsockname()[1])

    def health(self) -> tuple[bool, dict[str, object]]:
        """The roles' state for the operators' ``/healthz``, and the reasons the hub is degraded though it works
        (messages refused in the last minutes, a gateway's clock running ahead)."""
        roles: dict[str, object] = {}
        ok = True
        reasons: list[str] = []
        if self.ingestor is not None:
            state = self.ingestor.health()
            reasons += [f"ingest: {r}" for r in cast(list[str], state["reasons"])]
            ok = ok and bool(state["ok"])
            if self.workers is not None:
                workers = self.workers.health()
                ok = ok and bool(workers["ok"])
                state = {**state, "ok": bool(state["ok"]) and bool(workers["ok"]), "workers": workers["workers"]}
            roles["ingest"] = state
        if self.api_server is not None:
            started = bool(self.api_server.started)
            ok = ok and started
            roles["api"] = {"ok": started, "listening": started}
        return ok, {"reasons": reasons, "roles": roles}


@contextlib.asynccontextmanager
async def running_hub(settings: HubSettings, roles: list[Role] | None = None) -> AsyncIterator[Hub]:
    """Start the hub's roles in the background; leaving the block stops them and closes the store."""
    roles = roles or settings.roles
    problems = worker_problems(settings)
    if problems:
        raise ValueError("; ".join(f"{key}: expected {expected}" for key, expected in problems))
    store = open_store(settings.store)
    register = RegisterFile(settings.register_file)
    hub = Hub(settings=settings, store=store)
    try:
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
            if "ingest" in roles:
                ingestor = Ingestor(settings.ingest, store, register, registry=hub.registry)
                hub.ingestor = await stack.enter_async_context(ingestor)
                tg.create_task(hub.ingestor.run(), name="ingestor")
                n = settings.ingest.workers
                if n > 1:
                    workers = WorkerProcesses(
                        run_worker,
                        lambda k: (worker_settings(settings, k), logging.getLogger().getEffectiveLevel()),
                        indexes=range(2, n + 1),
                        registry=hub.registry,
                    )
                    hub.workers = await stack.enter_async_context(workers)
            if "api" in roles:
                tune_interpreter(settings.api)
                app = create_app(settings.api, store, register, registry=hub.registry)
                config = uvicorn.Config(
                    app, host=settings.api.host, port=settings.api.port, log_level="warning", lifespan="on"
                )
                hub.api_server = _Server(config)
                tg.create_task(hub.api_server.serve(), name="api")
            if settings.metrics_listen:
                host, port = parse_listen(settings.metrics_listen)
                if not is_loopback(host):
                    log.warning(
                        "the operators' listener (metrics, no token) is bound to %s, not loopback: "
                        "make sure only operators reach it",
                        host,
                    )
                ops = uvicorn.Config(
                    operators_app(hub.registry, hub.health), host=host, port=port, log_level="warning", lifespan="off"
                )
                hub.operators_server = _Server(ops)
                tg.create_task(hub.operators_server.serve(), name="operators")
                tg.create_task(_announce_operators(hub, host), name="operators-announce")
            try:
                yield hub
            finally:
                hub.stop()
    finally:
        store.close()


async def _announce_operators(hub: Hub, host: str) -> None:
    server = hub.operators_server
    while server is not None and not server.started and not server.should_exit:  # noqa: ASYNC110 (no event)
        await asyncio.sleep(0.05)
    if hub.operators_port is not None:
        shown = f"[{host}]" if ":" in host else host
        log.info("operators' listener: http://%s:%d/metrics and /healthz", shown, hub.operators_port)


def worker_settings(settings: HubSettings, index: int) -> HubSettings:
    """The settings of ingest worker ``index`` (2..N): the ingest role only, with its own broker session,
    dead-letter file and operators' listener (see :mod:`metalldaten.workers`)."""
    ingest = settings.ingest
    dead = ingest.dead_letter_path
    listen = settings.metrics_listen
    if listen:
        host, port = parse_listen(listen)
        shown = f"[{host}]" if ":" in host else host
        listen = f"{shown}:{port + index - 1 if port else 0}"
    return settings.model_copy(
        update={
            "roles": ["ingest"],
            "metrics_listen": listen,
            "ingest": ingest.model_copy(
                update={
                    "workers": 1,
                    "client_id": f"{ingest.client_id}-w{index}",
                    "dead_letter_path": dead.with_name(f"{dead.stem}.w{index}{dead.suffix}"),
                }
            ),
        }
    )


def run_worker(settings: HubSettings, level: int) -> None:
    """An ingest worker process's main (spawned by :class:`~metalldaten.workers.WorkerProcesses`)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    asyncio.run(run_hub(settings, ["ingest"]))


async def run_hub(settings: HubSettings, roles: list[Role] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    async with running_hub(settings, roles) as hub:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, hub.stop)
        log.info("hub running: roles %s", ", ".join(roles or settings.roles))
        await hub._stop.wait()
        log.info("hub stopping")


app = typer.Typer(cls=CliGroup, no_args_is_help=True)


@app.command("run")
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Hub configuration file (TOML).")],
    role: Annotated[
        list[str] | None, typer.Option("--role", help="Run only this role: ingest or api (repeatable).")
    ] = None,
) -> None:
    """Run the hub: ingestor and analytics API (the roles in the file, or those given with --role)."""
    settings = load_hub_settings(config)
    roles: list[Role] | None = None
    if role:
        bad = [r for r in role if r not in ("ingest", "api")]
        if bad:
            typer.echo(f"--role: expected 'ingest' or 'api', got {', '.join(map(repr, bad))}", err=True)
            raise typer.Exit(2)
        roles = [r for r in ("ingest", "api") if r in role]
    asyncio.run(run_hub(settings, roles))
