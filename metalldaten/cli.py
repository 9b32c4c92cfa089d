"""The ``metalldaten`` command line. It only assembles the sub-commands of each part.

Sub-commands are imported only when they are run: an edge device that installed the
gateway alone (``pip install 'metalldaten-hub[gateway]'``) runs ``metalldaten gateway …``
and ``metalldaten broker …`` without the hub's libraries (polars, DuckDB, FastAPI …).
A sub-command whose libraries are missing says which extra to install.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import typer

from core.cli import CliGroup

#: name -> (module, attribute, help, kind): "group" for a Typer app, "command" for a function.
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    "gateway": ("gateway.cli", "app", "Edge gateway: read machines, pseudonymise, send to the hub.", "group"),
    "hub": ("metalldaten.hub", "app", "Hub: ingestor and analytics API.", "group"),
    "broker": ("metalldaten.broker_cli", "app", "Trustee: broker certificates and the member register.", "group"),
    "tokens": ("api.cli", "app", "Analytics API tokens.", "group"),
    "members": (
        "metalldaten.members_cli",
        "app",
        "Trustee: members' consent, suspension, removal, deletion with a receipt, export.",
        "group",
    ),
    "demo": ("metalldaten.demo.cli", "demo", "", "command"),
    "simulate": ("metalldaten.demo.simulate", "simulate_command", "", "command"),
}


def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Third-party libraries narrate every connection at INFO; keep their warnings and errors.
        for noisy in ("asyncua", "amqtt", "httpx", "transitions", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _missing_message(name: str, exc: ImportError) -> str:
    return (
        f"metalldaten {name} needs {exc.name or 'a library'}, which is not installed; "
        "install the hub: pip install 'metalldaten-hub[hub]'"
    )


def _missing(name: str, exc: ImportError) -> Any:
    def command() -> None:
        typer.echo(_missing_message(name, exc), err=True)
        raise typer.Exit(2)

    command.__doc__ = f"(not installed: pip install 'metalldaten-hub[hub]' for {name})"
    return command


def build_app(only: str | None = None) -> typer.Typer:
    """The command line with every sub-command, or with ``only`` imported (the others are not listed)."""
    app = typer.Typer(
        cls=CliGroup, no_args_is_help=True, help="Metall+Daten data-sharing hub: gateways, hub, analytics API."
    )
    app.callback()(_main)
    for name, (module, attr, help_text, kind) in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            target = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if only is not None:
                raise
            app.command(name)(_missing(name, exc))
            continue
        if kind == "group":
            app.add_typer(target, name=name, help=help_text)
        else:
            app.command(name)(target)
    return app


def _requested(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (the first word that is not an option), if known."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in SUBCOMMANDS else None


def __getattr__(name: str) -> Any:
    if name == "app":  # the full command line, for tests and documentation tools
        return build_app()
    raise AttributeError(name)


def main() -> None:
    only = _requested(sys.argv[1:])
    try:
        app = build_app(only)
    except ImportError as exc:
        sys.stderr.write(_missing_message(only or "", exc) + "\n")
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
