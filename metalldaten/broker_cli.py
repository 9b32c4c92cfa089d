"""``metalldaten broker``: the trustee's commands for the hub broker and the member register.

The member register is the single source of truth for who may send; these commands
keep the register, the Mosquitto password file and the certificates in step.
After changing the password file, reload Mosquitto (SIGHUP) so that it takes effect.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Annotated

import typer

from .broker_ca import CaFiles, init_ca, issue_client_certificate
from .broker_files import (
    TEMPLATE_DIR,
    BrokerToolError,
    GatewayConnection,
    delete_login,
    gateway_snippet,
    logins,
    render_config,
    set_password,
    write_secret_file,
)
from .configfile import ConfigError
from .register import (
    DEFAULT_EMISSION_FACTOR,
    Member,
    load_register,
    new_pseudonym,
    save_register,
    with_member,
    with_member_inactive,
)

app = typer.Typer(no_args_is_help=True)

RegisterOpt = Annotated[Path, typer.Option("--register", help="Member register (TOML).")]
PasswdOpt = Annotated[Path, typer.Option("--passwd", help="Mosquitto password file.")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _new_password() -> str:
    return secrets.token_urlsafe(24)


@app.command("init-ca")
def init_ca_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for ca.pem, ca.key, server.pem, server.key.")],
    hostname: Annotated[
        list[str] | None,
        typer.Option("--hostname", help="Name or IP gateways use to reach the broker (repeatable)."),
    ] = None,
    organisation: Annotated[str, typer.Option(help="Organisation in the certificates.")] = "Metall+Daten hub",
    force: Annotated[bool, typer.Option(help="Replace an existing CA.")] = False,
) -> None:
    """Create the hub's CA and the broker's server certificate."""
    names = hostname or ["localhost", "127.0.0.1"]
    try:
        files = init_ca(out, hostnames=names, organisation=organisation, force=force)
    except (FileExistsError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"CA certificate:     {files.ca_cert}  (give to gateways as ca_file)")
    typer.echo(f"CA key:             {files.ca_key}  (keep offline; signs client certificates)")
    typer.echo(f"server certificate: {files.server_cert}  for {', '.join(names)}")


@app.command("write-config")
def write_config_cmd(
    config_dir: Annotated[Path, typer.Option(help="Where mosquitto.conf and acl go (and certs/, passwd live).")],
    data_dir: Annotated[Path, typer.Option(help="Mosquitto persistence directory.")],
    port: Annotated[int, typer.Option(help="TLS listener port.")] = 8883,
    mtls_port: Annotated[int, typer.Option(help="Mutual-TLS listener port; 0 leaves it out.")] = 8884,
    bind: Annotated[str | None, typer.Option(help="Address to bind to (default: all).")] = None,
) -> None:
    """Write mosquitto.conf and acl from broker_config/ with the given paths and ports."""
    template = (TEMPLATE_DIR / "mosquitto.conf").read_text(encoding="utf-8")
    config_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = render_config(
        template,
        config_dir=config_dir.resolve(),
        data_dir=data_dir.resolve(),
        port=port,
        mtls_port=mtls_port or None,
        bind=bind,
    )
    (config_dir / "mosquitto.conf").write_text(conf, encoding="utf-8")
    shutil.copyfile(TEMPLATE_DIR / "acl", config_dir / "acl")
    typer.echo(f"wrote {config_dir / 'mosquitto.conf'} and {config_dir / 'acl'}")


@app.command("add-member")
def add_member_cmd(
    register: RegisterOpt,
    passwd: PasswdOpt,
    group: Annotated[str, typer.Option(help="Corporate group (one contributor in benchmarks).")],
    region: Annotated[str, typer.Option(help="Coarse region, e.g. DE-NW.")] = "",
    emission_factor: Annotated[
        float, typer.Option(help="kg CO2e per kWh for this member's electricity.")
    ] = DEFAULT_EMISSION_FACTOR,
    pseudonym: Annotated[str | None, typer.Option(help="Use this pseudonym instead of a random one.")] = None,
    ca_dir: Annotated[Path | None, typer.Option(help="CA directory from init-ca (for --client-cert).")] = None,
    client_cert: Annotated[bool, typer.Option(help="Also issue a client certificate (mutual TLS).")] = False,
    hub_host: Annotated[str, typer.Option(help="Broker host name for the gateway settings.")] = "localhost",
    hub_port: Annotated[int, typer.Option(help="Broker TLS port for the gateway settings.")] = 8883,
    mtls_port: Annotated[int, typer.Option(help="Broker mutual-TLS port (used with --client-cert).")] = 8884,
    out: Annotated[
        Path | None, typer.Option(help="Write the member's kit here (settings, password, certificates).")
    ] = None,
) -> None:
    """Register a member: pseudonym, broker password, optional client certificate, gateway settings."""
    try:
        reg = load_register(register)
        member = Member(
            pseudonym=pseudonym or new_pseudonym(reg),
            group=group,
            region=region,
            emission_factor_kg_per_kwh=emission_factor,
        )
        reg = with_member(reg, member)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    if client_cert and ca_dir is None:
        _fail("--client-cert needs --ca-dir (the directory made by init-ca)")
    password = _new_password()
    try:
        set_password(passwd, member.pseudonym, password)
    except BrokerToolError as exc:
        _fail(str(exc))
    save_register(register, reg)
    typer.echo(f"registered member {member.pseudonym} (group {member.group}, region {member.region or '-'})")
    _hand_over(
        member.pseudonym,
        password,
        ca_dir=ca_dir,
        client_cert=client_cert,
        host=hub_host,
        port=mtls_port if client_cert else hub_port,
        out=out,
    )
    typer.echo("reload the broker (SIGHUP) so that the new login takes effect")


def _hand_over(
    pseudonym: str, password: str, *, ca_dir: Path | None, client_cert: bool, host: str, port: int, out: Path | None
) -> None:
    cert = key = None
    if out is not None:
        kit = out / pseudonym
        kit.mkdir(parents=True, exist_ok=True)
        if ca_dir is not None:
            shutil.copyfile(CaFiles(ca_dir).ca_cert, kit / "hub-ca.pem")
        if client_cert and ca_dir is not None:
            cert_path, key_path = issue_client_certificate(CaFiles(ca_dir), pseudonym, kit)
            cert, key = cert_path.name, key_path.name
        conn = GatewayConnection(
            member=pseudonym, host=host, port=port, ca_file="hub-ca.pem", client_cert=cert, client_key=key
        )
        (kit / "gateway-uplink.toml").write_text(gateway_snippet(conn), encoding="utf-8")
        write_secret_file(kit / "gateway.env", f"MDH_GATEWAY__UPLINK__PASSWORD={password}\n")
        typer.echo(
            f"member kit written to {kit}/ (gateway-uplink.toml, gateway.env with the password"
            f"{', client certificate' if cert else ''}); hand it over on a secure channel"
        )
        return
    if client_cert:
        _fail("--client-cert needs --out (where the certificate and key are written)")
    typer.echo(gateway_snippet(GatewayConnection(member=pseudonym, host=host, port=port, ca_file="hub-ca.pem")))
    typer.echo("# gateway environment (shown once; hand over on a secure channel):")
    typer.echo(f"MDH_GATEWAY__UPLINK__PASSWORD={password}")


@app.command("remove-member")
def remove_member_cmd(register: RegisterOpt, passwd: PasswdOpt, pseudonym: str) -> None:
    """Mark a member inactive (its data is refused) and delete its broker login."""
    try:
        reg = with_member_inactive(load_register(register), pseudonym)
        removed = delete_login(passwd, pseudonym)
    except (ConfigError, KeyError, BrokerToolError) as exc:
        _fail(str(exc))
    save_register(register, reg)
    typer.echo(f"member {pseudonym} is inactive; broker login {'deleted' if removed else 'was not present'}")
    typer.echo(
        "reload the broker (SIGHUP) so that the login is refused; revoke its client certificate, if any, "
        "by issuing a new CA only if it must not reach the mutual-TLS listener"
    )


@app.command("rotate-password")
def rotate_password_cmd(
    passwd: PasswdOpt,
    login: Annotated[str, typer.Argument(help="Member pseudonym or service login (ingestor).")],
    register: Annotated[Path | None, typer.Option(help="Member register; checks that a member is active.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the new password to this file (mode 0600).")] = None,
) -> None:
    """Give a login a new random password."""
    if register is not None and login.startswith("m-") and not load_register(register).is_active(login):
        _fail(f"{login} is not an active member in {register}")
    if login not in logins(passwd):
        _fail(f"{login} has no login in {passwd}")
    password = _new_password()
    try:
        set_password(passwd, login, password)
    except BrokerToolError as exc:
        _fail(str(exc))
    _emit_password(login, password, out)
    typer.echo("reload the broker (SIGHUP); the old password stops working then")


@app.command("add-ingestor")
def add_ingestor_cmd(
    passwd: PasswdOpt,
    login: Annotated[
        str, typer.Option(help="Login name; the ACL template grants read access to 'ingestor'.")
    ] = "ingestor",
    out: Annotated[Path | None, typer.Option(help="Write the password to this file (mode 0600).")] = None,
) -> None:
    """Create the ingestor's broker login (read-only by the ACL)."""
    if login.startswith("m-"):
        _fail("service logins must not look like member pseudonyms")
    password = _new_password()
    try:
        set_password(passwd, login, password)
    except BrokerToolError as exc:
        _fail(str(exc))
    _emit_password(login, password, out, env="MDH_HUB__INGEST__PASSWORD")


def _emit_password(login: str, password: str, out: Path | None, *, env: str = "MDH_GATEWAY__UPLINK__PASSWORD") -> None:
    if out is not None:
        write_secret_file(out, f"{env}={password}\n")
        typer.echo(f"new password of {login} written to {out}")
    else:
        typer.echo(f"# new password of {login} (shown once):")
        typer.echo(f"{env}={password}")
