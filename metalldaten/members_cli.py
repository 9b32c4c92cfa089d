"""``metalldaten members``: the trustee's commands for members' control of their data.

Consent (``consent grant|withdraw|show``), suspension and removal at once (``suspend``, ``resume``,
``remove-member``), deletion with a receipt (``delete-data``) and export (``export``). Every change is
written to the API's audit log (``--audit-log``), so consent changes, revocations and deletions sit in
the same trail as the analyst queries. See docs/trustee.md.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.audit import AuditLog
from api.export import write_export
from api.tokens import TokenStore
from core.cli import CliGroup
from core.consent import CATEGORIES, Permission, granted, iso, odrl_policy, withdrawn
from core.register import load_register, save_register, with_member_changed
from storage import Store, open_store

from .broker_ca import CaFiles
from .broker_control import BrokerControlError, control_endpoint
from .broker_files import BrokerToolError
from .deletion import delete_member_data
from .revocation import Action, resume_member, revoke_member

if TYPE_CHECKING:
    from .hub import HubSettings

app = typer.Typer(cls=CliGroup, no_args_is_help=True)
consent_app = typer.Typer(cls=CliGroup, no_args_is_help=True, help="Consent per data category and purpose.")
app.add_typer(consent_app, name="consent")

MemberArg = Annotated[str, typer.Argument(help="The member's pseudonym, e.g. m-7f3a9c.")]
RegisterOpt = Annotated[Path, typer.Option("--register", help="Member register (TOML).")]
AuditOpt = Annotated[Path, typer.Option("--audit-log", help="The API's audit log (api.audit_log): changes go there.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who makes the change (default: the login user).")]
TargetOpt = Annotated[str, typer.Option("--target", help=f"Data category: {', '.join(CATEGORIES)}.")]
PurposeOpt = Annotated[
    str, typer.Option("--purpose", help="Purpose, one of the register's (benchmarking, research, ...).")
]
ConfigOpt = Annotated[Path, typer.Option("--config", help="The hub's settings file (store, register, dead letters).")]
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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _now() -> datetime:
    return datetime.now(UTC)


def _audit(path: Path, by: str | None, action: str, member: str, **details: Any) -> None:
    AuditLog(path).write(
        {"ts": iso(_now()), "role": "trustee", "actor": by or getpass.getuser(), "action": action, "member": member}
        | details
    )


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option}: {value!r} is not a date or an RFC 3339 time (2026-01-01 or 2026-01-01T00:00:00Z)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- consent ---------------------------------------------------------------------------------------------
@consent_app.command("grant")
def grant_cmd(
    member: MemberArg,
    register: RegisterOpt,
    audit_log: AuditOpt,
    target: TargetOpt,
    purpose: PurposeOpt,
    valid_from: Annotated[str | None, typer.Option("--from", help="Start (default: now).")] = None,
    valid_until: Annotated[str | None, typer.Option("--until", help="End (default: open-ended).")] = None,
    by: ByOpt = None,
) -> None:
    """Record that MEMBER permits use of its --target data for --purpose, from --from until --until."""
    reg = load_register(register)
    entry = reg.get(member)
    if entry is None:
        _fail(f"{member} is not in {register}")
    assert entry is not None
    problem: str | None = None
    try:
        permission = Permission.model_validate(
            {
                "target": target,
                "purpose": purpose,
                "valid_from": _when(valid_from, "--from") or _now(),
                "valid_until": _when(valid_until, "--until"),
            }
        )
        reg = with_member_changed(reg, member, permission=granted(list(entry.permission), permission))
    except ValueError as exc:
        problem = str(exc)
    if problem is not None:  # outside the handler: the exit carries no traceback of the validation error
        _fail(problem)
    save_register(register, reg)
    _audit(audit_log, by, "consent.grant", member, permission=permission.model_dump(mode="json"))
    typer.echo(
        f"{member}: {target} may be used for {purpose} from {iso(permission.valid_from)}"
        + (f" until {iso(permission.valid_until)}" if permission.valid_until else "")
    )


@consent_app.command("withdraw")
def withdraw_cmd(
    member: MemberArg,
    register: RegisterOpt,
    audit_log: AuditOpt,
    target: TargetOpt,
    purpose: PurposeOpt,
    by: ByOpt = None,
) -> None:
    """End MEMBER's consent to --target for --purpose now: analyst answers leave its rows out from the next
    request on; benchmark cells released from now on leave it out (released cells stay as released)."""
    reg = load_register(register)
    entry = reg.get(member)
    if entry is None:
        _fail(f"{member} is not in {register}")
    assert entry is not None
    at = _now()
    permissions, changed = withdrawn(list(entry.permission), target, purpose, at)
    if not changed:
        _fail(f"{member} has no consent to {target} for {purpose} in force or to come")
    save_register(register, with_member_changed(reg, member, permission=permissions))
    _audit(audit_log, by, "consent.withdraw", member, target=target, purpose=purpose, at=iso(at), permissions=changed)
    typer.echo(f"{member}: consent to {target} for {purpose} withdrawn at {iso(at)}")


@consent_app.command("show")
def show_cmd(member: MemberArg, register: RegisterOpt) -> None:
    """Print MEMBER's consent as an ODRL policy (JSON-LD)."""
    entry = load_register(register).get(member)
    if entry is None:
        _fail(f"{member} is not in {register}")
    assert entry is not None
    typer.echo(json.dumps(odrl_policy(member, entry.permission), indent=1))


