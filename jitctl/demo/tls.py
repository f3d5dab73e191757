"""A throwaway CA and a server certificate for 127.0.0.1/localhost, for the PagerDuty simulator.

Clients trust the CA file through the CA-bundle setting (``[pagerduty] ca_bundle``), exactly as
a company CA would be trusted. ``cryptography`` (which moto depends on, hence the ``demo``
extra) is imported inside ``make_certs`` only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CertFiles:
    ca: Path  # what a client trusts (the CA-bundle setting)
    cert: Path  # server certificate for 127.0.0.1 and localhost
    key: Path


def make_certs(directory: Path) -> CertFiles:
    """A throwaway CA and a server certificate it signed, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def build(subject: str, key: Any, ca: bool, extensions: list[Any]) -> Any:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True)
        )
        off = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment"), False)
        usage = x509.KeyUsage(
            digital_signature=True,
            key_cert_sign=ca,
            crl_sign=ca,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **off,
        )
        builder = builder.add_extension(usage, critical=True)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pdsim test CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = build("pdsim test CA", ca_key, True, [ski])
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    leaf = build("localhost", key, False, [x509.SubjectAlternativeName(san), server_auth, aki])
    files = CertFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    return files
