"""Suspension and removal take effect at once on a real Mosquitto: connected gateways are disconnected,
password and certificate refused, tokens revoked, and the ingestor refuses what was still queued."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.tokens import TokenStore
from core.register import load_register
from metalldaten.members_cli import app as members_app
from storage import DuckDBStore, Ingestor, SeriesQuery, read_dead_letters
from testkit.mqtt import make_batch
from testkit.waiting import wait_until
from tests.broker.brokerkit import GW, Client, Hub, ingestor_settings
from tests.storage.test_ingestor import running
from wire import encode_batch, samples_topic

pytestmark = pytest.mark.integration
runner = CliRunner()


def members(hub: Hub, *args: str | Path) -> str:
    env = {"MDH_BROKER_ADMIN_PASSWORD": hub.admin_password}
    result = runner.invoke(members_app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def revoke(hub: Hub, action: str, member: str, tmp_path: Path, *extra: str | Path) -> str:
    return members(
        hub,
        action,
        member,
        "--register",
        hub.register,
        "--passwd",
        hub.passwd,
        "--audit-log",
        tmp_path / "audit.log",
        "--broker-host",
        "localhost",
        "--broker-port",
        str(hub.server.port),
        "--broker-ca",
        hub.ca,
        *extra,
    )


def cert_of(hub: Hub, member: str) -> tuple[Path, Path]:
    kit = hub.kits / member
    return kit / f"{member}.pem", kit / f"{member}.key"


def refused(hub: Hub, member: str, password: str) -> bool:
    """Neither the password nor the certificate gives a login that may publish."""
    by_password = Client(hub, member, password)
    by_cert = Client(hub, None, None, port=hub.mtls_port, cert=cert_of(hub, member))
    try:
        # a certificate is asked for no password: its holder may get through CONNECT, to a login without rights
        return not by_password.ok and (not by_cert.ok or by_cert.publish(samples_topic(member, GW), b"x") == 0x87)
    finally:
        by_password.close()
        by_cert.close()


async def test_suspension_disconnects_at_once_refuses_password_and_certificate_and_resume_undoes_it(
    hub: Hub, tmp_path: Path
) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    tokens = TokenStore(tmp_path / "tokens.json")
    token_a, _ = tokens.create("member", member=a)
    token_b, _ = tokens.create("member", member=b)
    gw_a, gw_b = Client(hub, a, pa), Client(hub, b, pb)
    try:
        assert gw_a.ok and gw_b.ok
        assert gw_a.publish(samples_topic(a, GW), b"before") == 0x10  # accepted (no subscriber)
        out = revoke(hub, "suspend", a, tmp_path, "--tokens-file", tmp_path / "tokens.json")
        assert f"{a} disabled" in out
        await wait_until(lambda: gw_a.disconnects > 0, what="the suspended member's gateway disconnected")
        assert refused(hub, a, pa)
        assert gw_b.c.is_connected() and gw_b.publish(samples_topic(b, GW), b"still here") == 0x10
        assert tokens.authenticate(token_a) is None and tokens.authenticate(token_b) is not None
        assert load_register(hub.register).get(a).suspended  # type: ignore[union-attr]

        revoke(hub, "resume", a, tmp_path)
        back = Client(hub, a, pa)
        try:
            assert back.ok and back.publish(samples_topic(a, GW), b"back") == 0x10
        finally:
            back.close()
        audit = (tmp_path / "audit.log").read_text()
        assert '"action":"member.suspend"' in audit and '"action":"member.resume"' in audit
    finally:
        for c in (gw_a, gw_b):
            c.close()


async def test_removal_holds_across_a_restart_where_the_revocation_list_refuses_the_certificate(
    hub: Hub, tmp_path: Path
) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    cert_a = Client(hub, None, None, port=hub.mtls_port, cert=cert_of(hub, a))
    try:
        assert cert_a.ok and cert_a.publish(samples_topic(a, GW), b"before") == 0x10
        out = revoke(hub, "remove-member", a, tmp_path, "--ca-dir", hub.conf_dir / "certs")
        assert "client certificates revoked: 1" in out
        # disconnected at once; paho reconnects by itself, and the new connection's login has no rights
        await wait_until(lambda: cert_a.disconnects > 0, what="the removed member's certificate login disconnected")
    finally:
        cert_a.close()
    assert refused(hub, a, pa)
    hub.server.stop()
    hub.server.start()
    # after the restart the login is in no file, and the TLS handshake itself refuses the revoked certificate
    context = ssl.create_default_context(cafile=str(hub.ca))
    context.load_cert_chain(*map(str, cert_of(hub, a)))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        import socket

        with (
            socket.create_connection(("127.0.0.1", hub.mtls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.recv(1)  # TLS 1.3 reports the refused client certificate on the first read
    assert refused(hub, a, pa)
    other = Client(hub, b, pb)
    try:
        assert other.ok
    finally:
        other.close()


async def test_the_ingestor_refuses_what_was_still_queued_for_a_suspended_member(hub: Hub, tmp_path: Path) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = ingestor_settings(hub, tmp_path, "ing-queued")
    ingestor = Ingestor(settings, store, lambda: load_register(hub.register))
    async with running(ingestor):
        pass  # the ingestor's session and subscriptions now exist at the broker; it is offline below
    gw_a, gw_b = Client(hub, a, pa), Client(hub, b, pb)
    try:
        for _ in range(3):
            assert gw_a.publish(samples_topic(a, GW), encode_batch(make_batch(a, GW, 10))) == 0
        assert gw_b.publish(samples_topic(b, GW), encode_batch(make_batch(b, GW, 4))) == 0
    finally:
        gw_a.close()
        gw_b.close()
    revoke(hub, "suspend", a, tmp_path)
    ingestor = Ingestor(settings, store, lambda: load_register(hub.register))
    try:
        async with running(ingestor):
            await wait_until(
                lambda: ingestor.dead_lettered >= 3 and ingestor.stored_samples >= 4,
                what="the queued messages taken: the suspended member's refused, the other's stored",
            )
        assert store.query_series(SeriesQuery())["member"].unique().to_list() == [b]
        assert store.count() == 4
        letters = read_dead_letters(tmp_path / "dead.jsonl")
        assert [d["code"] for d in letters] == ["member"] * 3
        assert all(str(d["topic"]).startswith(f"mdh/v1/{a}/") for d in letters)
    finally:
        store.close()
