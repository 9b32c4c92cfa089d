"""Sub-commands of this part (filled in by the part's owner)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
