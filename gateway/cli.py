"""``metalldaten gateway``: run, reload, keygen, reveal, preview, check, discover."""

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
PROPOSAL_OUT = typer.Option(Path("discovered.toml"), "--out", "-o", help="Proposal file to write")
EXISTING = typer.Option(None, "--config", "-c", help="Print the difference to this configuration")
CLIENT_CERT = typer.Option(None, "--client-cert", help="Client certificate (made once if unset)")
CLIENT_KEY = typer.Option(None, "--client-key", help="Its private key")
SERVER_CERT = typer.Option(None, "--server-cert", help="Trusted server certificate (pinned)")
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


@app.command()
def discover(
    endpoint: str = typer.Option(..., "--endpoint", "-e", help="Server URL, opc.tcp://host:port/path"),
    out: Path = PROPOSAL_OUT,
    existing: Path | None = EXISTING,
    name: str = typer.Option("discovered", "--name", help="Source name in the proposal"),
    security_policy: str = typer.Option("None", "--security-policy", help="None | Basic256Sha256 | Aes…"),
    security_mode: str = typer.Option("None", "--security-mode", help="None | Sign | SignAndEncrypt"),
    username: str | None = typer.Option(None, "--username", help="Login; the password comes from --password-env"),
    password_env: str = typer.Option("MDH_OPCUA_PASSWORD", "--password-env", help="Environment variable with it"),
    client_cert: Path | None = CLIENT_CERT,
    client_key: Path | None = CLIENT_KEY,
    server_cert: Path | None = SERVER_CERT,
    server_fingerprint: str | None = typer.Option(None, "--server-fingerprint", help="SHA-256 of the server cert"),
    max_depth: int = typer.Option(12, "--max-depth", min=1, help="Levels below Objects to browse"),
    max_nodes: int = typer.Option(200_000, "--max-nodes", min=1, help="Stop after this many nodes"),
    batch: int = typer.Option(1000, "--batch", min=1, max=10_000, help="Nodes per browse or read request"),
    timeout_s: float = typer.Option(30.0, "--timeout", min=1, help="Seconds to wait for one request"),
) -> None:
    """Browse an OPC UA server and write a reviewable configuration proposal (nodes, signals, exclusions)."""
    import os

    from pydantic import ValidationError

    from .discovery import DiscoverLimits, run_discover
    from .errors import GatewayError
    from .sources.opcua.config import OpcuaSource

    password = os.environ.get(password_env) if username else None
    try:
        cfg = OpcuaSource.model_validate(
            {
                "name": name,
                "url": endpoint,
                "security_policy": security_policy,
                "security_mode": security_mode,
                "username": username,
                "password": password,
                "client_cert": client_cert,
                "client_key": client_key,
                "server_cert": server_cert,
                "server_fingerprint": server_fingerprint,
                "timeout_s": timeout_s,
            }
        )
    except ValidationError as exc:
        typer.echo(f"invalid options: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    text = existing.read_text(encoding="utf-8") if existing is not None else None
    limits = DiscoverLimits(batch=batch, max_depth=max_depth, max_nodes=max_nodes)
    try:
        proposal, lines = asyncio.run(run_discover(cfg, limits, existing=text, pki_dir=out.parent / "pki"))
    except GatewayError as exc:
        typer.echo(f"discover failed: {exc}", err=True)
        raise typer.Exit(1) from None
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(proposal, encoding="utf-8")
    tmp.replace(out)
    for line in lines:
        typer.echo(line)
    typer.echo(f"wrote {out}")
