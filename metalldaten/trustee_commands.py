"""Member removal and suspension as the trustee runs them, with their audit line: shared by
``metalldaten members`` and ``metalldaten broker`` (``remove-member`` is one command under both names).

Light on purpose: it runs on a broker host with only the gateway's packages installed (no polars, no web
framework, no store).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.tokens import TokenStore
from core.auditlog import AuditLog
from core.consent import iso

from .broker_ca import CaFiles
from .broker_control import BrokerControlError, control_endpoint
from .broker_files import BrokerToolError
from .revocation import Action, revoke_member

MemberArg = Annotated[str, typer.Argument(help="The member's pseudonym, e.g. m-7f3a9c.")]
RegisterOpt = Annotated[Path, typer.Option("--register", help="Member register (TOML).")]
AuditOpt = Annotated[Path, typer.Option("--audit-log", help="The API's audit log (api.audit_log): changes go there.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who makes the change (default: the login user).")]
PasswdOpt = Annotated[Path, typer.Option("--passwd", help="Mosquitto password file.")]
CaDirOpt = Annotated[
    Path | None, typer.Option("--ca-dir", help="CA directory from init-ca (default: certs/ next to --passwd).")
]
TokensOpt = Annotated[
    Path | None, typer.Option("--tokens-file", help="The API's tokens file: the member's tokens are revoked.")
]
BrokerHostOpt = Annotated[str, typer.Option("--broker-host", help="Host of the running broker.")]
BrokerPortOpt = Annotated[
    int | None,
    typer.Option("--broker-port", help="TLS port of the running broker: tell it at once (MDH_BROKER_ADMIN_PASSWORD)."),
]
BrokerCaOpt = Annotated[
    Path | None, typer.Option("--broker-ca", help="CA certificate of the broker's TLS certificate.")
]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def now() -> datetime:
    return datetime.now(UTC)


def audit(path: Path, by: str | None, action: str, member: str, **details: Any) -> None:
    AuditLog(path).write(
        {"ts": iso(now()), "role": "trustee", "actor": by or getpass.getuser(), "action": action, "member": member}
        | details
    )


def revoke(
    action: Action,
    member: str,
    register: Path,
    passwd: Path,
    audit_log: Path,
    ca_dir: Path | None,
    tokens_file: Path | None,
    broker_host: str,
    broker_port: int | None,
    broker_ca: Path | None,
    by: str | None,
) -> None:
    ca = CaFiles(ca_dir if ca_dir is not None else passwd.parent / "certs")
    if ca_dir is not None and not ca.ca_key.exists():
        # named, but unusable: the member's certificates would stay valid under a "removed" summary
        fail(f"--ca-dir {ca_dir} has no ca.key; the member's client certificates cannot be revoked")
    try:
        result = revoke_member(
            register=register,
            passwd=passwd,
            member=member,
            action=action,
            ca=ca,
            tokens=TokenStore(tokens_file) if tokens_file is not None else None,
            control=control_endpoint(broker_host, broker_port, broker_ca),
        )
    except KeyError as exc:
        fail(str(exc.args[0]))
    except (BrokerToolError, BrokerControlError) as exc:
        fail(str(exc))
    audit(
        audit_log,
        by,
        f"member.{action}",
        member,
        logins=result.logins,
        tokens_revoked=result.tokens_revoked,
        certificates_revoked=result.certificates_revoked,
        broker=result.live,
    )
    no_ca = action == "remove" and not ca.ca_key.exists()
    typer.echo(result.summary() + (" (no CA found next to the password file)" if no_ca else ""))


def remove_cmd(
    member: MemberArg,
    register: RegisterOpt,
    passwd: PasswdOpt,
    audit_log: AuditOpt,
    ca_dir: CaDirOpt = None,
    tokens_file: TokensOpt = None,
    broker_host: BrokerHostOpt = "localhost",
    broker_port: BrokerPortOpt = None,
    broker_ca: BrokerCaOpt = None,
    by: ByOpt = None,
) -> None:
    """Remove MEMBER at once: as ``suspend``, and its gateway logins are deleted for good and its client
    certificates revoked (the revocation list takes effect at the broker's next start)."""
    revoke("remove", member, register, passwd, audit_log, ca_dir, tokens_file, broker_host, broker_port, broker_ca, by)
