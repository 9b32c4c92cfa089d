"""The one place where an error of ours ends a command: its message on stderr, a non-zero exit."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from .errors import MdhError


class CliGroup(TyperGroup):
    """A typer command group that reports an :class:`MdhError` instead of a traceback.

    Every ``typer.Typer`` of ours is made with ``cls=CliGroup``, so the error is handled the
    same way whether a sub-command runs under ``metalldaten`` or its own group is invoked.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except MdhError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


__all__ = ["CliGroup"]
