"""``metalldaten demo``: the whole chain in one process, on the embedded broker and store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from .run import run_demo


def demo(
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Run this long, check that every factory's data arrived, exit.")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep keys, buffers and the store here (default: a temp dir).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated machines.")] = 7,
) -> None:
    """Six simulated factories → gateways → embedded broker → hub → analytics API, in one process."""
    try:
        result = asyncio.run(run_demo(seconds=seconds, workdir=workdir, seed=seed))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    typer.echo("samples stored per member pseudonym:")
    for member, n in result.samples_per_member.items():
        typer.echo(f"  {member}  {n:>8}")
    if not result.ok:
        typer.echo(f"demo FAILED: {result.reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"demo OK: data from all {len(result.samples_per_member)} simulated factories reached the API")
