"""OPC UA security for the source: policies, login, client and server certificates.

Certificates are where OPC UA clients most often fail in the field: a client certificate regenerated
at every start must be trusted again by every server, and a self-signed server certificate is either
rejected or, worse, accepted blindly. So the client certificate is generated once (self-signed, in
the gateway's PKI folder or at the configured path) and then kept, so the server's trust list stays
valid across restarts. A server certificate is trusted only on purpose: a pinned certificate file,
a SHA-256 fingerprint, or a certificate in the trust folder.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from ...errors import SourceError
from .config import OpcuaSource

APP_URI = "urn:metalldaten:gateway"
POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def normalise_fingerprint(text: str) -> str:
    return text.replace(":", "").replace(" ", "").lower()


def trusted_fingerprints(cfg: OpcuaSource, trust_dir: Path | None) -> set[str]:
    out: set[str] = set()
    if cfg.server_fingerprint:
        out.add(normalise_fingerprint(cfg.server_fingerprint))
    if trust_dir is not None and trust_dir.is_dir():
        for p in trust_dir.iterdir():
            data = p.read_bytes()
            try:
                pem = b"-----BEGIN" in data
                cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
            except ValueError:
                continue
            out.add(fingerprint(cert.public_bytes(encoding=Encoding.DER)))
    return out


async def ensure_client_certificate(cfg: OpcuaSource, pki_dir: Path | None) -> tuple[Path, Path]:
    """The client certificate and key: the configured files, or made once in ``pki_dir`` and kept."""
    if cfg.client_cert is not None and cfg.client_key is not None:
        cert, key = cfg.client_cert, cfg.client_key
    else:
        base = (pki_dir or Path("pki")) / "own"
        cert, key = base / "client-cert.der", base / "client-key.pem"
    if not (cert.exists() and key.exists()):
        await asyncio.to_thread(cert.parent.mkdir, parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            key,
            cert,
            APP_URI,
            "metalldaten-gateway",
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "metalldaten-gateway", "organizationName": "Metall+Daten gateway"},
        )
        key.chmod(0o600)
    return cert, key


async def apply_security(client: Client, cfg: OpcuaSource, pki_dir: Path | None) -> None:
    """Configure login and secure channel on ``client`` before ``connect()``."""
    if cfg.username is not None and cfg.password is not None:
        client.set_user(cfg.username)
        client.set_password(cfg.password.get_secret_value())
    if cfg.user_cert is not None:
        await client.load_client_certificate(str(cfg.user_cert))
        if cfg.user_key is not None:
            await client.load_private_key(cfg.user_key)
    if cfg.security_policy == "None":
        return
    policy = POLICIES[cfg.security_policy]
    mode = MODES[cfg.security_mode]
    cert, key = await ensure_client_certificate(cfg, pki_dir)
    server_cert: bytes | str | None
    if cfg.server_cert is not None:
        server_cert = str(cfg.server_cert)
    else:
        trusted = trusted_fingerprints(cfg, (pki_dir / "trusted") if pki_dir is not None else None)
        if not trusted:
            raise SourceError("no trusted server certificate: set server_cert or server_fingerprint", retryable=False)
        probe = Client(cfg.url, timeout=cfg.timeout_s)
        endpoints = await probe.connect_and_get_server_endpoints()
        endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
        der = bytes(endpoint.ServerCertificate)
        if fingerprint(der) not in trusted:
            raise SourceError("the server certificate is not trusted (fingerprint does not match)", retryable=True)
        server_cert = der
    await client.set_security(policy, str(cert), str(key), server_certificate=server_cert, mode=mode)
