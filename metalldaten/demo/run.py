"""Run the whole chain in one process: factories → gateways → embedded broker → hub → API.

Every part is the real one (asyncua servers, the gateway with its disk buffer and
MQTT uplink, the ingestor, the DuckDB store, the API under uvicorn); only the
broker is the embedded amqtt one instead of Mosquitto, so nothing needs to be
installed but Python packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import polars as pl

from api.tokens import TokenStore
from core.register import dump_register
from gateway.pseudonymise import generate_key
from gateway.runner import Gateway
from metalldaten.hub import running_hub

from .embedded_broker import embedded_broker
from .mqtt_factory import MqttFactory
from .opcua_factory import OpcUaFactory
from .scenario import FactoryPlan, Plan, make_plan

log = logging.getLogger(__name__)


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(int(s.getsockname()[1]))
    for s in socks:
        s.close()
    return ports


@dataclass
class DemoResult:
    ok: bool
    reason: str = ""
    samples_per_member: dict[str, int] = field(default_factory=dict)


@dataclass
class DemoTokens:
    analyst: str
    members: dict[str, str]  # member pseudonym -> token


def _prepare(plan: Plan, workdir: Path) -> DemoTokens:
    hub_dir = plan.hub.register_file.parent
    hub_dir.mkdir(parents=True, exist_ok=True)
    plan.hub.register_file.write_text(dump_register(plan.register), encoding="utf-8")
    for fp in plan.factories:
        key_file = fp.gateway.identity.key_file
        key_file.parent.mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            generate_key(key_file)
    tokens = TokenStore(plan.hub.api.tokens_file)
    analyst, _ = tokens.create("analyst", label="demo analyst")
    members = {fp.member: tokens.create("member", member=fp.member, label="demo member")[0] for fp in plan.factories}
    return DemoTokens(analyst=analyst, members=members)


@contextlib.asynccontextmanager
async def _factory(fp: FactoryPlan, seed: int) -> AsyncIterator[None]:
    if fp.factory.transport == "opcua":
        opc = OpcUaFactory(
            name=fp.factory.name, port=fp.port, namespace=fp.namespace, machines=fp.machines, seed=seed + fp.index
        )
        async with opc.running():
            yield
    else:
        async with embedded_broker(fp.port):
            mq = MqttFactory(
                name=fp.factory.name,
                hall=f"hall{fp.index}",
                broker_port=fp.port,
                machines=fp.machines,
                seed=seed + fp.index,
            )
            async with mq.running():
                yield


async def _count_per_member(api: str, token: str, members: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for m in members:
            r = await client.get("/v1/series", params={"member": m, "format": "csv", "limit": 1_000_000})
            r.raise_for_status()
            counts[m] = pl.read_csv(r.content).height if r.content.strip() else 0
    return counts


def _print_where_to_look(plan: Plan, tokens: DemoTokens, api: str) -> None:
    out = sys.stdout
    out.write("\nMetall+Daten demo is running.\n")
    out.write(f"  dashboard:  {api}/   (enter a member token)\n")
    out.write(f"  API docs:   {api}/docs\n")
    out.write(f"  analyst token: {tokens.analyst}\n")
    out.write("  member tokens (the factory names below are known only inside each factory):\n")
    for fp in plan.factories:
        out.write(f"    {fp.member}  {fp.factory.name:<32} {fp.factory.transport:<6} {tokens.members[fp.member]}\n")
    out.write(f"  example: curl -H 'Authorization: Bearer {tokens.analyst}' '{api}/v1/series?format=csv&limit=20'\n\n")
    out.flush()


async def run_demo(*, seconds: float | None, workdir: Path | None = None, seed: int = 7) -> DemoResult:
    """Run the demo; with ``seconds``, stop after that long and check that every factory's data arrived."""
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="metalldaten-demo-")) if workdir is None else workdir
    try:
        return await _run(work, seconds, seed)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


async def _run(work: Path, seconds: float | None, seed: int) -> DemoResult:
    ports = _free_ports(8)
    plan = make_plan(workdir=work, ports=ports, seed=seed)
    tokens = _prepare(plan, work)
    api = f"http://{plan.hub.api.host}:{plan.hub.api.port}"
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(embedded_broker(plan.broker_port))
        hub = await stack.enter_async_context(running_hub(plan.hub))
        await hub.wait_started()
        for fp in plan.factories:
            await stack.enter_async_context(_factory(fp, seed))
        gateways = [await stack.enter_async_context(Gateway(fp.gateway)) for fp in plan.factories]
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        runs = [tg.create_task(gw.run(), name=f"gateway-{i}") for i, gw in enumerate(gateways, start=1)]
        _print_where_to_look(plan, tokens, api)
        try:
            if seconds is None:
                await asyncio.Event().wait()  # until Ctrl-C
            else:
                # N seconds of data flow, counted once everything runs: starting five OPC UA servers (each
                # loads the standard address space) takes seconds of its own, more on a loaded machine.
                await asyncio.sleep(seconds)
        finally:
            # Stop reading; each gateway drains its buffer to the broker before run() returns.
            for gw in gateways:
                gw.stop()
        await asyncio.wait(runs, timeout=30)
        # The ingestor writes a batch at the latest after batch_max_delay_s; give it a moment.
        await asyncio.sleep(2.0)
        members = [fp.member for fp in plan.factories]
        counts = await _count_per_member(api, tokens.analyst, members)
    return _verdict(plan, counts)


def _verdict(plan: Plan, counts: dict[str, int]) -> DemoResult:
    missing = [fp for fp in plan.factories if counts.get(fp.member, 0) == 0]
    if missing:
        names = ", ".join(f"{fp.member} ({fp.factory.transport})" for fp in missing)
        return DemoResult(ok=False, reason=f"no data arrived from {names}", samples_per_member=counts)
    return DemoResult(ok=True, samples_per_member=counts)
