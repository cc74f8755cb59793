"""
A throwaway certificate authority and server certificate, made at run time.

Not a test module: ``tests.test_tls`` and ``tests.test_systemd`` use it.
Nothing here is kept: keys are fresh per test session, valid for one day,
and name only ``localhost`` and 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the PEM files: the CA's certificate, the server's key and certificate."""

    ca_cert: Path
    server_key: Path
    server_cert: Path

    def listen(self, port: int, interface: str = "127.0.0.1") -> str:
        """The ``--listen`` endpoint description for a TLS listener with these files."""
        return (f"ssl:{port}:privateKey={self.server_key}:certKey={self.server_cert}"
                f":interface={interface}")


# The ffdhe2048 group of RFC 7919 (appendix A.1), as Mozilla's configuration generator
# ships it: DHE parameters for ``dhParameters=`` without minutes of `openssl dhparam`.
FFDHE2048_PEM = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


def write_dh_parameters(directory: Path) -> Path:
    """Write :data:`FFDHE2048_PEM` into ``directory``; its path."""
    path = Path(directory) / "ffdhe2048.pem"
    path.write_bytes(FFDHE2048_PEM)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(directory: Path, server_key: str = "ec") -> TLSFiles:
    """
    Write a CA and a server certificate for localhost/127.0.0.1 signed by it.

    ``server_key``: ``"ec"`` (P-256, ECDSA suites) or ``"rsa"`` (2048 bits: the
    only key with which the RSA key-exchange suites could be negotiated at all,
    so the cipher tests need it).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("twistchat test CA"))
        .issuer_name(_name("twistchat test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
           if server_key == "rsa" else ec.generate_private_key(ec.SECP256R1()))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = TLSFiles(directory / "ca.pem", directory / "server-key.pem",
                     directory / "server-cert.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    files.server_key.chmod(0o600)
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


@dataclass(frozen=True)
class ClientCert:
    """A self-signed TLS client certificate (SASL EXTERNAL) and its SHA-256 fingerprint."""

    cert: Path
    key: Path
    sha256: str  # lower-case hex, no colons: what NickServ CERT ADD keeps


def make_client_cert(directory: Path, name: str = "client") -> ClientCert:
    """Write a self-signed client certificate and key, as IRC users make them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    found = ClientCert(directory / f"{name}-cert.pem", directory / f"{name}-key.pem",
                       cert.fingerprint(hashes.SHA256()).hex())
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    found.key.chmod(0o600)
    return found