# -- revocation ------------------------------------------------------------------------------------------
def _revoke(
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
        _fail(f"--ca-dir {ca_dir} has no ca.key; the member's client certificates cannot be revoked")
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
        _fail(str(exc.args[0]))
    except (BrokerToolError, BrokerControlError) as exc:
        _fail(str(exc))
    _audit(
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


@app.command("suspend")
def suspend_cmd(
    member: MemberArg,
    register: RegisterOpt,
    passwd: PasswdOpt,
    audit_log: AuditOpt,
    tokens_file: TokensOpt = None,
    broker_host: BrokerHostOpt = "localhost",
    broker_port: BrokerPortOpt = None,
    broker_ca: BrokerCaOpt = None,
    by: ByOpt = None,
) -> None:
    """Suspend MEMBER at once: data refused (also what is queued), logins disabled in the running broker,
    tokens revoked, left out of analyst answers. ``resume`` undoes it."""
    _revoke("suspend", member, register, passwd, audit_log, None, tokens_file, broker_host, broker_port, broker_ca, by)


@app.command("remove-member")
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
    _revoke("remove", member, register, passwd, audit_log, ca_dir, tokens_file, broker_host, broker_port, broker_ca, by)


@app.command("resume")
def resume_cmd(
    member: MemberArg,
    register: RegisterOpt,
    passwd: PasswdOpt,
    audit_log: AuditOpt,
    broker_host: BrokerHostOpt = "localhost",
    broker_port: BrokerPortOpt = None,
    broker_ca: BrokerCaOpt = None,
    by: ByOpt = None,
) -> None:
    """End MEMBER's suspension: its logins back, enabled in the running broker. Make new API tokens."""
    try:
        live = resume_member(
            register=register,
            passwd=passwd,
            member=member,
            control=control_endpoint(broker_host, broker_port, broker_ca),
        )
    except KeyError as exc:
        _fail(str(exc.args[0]))
    except (BrokerToolError, BrokerControlError) as exc:
        _fail(str(exc))
    _audit(audit_log, by, "member.resume", member, broker=live)
    typer.echo(f"member {member} resumed" + (f"; running broker: {live}" if live else "; restart the broker"))


# -- deletion and export ---------------------------------------------------------------------------------
@contextmanager
def _hub_store(config: Path) -> Iterator[tuple[HubSettings, Store]]:
    """The hub's settings from ``config`` and its store, closed afterwards."""
    from .hub import load_hub_settings

    settings = load_hub_settings(config)
    store = open_store(settings.store)
    try:
        yield settings, store
    finally:
        store.close()


@app.command("delete-data")
def delete_data_cmd(
    member: MemberArg,
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", help="Write the deletion receipt (JSON) here.")],
    by: ByOpt = None,
) -> None:
    """Delete everything the store holds of a suspended or removed MEMBER and write the receipt."""
    with _hub_store(config) as (settings, store):
        receipt = delete_member_data(
            store=store,
            store_kind=settings.store.kind,
            register_file=settings.register_file,
            dead_letter_path=settings.ingest.dead_letter_path,
            member=member,
            by=by or getpass.getuser(),
            now=_now(),
            audit=AuditLog(settings.api.audit_log),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(receipt, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = ", ".join(f"{k} {v}" for k, v in receipt["rows_deleted"].items())
    typer.echo(
        f"deleted {member}: {rows}; dead letters {receipt['dead_letters_deleted']}; receipt {out} ({receipt['digest']})"
    )


@app.command("export")
def export_cmd(
    member: MemberArg,
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", help="Write the zip here.")],
    by: ByOpt = None,
) -> None:
    """Write everything the hub holds of MEMBER as Parquet files in a zip with a manifest (as GET /v1/export)."""
    with _hub_store(config) as (settings, store):
        register = load_register(settings.register_file)
        if register.get(member) is None:
            _fail(f"{member} is not in {settings.register_file}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as fh:
            manifest = write_export(store, register, member, fh, now=_now())
    _audit(settings.api.audit_log, by, "member.export", member, files={f.name: f.rows for f in manifest.files})
    typer.echo(f"export of {member} written to {out}: " + ", ".join(f"{f.name} {f.rows} rows" for f in manifest.files))
