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

from core.cli import CliGroup
from core.register import (
    DEFAULT_EMISSION_FACTOR,
    Member,
    load_register,
    new_pseudonym,
    save_register,
    with_member,
)

from .broker_ca import CaFiles, init_ca, issue_client_certificate
from .broker_control import ADMIN_LOGIN, ADMIN_PASSWORD_ENV
from .broker_files import (
    TEMPLATE_DIR,
    BrokerToolError,
    GatewayConnection,
    find_plugin,
    gateway_login,
    gateway_snippet,
    logins,
    member_of_login,
    render_config,
    set_password,
    share_with_broker,
    write_access,
    write_secret_file,
)
from .trustee_commands import remove_cmd

app = typer.Typer(cls=CliGroup, no_args_is_help=True)

RegisterOpt = Annotated[Path, typer.Option("--register", help="Member register (TOML).")]
PasswdOpt = Annotated[Path, typer.Option("--passwd", help="Mosquitto password file.")]
# what a gateway's kit needs, the same for a member's first gateway (add-member) and its others (add-gateway)
CaDirOpt = Annotated[Path | None, typer.Option(help="CA directory from init-ca (for --client-cert).")]
ClientCertOpt = Annotated[bool, typer.Option(help="Also issue a client certificate (mutual TLS).")]
HubHostOpt = Annotated[str, typer.Option(help="Broker host name for the gateway settings.")]
HubPortOpt = Annotated[int, typer.Option(help="Broker TLS port for the gateway settings.")]
MtlsPortOpt = Annotated[int, typer.Option(help="Broker mutual-TLS port (used with --client-cert).")]
# the running broker's control topic and the API's tokens, for changes that take effect at once
TokensOpt = Annotated[Path | None, typer.Option(help="The API's tokens file: the member's tokens are revoked.")]
BrokerHostOpt = Annotated[str, typer.Option(help="Host of the running broker (its control topic).")]
BrokerPortOpt = Annotated[
    int | None,
    typer.Option(help=f"TLS port of the running broker: tell it at once (admin password in {ADMIN_PASSWORD_ENV})."),
]
BrokerCaOpt = Annotated[Path | None, typer.Option(help="CA certificate the broker's TLS certificate is checked with.")]


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
    config_dir: Annotated[
        Path,
        typer.Option(
            help="The broker's directory: holds certs/ and passwd; mosquitto.conf and the access file go here."
        ),
    ],
    data_dir: Annotated[Path, typer.Option(help="Mosquitto persistence directory.")],
    port: Annotated[int, typer.Option(help="Gateways' TLS listener port.")] = 8883,
    mtls_port: Annotated[int, typer.Option(help="Gateways' mutual-TLS listener port; 0 leaves it out.")] = 8884,
    ingest_port: Annotated[
        int, typer.Option(help="Ingestors' TLS listener port; 0 leaves it out (ingestors then use --port).")
    ] = 8885,
    bind: Annotated[str | None, typer.Option(help="Address to bind to (default: all).")] = None,
) -> None:
    """Write mosquitto.conf and dynamic-security.json into --config-dir from the broker_config/ templates."""
    config_dir, data_dir = config_dir.resolve(), data_dir.resolve()
    if config_dir == TEMPLATE_DIR.resolve():
        _fail(
            f"--config-dir {config_dir} is the template directory; give the broker its own directory "
            "(e.g. var/broker), which holds certs/ and passwd"
        )
    certs = CaFiles(config_dir / "certs")
    missing = [p for p in (certs.ca_cert, certs.server_cert, certs.server_key, certs.crl) if not p.exists()]
    if missing:
        _fail(
            f"--config-dir {config_dir}: {', '.join(str(p) for p in missing)} missing; "
            f"run `metalldaten broker init-ca --out {certs.directory}` first"
        )
    try:
        plugin = find_plugin()
    except BrokerToolError as exc:
        _fail(str(exc))
    template = (TEMPLATE_DIR / "mosquitto.conf").read_text(encoding="utf-8")
    data_dir.mkdir(parents=True, exist_ok=True)
    share_with_broker(data_dir, writable=True)
    conf = render_config(
        template,
        config_dir=config_dir,
        data_dir=data_dir,
        port=port,
        mtls_port=mtls_port or None,
        ingest_port=ingest_port or None,
        bind=bind,
        plugin=plugin,
    )
    (config_dir / "mosquitto.conf").write_text(conf, encoding="utf-8")
    access = write_access(config_dir / "passwd")
    typer.echo(f"wrote {config_dir / 'mosquitto.conf'} and {access}")
    if not (config_dir / "passwd").exists():
        typer.echo(f"no logins yet: add them with add-ingestor / add-member --passwd {config_dir / 'passwd'}")


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
    ca_dir: CaDirOpt = None,
    client_cert: ClientCertOpt = False,
    hub_host: HubHostOpt = "localhost",
    hub_port: HubPortOpt = 8883,
    mtls_port: MtlsPortOpt = 8884,
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
    except ValueError as exc:
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
    typer.echo("restart the broker so that the new login and its access rules take effect")


