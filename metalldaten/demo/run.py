"""Run the whole chain in one process: factories → gateways → embedded broker → hub → API.

Every part is the real one (asyncua servers, Sparkplug B over a factory's own broker, the
gateway with its disk buffer and MQTT uplink, the ingestor, the DuckDB store, the API under
uvicorn); only the brokers are embedded amqtt ones instead of Mosquitto, so nothing needs to
be installed but Python packages. The factories first replay weeks of history through their
gateways (see :mod:`.history`), then go live. Logs go to ``demo.log`` in the work folder; the
console shows the status of every member (:mod:`.status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.live import Live

from gateway.runner import Gateway
from metalldaten.hub import Hub, running_hub
from storage import RollupQuery

from .checks import DemoTokens, check_benchmarks, check_members, links, peer_groups, prepare
from .embedded_broker import embedded_broker
from .mqtt_factory import MqttFactory
from .opcua_factory import OpcUaFactory
from .replay import FactoryMachines, HistoryPlan
from .scenario import FACTORIES, FactoryPlan, Plan, make_plan
from .status import MemberStatus, board

log = logging.getLogger(__name__)

#: The log file in the work folder (the console shows the status, not the logs).
LOG_FILE = "demo.log"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(n: int) -> list[int]:
    """``n`` free loopback ports below the ephemeral range: the demo's own outgoing connections (and other
    programs' port-0 listeners) take ephemeral ports, and one of them could take a port before its server
    binds it."""
    rng = random.SystemRandom()
    low = _ephemeral_low()
    ports: list[int] = []
    for _ in range(100 * n):
        if len(ports) == n:
            break
        port = rng.randrange(max(1024, low - 12_000), low)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) < n:
        raise RuntimeError(f"found only {len(ports)} of {n} free loopback ports below {low}")
    return ports


@dataclass
class DemoResult:
    ok: bool
    reason: str = ""
    samples_per_member: dict[str, int] = field(default_factory=dict)
    #: Published benchmark cells per KPI (all asset classes and periods of the history).
    published: dict[str, int] = field(default_factory=dict)
    #: Dashboard links: one per member pseudonym, and "analyst".
    links: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    history_seconds: float | None = None


@dataclass
class _Running:
    plan: Plan
    hub: Hub
    machines: list[FactoryMachines]
    gateways: list[Gateway]
    history: HistoryPlan | None

    def expected_history(self) -> dict[str, int]:
        if self.history is None:
            return {}
        return {fp.member: m.expected for fp, m in zip(self.plan.factories, self.machines, strict=True)}

    def stored(self) -> tuple[dict[str, int], dict[str, int]]:
        """Samples in the store per member: all of them, and those of the history (before its end)."""
        frame = self.hub.store.query_rollups(RollupQuery())
        end = self.history.end if self.history is not None else datetime.max.replace(tzinfo=UTC)
        total = frame.group_by("member").agg(pl.col("samples").sum())
        past = frame.filter(pl.col("hour") < end).group_by("member").agg(pl.col("samples").sum())
        return _per_member(total), _per_member(past)

    def rows(self, stored: dict[str, int]) -> list[MemberStatus]:
        out = []
        for fp, m, gw in zip(self.plan.factories, self.machines, self.gateways, strict=True):
            out.append(
                MemberStatus(
                    member=fp.member,
                    factory=fp.factory.name,
                    transport=fp.factory.transport,
                    connected=gw.uplink.connected and all(s.connected for s in gw.sources),
                    days_done=m.progress.days_done,
                    days_total=m.progress.days_total,
                    live=m.progress.live,
                    sent=gw.uplink.samples_acked,
                    stored=stored.get(fp.member, 0),
                    backlog=gw.buffer.depth_samples + gw.buffer.pending,
                )
            )
        return out


def _per_member(frame: pl.DataFrame) -> dict[str, int]:
    return dict(zip(frame["member"].to_list(), frame["samples"].to_list(), strict=True))


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Send every log record to ``path`` (and none to the console) while the demo runs."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # asyncua logs every node of the standard address space it loads at INFO: thousands of lines per server
    quiet = logging.getLogger("asyncua")
    quiet_level = quiet.level
    quiet.setLevel(logging.WARNING)
    old_level, old_handlers = root.level, list(root.handlers)
    for h in old_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in old_handlers:
            root.addHandler(h)
        root.setLevel(old_level)
        quiet.setLevel(quiet_level)
        handler.close()


async def run_demo(
    *,
    seconds: float | None,
    workdir: Path | None = None,
    seed: int = 7,
    history_days: int | None = None,
    console: Console | None = None,
    while_live: Callable[[], Awaitable[None]] | None = None,
) -> DemoResult:
    """Run the demo. With ``seconds``: stop after that long (counted from the start) and check that every
    member's data reached the API and that at least one benchmark cell of every KPI is published.

    ``history_days``: how far back the factories' history goes (default: to the first of the previous
    month, so that a whole month is closed); 0: no history, live data only. ``while_live``: awaited once
    the history is in and the links are printed; the demo then stops (without waiting for ``seconds``).
    """
    work = Path(tempfile.mkdtemp(prefix="metalldaten-demo-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: wide enough for the status table
            console = Console(width=120)
    with _log_to(work / LOG_FILE):
        result = await _run(work, seconds, seed, history_days, console, while_live)
    console.line()  # the status board ends without a newline
    result.workdir = work
    return result


@contextlib.asynccontextmanager
async def _factory(fp: FactoryPlan, machines: FactoryMachines) -> AsyncIterator[OpcUaFactory | MqttFactory]:
    if fp.factory.transport == "opcua":
        opc = OpcUaFactory(name=fp.factory.name, port=fp.port, namespace=fp.namespace, machines=machines)
        async with opc.running():
            yield opc
    else:
        async with embedded_broker(fp.port, workdir=fp.gateway.buffer.path.parent):
            mq = MqttFactory(name=fp.factory.name, node=f"hall{fp.index}", broker_port=fp.port, machines=machines)
            async with mq.running():
                yield mq


def _reader(gw: Gateway) -> tuple[Callable[[], bool], Callable[[], int]]:
    """The gateway's only source, as a factory's replay sees it: subscribed yet, and how much it read."""
    source = gw.sources[0]
    nodes = sum(len(oc.nodes) for oc in gw.settings.opcua)

    def ready() -> bool:
        if source.kind == "opcua":
            return source.readings_in >= nodes  # the initial value of every node arrived
        return bool(getattr(source, "subscribed", False))

    return ready, lambda: int(source.readings_in)


async def _run(
    work: Path,
    seconds: float | None,
    seed: int,
    history_days: int | None,
    console: Console,
    while_live: Callable[[], Awaitable[None]] | None,
) -> DemoResult:
    started = time.monotonic()
    deadline = None if seconds is None else started + seconds
    plan = make_plan(workdir=work, ports=_free_ports(len(FACTORIES) + 2), seed=seed)
    tokens = prepare(plan)
    history = None if history_days == 0 else HistoryPlan.for_days(datetime.now(UTC), history_days)
    api = f"http://{plan.hub.api.host}:{plan.hub.api.port}"
    machines = [
        FactoryMachines(fp.machines, seed=seed + fp.index, pattern=fp.factory.work, history=history)
        for fp in plan.factories
    ]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(embedded_broker(plan.broker_port, workdir=work / "brokers"))
        hub = await stack.enter_async_context(running_hub(plan.hub))
        await hub.wait_started()
        factories = [
            await stack.enter_async_context(_factory(fp, m)) for fp, m in zip(plan.factories, machines, strict=True)
        ]
        gateways = [await stack.enter_async_context(Gateway(fp.gateway)) for fp in plan.factories]
        state = _Running(plan=plan, hub=hub, machines=machines, gateways=gateways, history=history)
        live = stack.enter_context(Live(console=console, refresh_per_second=2, transient=False))
        async with asyncio.TaskGroup() as tg:
            runs = [tg.create_task(gw.run(), name=f"gateway-{i}") for i, gw in enumerate(gateways, start=1)]
            feeds = []
            for f, gw in zip(factories, gateways, strict=True):
                ready, delivered = _reader(gw)
                feeds.append(tg.create_task(f.run(ready, delivered), name=f"factory-{f.name}"))
            try:
                result = await _phases(state, tokens, api, live, console, deadline, started, while_live)
            finally:
                for t in feeds:
                    t.cancel()
                for gw in gateways:
                    gw.stop()  # each gateway drains its buffer to the broker before run() returns
                await asyncio.wait(runs, timeout=30)
    return result


async def _show(state: _Running, live: Live, phase: str) -> dict[str, int]:
    """Redraw the console; returns the history samples stored per member."""
    total, past = await asyncio.to_thread(state.stored)
    expected = state.expected_history()
    live.update(
        board(
            state.rows(total),
            stored_history=sum(min(past.get(m, 0), n) for m, n in expected.items()),
            expected_history=sum(expected.values()),
            phase=phase,
        )
    )
    return past


async def _phases(
    state: _Running,
    tokens: DemoTokens,
    api: str,
    live: Live,
    console: Console,
    deadline: float | None,
    started: float,
    while_live: Callable[[], Awaitable[None]] | None,
) -> DemoResult:
    expected = state.expected_history()
    # 1. The history reaches the hub through the gateways; nothing asks for a benchmark before it is all
    #    there, because the first request for a released cell freezes it in the ledger.
    while True:
        past = await _show(state, live, "loading history" if expected else "starting")
        if all(past.get(m, 0) >= n for m, n in expected.items()):
            break
        if deadline is not None and time.monotonic() > deadline:
            short = ", ".join(f"{m} {past.get(m, 0):,}/{n:,}" for m, n in expected.items() if past.get(m, 0) < n)
            return DemoResult(ok=False, reason=f"history not at the hub in time (stored/expected: {short})")
        await asyncio.sleep(0.5)
    loaded_after = time.monotonic() - started
    log.info("history at the hub after %.1f s", loaded_after)
    # 2. Release the closed months and weeks, months first (see checks.check_benchmarks).
    published: dict[str, int] = {}
    if state.history is not None:
        classes = peer_groups(state.plan, state.plan.hub.api.min_contributors)
        published = await check_benchmarks(api, tokens.analyst, state.history, classes)
    link_map = links(api, tokens)
    console.print(_where_to_look(state, link_map, api, published, loaded_after), soft_wrap=True)
    # 3. Live data until the time is up (or Ctrl-C), or while a caller looks at it.
    if while_live is not None:
        await while_live()
    while while_live is None and (deadline is None or time.monotonic() < deadline):
        await _show(state, live, "live")
        await asyncio.sleep(1.0)
    total, _ = await asyncio.to_thread(state.stored)
    problem = await check_members(api, tokens, [fp.member for fp in state.plan.factories])
    missing_kpis = [k for k, n in published.items() if n == 0]
    if problem is None and state.history is not None and missing_kpis:
        problem = f"no published benchmark cell of {', '.join(missing_kpis)}"
    return DemoResult(
        ok=problem is None,
        reason=problem or "",
        samples_per_member=total,
        published=published,
        links=link_map,
        history_seconds=loaded_after,
    )


def _where_to_look(state: _Running, link_map: dict[str, str], api: str, published: dict[str, int], after: float) -> str:
    lines = [""]
    if state.history is not None:
        lines.append(
            f"History {state.history.start:%Y-%m-%d} … {state.history.end:%Y-%m-%d} at the hub after {after:.0f} s; "
            "published benchmark cells: " + ", ".join(f"{k} {n}" for k, n in published.items())
        )
    lines.append("Open a dashboard (the token is in the link's #fragment: it never reaches the server or its logs):")
    for fp in state.plan.factories:
        lines.append(f"  {fp.member}  {fp.factory.name:<32} {link_map[fp.member]}")
    lines.append(f"  analyst    {'(pooled, no own values)':<32} {link_map['analyst']}")
    lines.append(f"API docs: {api}/docs    logs: {state.plan.hub.register_file.parent.parent / LOG_FILE}")
    return "\n".join(lines) + "\n"
