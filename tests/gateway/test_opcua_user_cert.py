"""OPC UA certificate (X.509) user login against a real asyncua server that accepts only user
certificates it knows: the gateway logs in with ``user_cert`` / ``user_key`` and reads values; an
unknown user certificate is refused (the source stays disconnected and sends nothing). A user
certificate without its key is a configuration error: the client cannot sign the login with it
and would silently log in anonymously instead."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import CertificateUserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.configfile import ConfigError
from gateway import Gateway
from testkit.machines import URI
from testkit.servers import MosquittoServer, free_port

from .conftest import gateway_settings
from .hub import RawSubscriber, wait_until


class RecordingUsers(CertificateUserManager):
    """The server's certificate user list, recording which user every login was granted."""

    def __init__(self) -> None:
        super().__init__()
        self.granted: list[str | None] = []

    def get_user(self, iserver: Any, username: Any = None, password: Any = None, certificate: Any = None) -> Any:
        user = super().get_user(iserver, username, password, certificate)
        self.granted.append(user.name if user is not None else None)
        return user


async def _certificate(tmp: Path, name: str, usage: x509.ObjectIdentifier) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}-key.pem", tmp / f"{name}-cert.der"
    await setup_self_signed_certificate(
        key, cert, f"urn:metalldaten:test:{name}", "127.0.0.1", [usage], {"commonName": name}
    )
    return cert, key


async def _server(tmp: Path, port: int, known_user_cert: Path) -> tuple[Server, Any, str, RecordingUsers]:
    """Basic256Sha256 endpoints whose only login is an X.509 user certificate in the server's list."""
    cert, key = await _certificate(tmp, "server", ExtendedKeyUsageOID.SERVER_AUTH)
    users = RecordingUsers()
    await users.add_user(known_user_cert, name="gateway-user")
    server = Server(user_manager=users)  # type: ignore[arg-type]
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy(
        [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
    )
    server.set_identity_tokens([ua.X509IdentityToken])
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    idx = await server.register_namespace(URI)
    var = await server.nodes.objects.add_variable(ua.NodeId("Laser.Power", idx), "Power", 0.0)
    await server.start()
    fp = hashlib.sha256(x509.load_der_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)).hexdigest()
    return server, var, fp, users


@pytest.mark.integration
async def test_certificate_user_login(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    user_cert, user_key = await _certificate(tmp_path, "user", ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger_cert, stranger_key = await _certificate(tmp_path, "stranger", ExtendedKeyUsageOID.CLIENT_AUTH)
    port = free_port()
    server, var, fingerprint, users = await _server(tmp_path, port, user_cert)
    source: dict[str, Any] = {
        "name": "zelle",
        "url": f"opc.tcp://127.0.0.1:{port}/",
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "user_cert": str(user_cert),
        "user_key": str(user_key),
        "server_fingerprint": fingerprint,
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
        "groups": [{"name": "fast", "publishing_interval_ms": 50, "sampling_interval_ms": 0}],
        "nodes": [{"asset": "Laser-1", "signal": "Power", "node": f"nsu={URI};s=Laser.Power", "group": "fast"}],
    }
    sub = RawSubscriber("127.0.0.1", mosquitto.port).start()
    try:
        settings = gateway_settings(tmp_path / "gw", uplink_port=mosquitto.port, opcua=[source])
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await sub.wait_for(lambda: gw.sources[0].connected, 10, "a session with the user certificate")
            await var.write_value(1500.0)
            await sub.wait_for(lambda: 1.5 in {v for *_, v in sub.samples()}, 10, "a value read with the login")
            gw.stop()
            await asyncio.wait_for(task, 15)
        # the server granted the session to the certificate's user
        assert users.granted and set(users.granted) == {"gateway-user"}

        # a certificate the server does not know: refused, no session, no samples
        before = len(sub.samples())
        bad_source = {**source, "user_cert": str(stranger_cert), "user_key": str(stranger_key)}
        bad = gateway_settings(tmp_path / "gw-bad", uplink_port=mosquitto.port, opcua=[bad_source])
        async with Gateway(bad) as gw:
            task = asyncio.create_task(gw.run())
            src = gw.sources[0]
            await wait_until(lambda: src.last_error is not None, 10, "the refused login")
            await var.write_value(2500.0)
            await asyncio.sleep(1.0)
            assert "BadUserAccessDenied" in (src.last_error or "")
            assert not src.connected
            assert src.readings_in == 0
            assert users.granted[-1] is None
            gw.stop()
            await asyncio.wait_for(task, 15)
        assert len(sub.samples()) == before
    finally:
        sub.stop()
        await server.stop()


def test_user_certificate_needs_its_key(tmp_path: Path) -> None:
    source = {"name": "zelle", "url": "opc.tcp://127.0.0.1:4840/", "user_cert": str(tmp_path / "user-cert.der")}
    with pytest.raises(ConfigError, match="user_cert and user_key go together"):
        gateway_settings(tmp_path, uplink_port=1883, opcua=[source])
