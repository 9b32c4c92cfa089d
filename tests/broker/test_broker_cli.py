"""The trustee's commands without a broker: register, password file, certificates, configuration, member kit."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from core.register import load_register
from metalldaten.broker_cli import app
from metalldaten.broker_files import TEMPLATE_DIR, logins, render_config
from testkit.servers import require_binary
from tests.broker.clikit import invoke, runner


def test_init_ca_issues_a_server_certificate_for_the_given_names(tmp_path: Path) -> None:
    invoke("init-ca", "--out", tmp_path / "certs", "--hostname", "hub.example", "--hostname", "10.0.0.7")
    ca = x509.load_pem_x509_certificate((tmp_path / "certs/ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "certs/server.pem").read_bytes())
    assert server.issuer == ca.subject
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["hub.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert stat.S_IMODE((tmp_path / "certs/ca.key").stat().st_mode) == 0o600
    again = runner.invoke(app, ["init-ca", "--out", str(tmp_path / "certs")])
    assert again.exit_code == 2 and "--force" in again.output


def test_member_lifecycle_keeps_register_and_password_file_in_step(tmp_path: Path) -> None:
    require_binary("mosquitto_passwd")
    reg, passwd, kits = tmp_path / "members.toml", tmp_path / "passwd", tmp_path / "kits"
    invoke("init-ca", "--out", tmp_path / "certs")
    out = invoke(
        "add-member",
        "--register",
        reg,
        "--passwd",
        passwd,
        "--group",
        "grp-01",
        "--region",
        "DE-NW",
        "--emission-factor",
        "0.42",
        "--ca-dir",
        tmp_path / "certs",
        "--client-cert",
        "--out",
        kits,
        "--hub-host",
        "hub.example",
    )
    member = load_register(reg).member[0]
    assert (member.group, member.region, member.emission_factor_kg_per_kwh, member.active) == (
        "grp-01",
        "DE-NW",
        0.42,
        True,
    )
    assert logins(passwd) == [member.pseudonym]
    kit = kits / member.pseudonym
    env = (kit / "gateway.env").read_text()
    assert (
        env.startswith("MDH_GATEWAY__UPLINK__PASSWORD=") and stat.S_IMODE((kit / "gateway.env").stat().st_mode) == 0o600
    )
    assert env.split("=", 1)[1].strip() not in out, "the password must not be printed when it is written to a file"
    snippet = (kit / "gateway-uplink.toml").read_text()
    assert (
        f'member = "{member.pseudonym}"' in snippet and 'host = "hub.example"' in snippet and "port = 8884" in snippet
    )
    cert = x509.load_pem_x509_certificate((kit / f"{member.pseudonym}.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == member.pseudonym
    assert (kit / "hub-ca.pem").read_bytes() == (tmp_path / "certs/ca.pem").read_bytes()

    second = invoke("add-member", "--register", reg, "--passwd", passwd, "--group", "grp-02")
    assert "MDH_GATEWAY__UPLINK__PASSWORD=" in second  # no --out: shown once on the terminal
    members = load_register(reg).member
    assert len({m.pseudonym for m in members}) == 2
    dup = runner.invoke(
        app,
        [
            "add-member",
            "--register",
            str(reg),
            "--passwd",
            str(passwd),
            "--group",
            "g",
            "--pseudonym",
            member.pseudonym,
        ],
    )
    assert dup.exit_code == 2 and "already" in dup.output

    before = passwd.read_text()
    invoke("rotate-password", "--passwd", passwd, member.pseudonym, "--out", tmp_path / "new.env")
    assert passwd.read_text() != before and logins(passwd) == [m.pseudonym for m in members]

    audit = tmp_path / "audit.log"
    # a removal must leave its trace: without the audit log it is refused and changes nothing
    untraced = runner.invoke(app, ["remove-member", "--register", str(reg), "--passwd", str(passwd), member.pseudonym])
    assert untraced.exit_code == 2 and "--audit-log" in untraced.output
    assert load_register(reg).is_active(member.pseudonym) is True
    # a CA directory named but unusable would leave the member's certificates valid under a "removed" summary
    no_key = runner.invoke(
        app,
        [
            *("remove-member", "--register", str(reg), "--passwd", str(passwd), "--audit-log", str(audit)),
            *("--ca-dir", str(tmp_path / "kits"), member.pseudonym),
        ],
    )
    assert no_key.exit_code == 2 and "ca.key" in no_key.output
    assert load_register(reg).is_active(member.pseudonym) is True and not audit.exists()
    invoke(
        "remove-member",
        "--register",
        reg,
        "--passwd",
        passwd,
        "--audit-log",
        audit,
        "--by",
        "trustee-1",
        member.pseudonym,
    )
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["action"], e["member"], e["actor"]) for e in lines] == [("member.remove", member.pseudonym, "trustee-1")]
    assert lines[0]["logins"] == [member.pseudonym]
    assert load_register(reg).is_active(member.pseudonym) is False
    assert load_register(reg).get(member.pseudonym) is not None, "a removed pseudonym stays, never to be reused"
    assert logins(passwd) == [members[1].pseudonym]
    refused = runner.invoke(app, ["rotate-password", "--passwd", str(passwd), member.pseudonym, "--register", str(reg)])
    assert refused.exit_code == 2


@pytest.mark.parametrize("mtls", [8884, None])
def test_rendered_config_moves_paths_and_ports(tmp_path: Path, mtls: int | None) -> None:
    template = (TEMPLATE_DIR / "mosquitto.conf").read_text()
    conf = render_config(
        template, config_dir=tmp_path / "c", data_dir=tmp_path / "d", port=1234, mtls_port=mtls, bind="127.0.0.1"
    )
    assert "/mosquitto/" not in conf
    assert "\nlistener 1234 127.0.0.1\n" in conf
    assert f"password_file {tmp_path}/c/passwd" in conf and f"persistence_location {tmp_path}/d/" in conf
    assert ("require_certificate true" in conf) is (mtls is not None)
    for key in ("set_tcp_nodelay true", "max_inflight_messages", "max_queued_messages", "allow_anonymous false"):
        assert key in conf
