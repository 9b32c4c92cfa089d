"""``metalldaten demo``: the whole chain in one process, on the embedded brokers and store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from .run import run_demo


def demo(
    seconds: Annotated[
        float | None,
        typer.Option(
            "--seconds",
            help="Run this long (from the start), check every member's data and the published benchmarks, exit.",
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Keep keys, buffers, the store and demo.log here (default: a new temp dir)."),
    ] = None,
    history_days: Annotated[
        int | None,
        typer.Option(
            "--history-days",
            min=0,
            help="Days of history the factories replay (default: back to the first of the previous month; 0: none).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated machines.")] = 7,
) -> None:
    """Thirteen simulated factories replay weeks of history, then run live → gateways → broker → hub → API."""
    try:
        result = asyncio.run(run_demo(seconds=seconds, workdir=workdir, seed=seed, history_days=history_days))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if not result.ok:
        typer.echo(f"demo FAILED: {result.reason} (logs: {result.workdir}/demo.log)", err=True)
        raise typer.Exit(1)
    stored = sum(result.samples_per_member.values())
    typer.echo(
        f"demo OK: {stored:,} samples from all {len(result.samples_per_member)} members reached the hub; "
        "published benchmark cells: " + ", ".join(f"{k} {n}" for k, n in result.published.items())
    )