def _hand_over(
    pseudonym: str,
    password: str,
    *,
    ca_dir: Path | None,
    client_cert: bool,
    host: str,
    port: int,
    out: Path | None,
    member: str | None = None,
) -> None:
    """Write (or print) the kit of gateway login ``pseudonym`` (the member's own, or ``<member>.<label>``)."""
    username = pseudonym if member is not None else None
    member = member or pseudonym
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
            member=member,
            host=host,
            port=port,
            ca_file="hub-ca.pem",
            client_cert=cert,
            client_key=key,
            username=username,
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
    typer.echo(
        gateway_snippet(GatewayConnection(member=member, host=host, port=port, ca_file="hub-ca.pem", username=username))
    )
    typer.echo("# gateway environment (shown once; hand over on a secure channel):")
    typer.echo(f"MDH_GATEWAY__UPLINK__PASSWORD={password}")


@app.command("add-gateway")
def add_gateway_cmd(
    register: RegisterOpt,
    passwd: PasswdOpt,
    member: Annotated[str, typer.Option(help="The member's pseudonym.")],
    label: Annotated[str, typer.Option(help="Short name of the gateway, unique within the member (e.g. line-2).")],
    ca_dir: CaDirOpt = None,
    client_cert: ClientCertOpt = False,
    hub_host: HubHostOpt = "localhost",
    hub_port: HubPortOpt = 8883,
    mtls_port: MtlsPortOpt = 8884,
    out: Annotated[
        Path | None, typer.Option(help="Write the gateway's kit here (settings, password, certificates).")
    ] = None,
) -> None:
    """Give an active member another gateway login (<member>.<label>), so that its gateways never
    disconnect each other: the broker binds every login to one client id."""
    try:
        if not load_register(register).is_active(member):
            _fail(f"{member} is not an active member in {register}")
        login = gateway_login(member, label)
    except ValueError as exc:
        _fail(str(exc))
    if login in logins(passwd):
        _fail(f"{login} already has a login in {passwd}; use rotate-password to give it a new password")
    if client_cert and ca_dir is None:
        _fail("--client-cert needs --ca-dir (the directory made by init-ca)")
    password = _new_password()
    try:
        set_password(passwd, login, password)
    except BrokerToolError as exc:
        _fail(str(exc))
    typer.echo(f"gateway login {login} of member {member} created")
    _hand_over(
        login,
        password,
        ca_dir=ca_dir,
        client_cert=client_cert,
        host=hub_host,
        port=mtls_port if client_cert else hub_port,
        out=out,
        member=member,
    )
    typer.echo("restart the broker so that the new login's access rules take effect")


# The same command as ``metalldaten members remove-member``: a removal always leaves its line in the audit log.
app.command(
    "remove-member",
    help="Mark a member inactive (its data is refused), delete its gateway logins, revoke its client certificates "
    "and API tokens, and (with --broker-port) disable its logins in the running broker at once; the removal is "
    "written to the API's audit log (--audit-log). The same as `metalldaten members remove-member`.",
)(remove_cmd)


@app.command("add-admin")
def add_admin_cmd(
    passwd: PasswdOpt,
    out: Annotated[Path | None, typer.Option(help="Write the password to this file (mode 0600).")] = None,
) -> None:
    """Create (or renew) the trustee's admin login: the only one that may send the broker's control commands,
    which suspend and remove members at once. Keep its password with the trustee."""
    password = _new_password()
    try:
        set_password(passwd, ADMIN_LOGIN, password)
    except BrokerToolError as exc:
        _fail(str(exc))
    _emit_password(ADMIN_LOGIN, password, out, env=ADMIN_PASSWORD_ENV)
    typer.echo("restart the broker so that the admin login and its access rules take effect")


@app.command("rotate-password")
def rotate_password_cmd(
    passwd: PasswdOpt,
    login: Annotated[str, typer.Argument(help="Member pseudonym or service login (ingestor).")],
    register: Annotated[Path | None, typer.Option(help="Member register; checks that a member is active.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the new password to this file (mode 0600).")] = None,
) -> None:
    """Give a login a new random password."""
    member = member_of_login(login)
    if register is not None and member is not None and not load_register(register).is_active(member):
        _fail(f"{member} is not an active member in {register}")
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
        str, typer.Option(help="Login name; every login not starting with 'm-' gets the ingestor role.")
    ] = "ingestor",
    out: Annotated[Path | None, typer.Option(help="Write the password to this file (mode 0600).")] = None,
) -> None:
    """Create an ingestor login: it may only read members' samples and status, on the ingestors' listener."""
    if login == ADMIN_LOGIN:
        _fail(f"{ADMIN_LOGIN!r} is the trustee's admin login (add-admin); choose another ingestor login")
    if login.startswith("m-") or not login or any(c in login for c in "/+#:. "):
        _fail(f"ingestor login {login!r} must not start with 'm-' (member logins) nor contain / + # : . or spaces")
    password = _new_password()
    try:
        set_password(passwd, login, password)
    except BrokerToolError as exc:
        _fail(str(exc))
    _emit_password(login, password, out, env="MDH_HUB__INGEST__PASSWORD")
    typer.echo("restart the broker so that the new login's access rules take effect")


def _emit_password(login: str, password: str, out: Path | None, *, env: str = "MDH_GATEWAY__UPLINK__PASSWORD") -> None:
    if out is not None:
        write_secret_file(out, f"{env}={password}\n")
        typer.echo(f"new password of {login} written to {out}")
    else:
        typer.echo(f"# new password of {login} (shown once):")
        typer.echo(f"{env}={password}")
