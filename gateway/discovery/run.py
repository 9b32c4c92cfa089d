"""``metalldaten gateway discover``: connect, browse, propose, and compare with an existing configuration."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from asyncua.client.client import Client

from ..errors import SourceError
from ..sources.opcua.config import OpcuaSource
from ..sources.opcua.security import apply_security
from .browse import Browser
from .proposal import Proposal, build_proposal, configured_nodes, difference, render


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoverLimits:
    batch: int = 1000  # nodes per Browse / BrowseNext / Read request
    max_depth: int = 12
    max_nodes: int = 200_000


async def browse_server(cfg: OpcuaSource, limits: DiscoverLimits, *, pki_dir: Path | None = None) -> Proposal:
    """Browse the server of ``cfg`` (its security settings apply) and build the proposal."""
    # a browse of thousands of nodes keeps a server busy: the session watchdog must not take that for a loss
    client = Client(cfg.url, timeout=cfg.timeout_s, watchdog_intervall=max(30.0, cfg.timeout_s))
    await apply_security(client, cfg, pki_dir)
    try:
        await client.connect()
    except (OSError, TimeoutError) as exc:
        raise SourceError(f"cannot connect to {cfg.url}: {type(exc).__name__}: {exc}") from exc
    try:
        walk = await Browser(client, batch=limits.batch, max_depth=limits.max_depth, max_nodes=limits.max_nodes).walk()
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()
    return build_proposal(walk, cfg.url, name=cfg.name)


async def run_discover(
    cfg: OpcuaSource, limits: DiscoverLimits, *, existing: str | None = None, pki_dir: Path | None = None
) -> tuple[str, list[str]]:
    """The proposal's TOML text and the lines to print: the difference to ``existing`` (the text of a
    configuration or an earlier proposal) if given, then a summary."""
    started = time.monotonic()
    prop = await browse_server(cfg, limits, pki_dir=pki_dir)
    took = time.monotonic() - started
    lines = difference(prop, configured_nodes(existing, cfg.url)) if existing is not None else []
    nodes = prop.nodes()
    lines.append(
        f"{len(prop.machines)} machines, {len(nodes) + len(prop.excluded)} variables"
        f" ({sum(1 for n in nodes if n.suggestion.canonical)} with a suggested signal,"
        f" {len(prop.excluded)} excluded as personal data);"
        f" {prop.browsed} nodes browsed in {prop.requests} requests and {took:.1f} s"
    )
    if prop.truncated:
        lines.append(f"INCOMPLETE: the browse {prop.truncated}")
    return render(prop), lines
