"""``metalldaten gateway``: run, reload, keygen, reveal, preview, check."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer

from core.cli import CliGroup

from .config import GatewaySettings, load_gateway_settings

app = typer.Typer(cls=CliGroup, no_args_is_help=True)

CONFIG = typer.Option(..., "--config", "-c", help="Gateway configuration file (TOML)")
PSEUDONYMS = typer.Argument(..., help="One or more pseudonyms such as a-1f2e3d4c5b6a7988")
KEY_OUT = typer.Option(Path("member.key"), "--out", "-o", help="Key file to write (mode 0600)")


def _settings(path: Path) -> GatewaySettings:
    return load_gateway_settings(path)


@app.command()
def run(config: Path = CONFIG) -> None:
    """Run the gateway until SIGTERM or Ctrl-C (then drain the uplink and flush the buffer); SIGHUP reloads."""
    from .runner import Gateway

    settings = _settings(config)

    async def main() -> None:
        async with Gateway(settings, config_path=config) as gw:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, gw.stop)
            loop.add_signal_handler(signal.SIGHUP, gw.request_reload)
            await gw.run()

    asyncio.run(main())


@app.command()
def reload(config: Path = CONFIG) -> None:
    """Check the configuration file and make the gateway running with it re-read it (as SIGHUP does).

    A file that does not load is reported here and not sent; what the running gateway cannot apply
    (a changed [identity], [buffer], [uplink] or [health]) it refuses and reports in its log and /health."""
    from .reload import signal_reload

    settings = _settings(config)
    pid = signal_reload(settings)
    typer.echo(f"reload requested from the gateway (pid {pid}); see its log and /health for the result")


@app.command()
def keygen(
    out: Path = KEY_OUT,
    key_id: str | None = typer.Option(None, "--key-id", help="Key id sent with every batch (default: opaque, random)"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key: every pseudonym changes"),
) -> None:
    """Create the member's secret key. Keep it in the factory; back it up like a password."""
    from .pseudonymise import generate_key

    key = generate_key(out, key_id=key_id, overwrite=force)
    typer.echo(f"wrote {out} (key id {key.key_id})")


@app.command()
def reveal(
    pseudonyms: list[str] = PSEUDONYMS,
    config: Path = CONFIG,
) -> None:
    """Map this member's pseudonyms back to the clear identifiers (locally, with the key); exit 1 if one is unknown."""
    from .pseudonymise import Journal, load_key
    from .pseudonymise import reveal as do_reveal

    settings = _settings(config)
    key = load_key(settings.identity.key_file)
    candidates = settings.known_identifiers() + Journal(settings.identity.journal_file).read()
    unknown = 0
    for pseudonym in pseudonyms:
        found = do_reveal(key, pseudonym, candidates)
        if not found:
            typer.echo(f"{pseudonym}\tnot found among the identifiers in the configuration and the journal", err=True)
            unknown += 1
        for kind, ident in found:
            typer.echo(f"{pseudonym}\t{kind}\t{ident}")
    raise typer.Exit(1 if unknown else 0)


@app.command()
def preview(
    config: Path = CONFIG,
    seconds: float = typer.Option(10.0, "--seconds", "-s", help="How long to read the live sources"),
) -> None:
    """Read the live sources and show what would leave the factory beside what it came from."""
    from .preview import run_preview

    settings = _settings(config)
    rows = asyncio.run(run_preview(settings, seconds))
    for line in rows:
        typer.echo(line)


@app.command()
def check(config: Path = CONFIG) -> None:
    """Validate the configuration, the key file, and that sources and hub are reachable."""
    from .check import run_check

    settings = _settings(config)
    results = asyncio.run(run_check(settings))
    failed = 0
    for name, ok, detail in results:
        typer.echo(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
        failed += not ok
    raise typer.Exit(1 if failed else 0)
