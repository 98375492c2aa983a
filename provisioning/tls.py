"""A venue's own certificate authority, the broker's server certificate, and TLS settings for clients.

    >>> ca_cert, ca_key = make_ca(Path("/etc/venue/tls"), "Grand Theatre venue CA")
    >>> make_server_cert(Path("/etc/venue/tls"), ca_cert, ca_key, ["hub.local", "10.0.0.2"])
    >>> tls = TlsClient(ca_file=ca_cert)   # what every device and service trusts
    >>> aiomqtt.Client("hub.local", 8883, tls_context=tls.context(), ...)

Private keys are written 0600 (created with that mode, never widened). The CA key is only needed to
issue certificates; keep it off the broker host where possible.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825   # the longest lifetime common TLS clients accept for a server certificate


class TlsError(RuntimeError):
    """A certificate or key could not be made or read."""


@dataclass(frozen=True, slots=True)
class TlsClient:
    """How a client reaches the broker's TLS listener: the venue CA, and optionally its own certificate."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")

    def context(self) -> ssl.SSLContext:
        """An SSL context that trusts only the venue CA (TLS 1.2+), for ``aiomqtt.Client(tls_context=...)``."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.check_hostname
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.unlink(missing_ok=True)   # O_EXCL below: never reuse a file someone else may have opened
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _load(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the CA from {ca_cert} / {ca_key}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{ca_key} is not an EC private key")
    return cert, key


def make_ca(directory: Path, name: str, *, days: int = CA_DAYS) -> tuple[Path, Path]:
    """Create ``ca.crt`` and ``ca.key`` (0600) in ``directory``: a self-signed P-256 venue CA."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_server_cert(directory: Path, ca_cert: Path, ca_key: Path, hosts: Sequence[str], *,
                     days: int = SERVER_DAYS, name: str = "server") -> tuple[Path, Path]:
    """Create ``<name>.crt`` and ``<name>.key`` (0600) in ``directory``, signed by the venue CA.

    ``hosts`` are the DNS names and IP addresses clients use to reach the broker; each becomes a
    subjectAltName (clients check these, not the common name)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    issuer_cert, issuer_key = _load(ca_cert, ca_key)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                       critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path
