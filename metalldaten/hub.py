"""The hub process: ingestor and analytics API, in one process or one role each.

``metalldaten hub run --config hub.toml`` runs the roles the file names (both by
default); ``--role ingest`` or ``--role api`` runs one, so that several ingestors
can share the load behind one broker (shared subscription) and the API can scale
on its own. SIGTERM / SIGINT stop the process cleanly: the ingestor writes and
acknowledges what it has batched, the API finishes the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer
import uvicorn
from pydantic import Field

from api.app import create_app
from api.settings import ApiSettings
from storage import Ingestor, IngestSettings, Store, StoreSettings, open_store

from .configfile import ConfigError, FileSettings, load_settings
from .register import RegisterFile

log = logging.getLogger(__name__)

Role = Literal["ingest", "api"]


class HubSettings(FileSettings, env_prefix="MDH_HUB__"):
    """The hub's configuration file (see ``metalldaten/hub.example.toml``)."""

    #: The trustee's member register (``metalldaten broker add-member`` writes it).
    register_file: Path = Path("members.toml")
    roles: list[Role] = Field(default_factory=lambda: list[Role](["ingest", "api"]), min_length=1)
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    def resolve_paths(self, base: Path) -> None:
        """Take relative paths in the file relative to the file's folder."""
        if not self.register_file.is_absolute():
            self.register_file = base / self.register_file
        self.store.resolve_paths(base)
        self.ingest.resolve_paths(base)
        self.api = self.api.resolve_paths(base)


def load_hub_settings(path: Path | str) -> HubSettings:
    return load_settings(HubSettings, path)


@dataclass
class Hub:
    """The running roles of one hub process (handles for tests and the demo)."""

    settings: HubSettings
    store: Store
    ingestor: Ingestor | None = None
    api_server: uvicorn.Server | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()
        if self.ingestor is not None:
            self.ingestor.stop()
        if self.api_server is not None:
            self.api_server.should_exit = True

    async def wait_started(self, within_s: float = 20.0) -> None:
        """Wait until the API listens (if it runs) and the ingestor is connected (if it runs)."""
        async with asyncio.timeout(within_s):
            while self.api_server is not None and not self.api_server.started:  # noqa: ASYNC110 (uvicorn offers no event)
                await asyncio.sleep(0.05)
            if self.ingestor is not None:
                await self.ingestor.connected.wait()


@contextlib.asynccontextmanager
async def running_hub(settings: HubSettings, roles: list[Role] | None = None) -> AsyncIterator[Hub]:
    """Start the hub's roles in the background; leaving the block stops them and closes the store."""
    roles = roles or settings.roles
    store = open_store(settings.store)
    register = RegisterFile(settings.register_file)
    hub = Hub(settings=settings, store=store)
    try:
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
            if "ingest" in roles:
                hub.ingestor = await stack.enter_async_context(Ingestor(settings.ingest, store, register))
                tg.create_task(hub.ingestor.run(), name="ingestor")
            if "api" in roles:
                app = create_app(settings.api, store, register)
                config = uvicorn.Config(
                    app, host=settings.api.host, port=settings.api.port, log_level="warning", lifespan="on"
                )
                hub.api_server = uvicorn.Server(config)
                tg.create_task(hub.api_server.serve(), name="api")
            try:
                yield hub
            finally:
                hub.stop()
    finally:
        store.close()


async def run_hub(settings: HubSettings, roles: list[Role] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    async with running_hub(settings, roles) as hub:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, hub.stop)
        log.info("hub running: roles %s", ", ".join(roles or settings.roles))
        await hub._stop.wait()
        log.info("hub stopping")


app = typer.Typer(no_args_is_help=True)


@app.command("run")
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Hub configuration file (TOML).")],
    role: Annotated[
        list[str] | None, typer.Option("--role", help="Run only this role: ingest or api (repeatable).")
    ] = None,
) -> None:
    """Run the hub: ingestor and analytics API (the roles in the file, or those given with --role)."""
    try:
        settings = load_hub_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    roles: list[Role] | None = None
    if role:
        bad = [r for r in role if r not in ("ingest", "api")]
        if bad:
            typer.echo(f"--role: expected 'ingest' or 'api', got {', '.join(map(repr, bad))}", err=True)
            raise typer.Exit(2)
        roles = [r for r in ("ingest", "api") if r in role]
    asyncio.run(run_hub(settings, roles))
