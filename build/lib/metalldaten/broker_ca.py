"""The hub's certificate authority: a CA, the broker's server certificate and optional member client certificates.

Keys are ECDSA P-256, written with mode 0600. The CA key signs the server certificate
and client certificates; keep it off the broker host once the certificates are issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .broker_files import share_with_broker

CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class CaFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def crl(self) -> Path:
        """Revocation list the broker's mutual-TLS listener reads (``crlfile``)."""
        return self.directory / "crl.pem"

    @property
    def issued(self) -> Path:
        """One line per client certificate issued: serial (hex) and login, so that it can be revoked."""
        return self.directory / "client-certs.txt"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_ca(
    directory: Path, *, hostnames: list[str], organisation: str = "Metall+Daten hub", force: bool = False
) -> CaFiles:
    """Create ``ca.pem``/``ca.key`` and ``server.pem``/``server.key`` for ``hostnames`` (DNS names or IPs)."""
    files = CaFiles(directory)
    if files.ca_key.exists() and not force:
        raise FileExistsError(
            f"{files.ca_key} exists; pass --force to replace the CA (every certificate must then be reissued)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} CA"),
        ]
    )
    now = _now()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.ca_key, ca_key)
    _write_cert(files.ca_cert, ca)
    issue_server_certificate(files, hostnames=hostnames)
    files.issued.write_text("", encoding="utf-8")
    write_crl(files, [])
    return files


def issued_certificates(files: CaFiles) -> list[tuple[int, str]]:
    """(serial, login) of every client certificate issued with this CA."""
    if not files.issued.exists():
        return []
    out = []
    for line in files.issued.read_text(encoding="utf-8").splitlines():
        serial, _, login = line.partition(" ")
        if serial and login:
            out.append((int(serial, 16), login))
    return out


def revoked_serials(files: CaFiles) -> set[int]:
    if not files.crl.exists():
        return set()
    crl = x509.load_pem_x509_crl(files.crl.read_bytes())
    return {r.serial_number for r in crl}


def write_crl(files: CaFiles, serials: list[int]) -> None:
    """Write ``crl.pem`` revoking ``serials``, valid until the CA expires: OpenSSL refuses every client
    certificate once the list it was given has expired, so it must not expire before the CA does."""
    ca, ca_key = _load_ca(files)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(ca.not_valid_after_utc)
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = files.crl.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(files.crl)


def revoke_client_certificates(files: CaFiles, logins: set[str]) -> list[int]:
    """Add every client certificate issued to one of ``logins`` to the CRL; the serials newly revoked."""
    already = revoked_serials(files)
    new = [serial for serial, login in issued_certificates(files) if login in logins and serial not in already]
    if new or not files.crl.exists():
        write_crl(files, [*already, *new])
    return new


def _load_ca(files: CaFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key} is not an EC key made by init-ca")
    return cert, key


def _leaf(
    files: CaFiles, common_name: str, *, server: bool, sans: list[x509.GeneralName]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca, ca_key = _load_ca(files)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def issue_server_certificate(files: CaFiles, *, hostnames: list[str]) -> None:
    if not hostnames:
        raise ValueError("give at least one host name or IP address the gateways use to reach the broker")
    sans: list[x509.GeneralName] = []
    for h in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert, key = _leaf(files, hostnames[0], server=True, sans=sans)
    _write_key(files.server_key, key)
    _write_cert(files.server_cert, cert)
    share_with_broker(files.server_key)


def issue_client_certificate(files: CaFiles, pseudonym: str, directory: Path) -> tuple[Path, Path]:
    """A client certificate whose common name is the gateway login (its login on the mutual-TLS listener),
    recorded in ``client-certs.txt`` so that ``remove-member`` can revoke it."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = _leaf(files, pseudonym, server=False, sans=[])
    cert_path, key_path = directory / f"{pseudonym}.pem", directory / f"{pseudonym}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    with files.issued.open("a", encoding="utf-8") as fh:
        fh.write(f"{cert.serial_number:x} {pseudonym}\n")
    return cert_path, key_path
