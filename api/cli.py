"""``metalldaten tokens``: make, list and revoke analytics API tokens."""

from __future__ import annotations

from pathlib import Path

import typer

from core.cli import CliGroup

from .tokens import ROLES, TokenStore

app = typer.Typer(cls=CliGroup, no_args_is_help=True)

_FILE = typer.Option(Path("tokens.json"), "--tokens-file", help="The API's tokens file (api.tokens_file).")


@app.command()
def create(
    role: str = typer.Option(..., "--role", help="member, analyst or admin."),
    member: str | None = typer.Option(None, "--member", help="Member pseudonym (member tokens only)."),
    label: str = typer.Option("", "--label", help="Free note shown by 'tokens list'."),
    purpose: str | None = typer.Option(
        None, "--purpose", help="Analyst tokens: the purpose their queries serve (default research)."
    ),
    tokens_file: Path = _FILE,
) -> None:
    """Make a token and print it once; only its hash is stored."""
    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    try:
        token, record = TokenStore(tokens_file).create(role, member=member, label=label, purpose=purpose)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    bound = record.member or (f"purpose {record.purpose}" if record.purpose else "")
    typer.echo(f"created {record.id} ({record.role}{' ' + bound if bound else ''})", err=True)
    typer.echo(token)


@app.command("list")
def list_tokens(tokens_file: Path = _FILE) -> None:
    """List tokens: id, role, member, created, revoked, label (never the token)."""
    records = TokenStore(tokens_file).records()
    for r in records:
        bound = r.member or r.purpose or "-"
        typer.echo(f"{r.id}\t{r.role}\t{bound}\t{r.created}\t{r.revoked or 'active'}\t{r.label}")


@app.command()
def revoke(token_id: str = typer.Argument(..., help="Token id, e.g. tk-3f9a1c2b."), tokens_file: Path = _FILE) -> None:
    """Revoke a token; a running API refuses it from its next request on."""
    record = TokenStore(tokens_file).revoke(token_id)
    if record is None:
        typer.echo(f"no token {token_id} in {tokens_file}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {record.id}")
