"""OPC UA security against a real asyncua server: every supported policy, Sign and SignAndEncrypt,
user/password login, a server certificate trusted by pinned fingerprint only, and a client
certificate that is generated once and then kept."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway import Gateway
from testkit.machines import URI
from testkit.servers import MosquittoServer, free_port

from .conftest import gateway_settings
from .hub import wait_until

pytestmark = pytest.mark.integration


class PasswordUsers:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


async def _secure_server(tmp: Path, port: int) -> tuple[Server, Any, str]:
    key, cert = tmp / "server-key.pem", tmp / "server-cert.der"
    await setup_self_signed_certificate(
        key,
        cert,
        "urn:metalldaten:test:server",
        "127.0.0.1",
        [ExtendedKeyUsageOID.SERVER_AUTH],
        {"commonName": "test server"},
    )
    server = Server(user_manager=PasswordUsers({"gateway": "s3cret-pw"}))  # type: ignore[arg-type]
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy(
        [
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
            ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
        ]
    )
    server.set_security_IDs(["Username"])
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    idx = await server.register_namespace(URI)
    var = await server.nodes.objects.add_variable(ua.NodeId("Laser.Power", idx), "Power", 0.0)
    await server.start()
    fp = hashlib.sha256(x509.load_der_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)).hexdigest()
    return server, var, ":".join(fp[i : i + 2] for i in range(0, len(fp), 2)).upper()


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ("Basic256Sha256", "Sign"),
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
    ],
)
async def test_secure_channel_with_pinned_server_certificate(
    tmp_path: Path, mosquitto: MosquittoServer, policy: str, mode: str
) -> None:
    port = free_port()
    server, var, fingerprint = await _secure_server(tmp_path, port)
    source: dict[str, Any] = {
        "name": "secure",
        "url": f"opc.tcp://127.0.0.1:{port}/",
        "security_policy": policy,
        "security_mode": mode,
        "username": "gateway",
        "password": "s3cret-pw",
        "server_fingerprint": fingerprint,
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
        "nodes": [{"asset": "Laser-1", "signal": "Power", "node": f"nsu={URI};s=Laser.Power"}],
    }
    try:
        settings = gateway_settings(tmp_path / "gw", uplink_port=mosquitto.port, opcua=[source])
        client_cert = tmp_path / "gw" / "pki" / "own" / "client-cert.der"
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: gw.sources[0].connected, 20, "a secure session")
            await var.write_value(1500.0)
            await wait_until(lambda: gw.sources[0].normaliser.accepted >= 2, 10, "values over the secure channel")
            gw.stop()
            await asyncio.wait_for(task, 15)
        first = client_cert.read_bytes()
        # a restarted gateway keeps its client certificate (the server's trust list stays valid)
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: gw.sources[0].connected, 20, "a second secure session")
            gw.stop()
            await asyncio.wait_for(task, 15)
        assert client_cert.read_bytes() == first

        # wrong password, or a server certificate that is not the pinned one: no session
        for change in ({"password": "wrong"}, {"server_fingerprint": "00" * 32}):
            bad = gateway_settings(
                tmp_path / f"bad-{len(change)}-{next(iter(change))}",
                uplink_port=mosquitto.port,
                opcua=[{**source, **change}],
            )
            async with Gateway(bad) as gw:
                task = asyncio.create_task(gw.run())
                await wait_until(lambda gw=gw: gw.sources[0].last_error is not None, 20, "a refused session")
                assert not gw.sources[0].connected
                gw.stop()
                await asyncio.wait_for(task, 15)
    finally:
        await server.stop()


async def test_server_certificate_trusted_through_the_trust_folder(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    port = free_port()
    server, _, _ = await _secure_server(tmp_path, port)
    source: dict[str, Any] = {
        "name": "secure",
        "url": f"opc.tcp://127.0.0.1:{port}/",
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "username": "gateway",
        "password": "s3cret-pw",
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
        "nodes": [{"asset": "Laser-1", "signal": "Power", "node": f"nsu={URI};s=Laser.Power"}],
    }
    try:
        settings = gateway_settings(tmp_path / "gw", uplink_port=mosquitto.port, opcua=[source])
        trusted = tmp_path / "gw" / "pki" / "trusted"
        trusted.mkdir(parents=True)
        (trusted / "server.der").write_bytes((tmp_path / "server-cert.der").read_bytes())
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: gw.sources[0].connected, 20, "a session with the trusted server")
            gw.stop()
            await asyncio.wait_for(task, 15)
    finally:
        await server.stop()
