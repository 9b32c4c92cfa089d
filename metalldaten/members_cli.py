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
from typing import TYPE_CHECKING, Annotated

import typer

from api.export import write_export
from core.auditlog import AuditLog
from core.cli import CliGroup
from core.consent import CATEGORIES, Permission, granted, iso, odrl_policy, withdrawn
from core.register import load_register, save_register, with_member_changed
from storage import Store, open_store

from .broker_control import BrokerControlError, control_endpoint
from .broker_files import BrokerToolError
from .deletion import delete_member_data
from .revocation import resume_member
from .trustee_commands import (
    AuditOpt,
    BrokerCaOpt,
    BrokerHostOpt,
    BrokerPortOpt,
    ByOpt,
    MemberArg,
    PasswdOpt,
    RegisterOpt,
    TokensOpt,
    audit,
    fail,
    now,
    remove_cmd,
    revoke,
)

if TYPE_CHECKING:
    from .hub import HubSettings

app = typer.Typer(cls=CliGroup, no_args_is_help=True)
consent_app = typer.Typer(cls=CliGroup, no_args_is_help=True, help="Consent per data category and purpose.")
app.add_typer(consent_app, name="consent")
TargetOpt = Annotated[str, typer.Option("--target", help=f"Data category: {', '.join(CATEGORIES)}.")]
PurposeOpt = Annotated[
    str, typer.Option("--purpose", help="Purpose, one of the register's (benchmarking, research, ...).")
]
ConfigOpt = Annotated[Path, typer.Option("--config", help="The hub's settings file (store, register, dead letters).")]


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option}: {value!r} is not a date or an RFC 3339 time (2026-01-01 or 2026-01-01T00:00:00Z)")
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
        fail(f"{member} is not in {register}")
    assert entry is not None
    problem: str | None = None
    try:
        permission = Permission.model_validate(
            {
                "target": target,
                "purpose": purpose,
                "valid_from": _when(valid_from, "--from") or now(),
                "valid_until": _when(valid_until, "--until"),
            }
        )
        reg = with_member_changed(reg, member, permission=granted(list(entry.permission), permission))
    except ValueError as exc:
        problem = str(exc)
    if problem is not None:  # outside the handler: the exit carries no traceback of the validation error
        fail(problem)
    save_register(register, reg)
    audit(audit_log, by, "consent.grant", member, permission=permission.model_dump(mode="json"))
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
        fail(f"{member} is not in {register}")
    assert entry is not None
    at = now()
    permissions, changed = withdrawn(list(entry.permission), target, purpose, at)
    if not changed:
        fail(f"{member} has no consent to {target} for {purpose} in force or to come")
    save_register(register, with_member_changed(reg, member, permission=permissions))
    audit(audit_log, by, "consent.withdraw", member, target=target, purpose=purpose, at=iso(at), permissions=changed)
    typer.echo(f"{member}: consent to {target} for {purpose} withdrawn at {iso(at)}")


@consent_app.command("show")
def show_cmd(member: MemberArg, register: RegisterOpt) -> None:
    """Print MEMBER's consent as an ODRL policy (JSON-LD)."""
    entry = load_register(register).get(member)
    if entry is None:
        fail(f"{member} is not in {register}")
    assert entry is not None
    typer.echo(json.dumps(odrl_policy(member, entry.permission), indent=1))


# -- revocation ------------------------------------------------------------------------------------------
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
    revoke("suspend", member, register, passwd, audit_log, None, tokens_file, broker_host, broker_port, broker_ca, by)


app.command("remove-member")(remove_cmd)


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
        fail(str(exc.args[0]))
    except (BrokerToolError, BrokerControlError) as exc:
        fail(str(exc))
    audit(audit_log, by, "member.resume", member, broker=live)
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
            now=now(),
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
            fail(f"{member} is not in {settings.register_file}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as fh:
            manifest = write_export(store, register, member, fh, now=now())
    audit(settings.api.audit_log, by, "member.export", member, files={f.name: f.rows for f in manifest.files})
    typer.echo(f"export of {member} written to {out}: " + ", ".join(f"{f.name} {f.rows} rows" for f in manifest.files))
