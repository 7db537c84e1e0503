"""``python -m deploy.tls CA_DIR BROKER_DIR --dns NAME... --ip ADDRESS...``: the TLS material of
the compose stack's Kafka broker, made on first start and kept (the ``tls-init`` container).

- ``CA_DIR/ca.crt`` (mode 0444): a private CA's certificate, all that clients need to check the
  broker (``KAFKA_SSL_CAFILE``); this directory is mounted into every client container.
- ``BROKER_DIR/kafka.pem`` (mode 0440): the broker's private key (PKCS#8, unencrypted, as
  Kafka's ``ssl.keystore.type=PEM`` reads it) and its certificate chain, for the broker alone;
  ``BROKER_DIR/ca.crt`` beside it (the broker's truststore, for its own inter-broker client).

The broker certificate names every ``--dns`` and ``--ip`` (the names clients connect to). The
CA's private key is used once and never written: when the certificate nears its end (or the
names change) both are made anew, and the containers pick them up when they are recreated.
Nothing here is ever in git; the files live in the stack's volumes.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
BROKER_PEM = "kafka.pem"
VALIDITY = datetime.timedelta(days=825)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Names:
    """What the broker's certificate must name."""

    dns: tuple[str, ...]
    ips: tuple[str, ...] = ()

    def general_names(self) -> list[x509.GeneralName]:
        return [
            *(x509.DNSName(name) for name in self.dns),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ips),
        ]

    def of(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` names exactly these."""
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        return set(san) == set(self.general_names())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Jakpreneur"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make(names: Names, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A fresh CA certificate and the broker's key + chain, both PEM (the CA key is dropped)."""
    now = now or _now()
    not_before = now - datetime.timedelta(minutes=5)  # clocks of the containers may differ
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Jakpreneur compose Kafka CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names.dns[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names.general_names()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # "BEGIN PRIVATE KEY": what Kafka's PEM store reads
        serialization.NoEncryption(),
    )
    return ca_pem, key_pem + cert.public_bytes(serialization.Encoding.PEM) + ca_pem


def usable(ca_dir: Path, broker_dir: Path, names: Names, now: datetime.datetime) -> bool:
    """Whether the files there are whole, agree, name ``names`` and last a while yet."""
    try:
        ca_pem = (ca_dir / CA_CERT).read_bytes()
        if (broker_dir / CA_CERT).read_bytes() != ca_pem:
            return False
        chain = x509.load_pem_x509_certificates((broker_dir / BROKER_PEM).read_bytes())
        serialization.load_pem_private_key((broker_dir / BROKER_PEM).read_bytes(), None)
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = chain[0]
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, IndexError, InvalidSignature):
        return False
    return names.of(cert) and cert.not_valid_after_utc - now > RENEW_BEFORE


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write whole or not at all (a reader sees the old file or the new one)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    partial.chmod(mode)
    partial.replace(path)


def ensure(
    ca_dir: Path, broker_dir: Path, names: Names, now: datetime.datetime | None = None
) -> bool:
    """Make the files unless usable ones are there; True when they were made."""
    now = now or _now()
    if usable(ca_dir, broker_dir, names, now):
        return False
    ca_pem, broker_pem = make(names, now)
    _write(broker_dir / BROKER_PEM, broker_pem, 0o440)
    _write(broker_dir / CA_CERT, ca_pem, 0o444)
    _write(ca_dir / CA_CERT, ca_pem, 0o444)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ca_dir", type=Path)
    parser.add_argument("broker_dir", type=Path)
    parser.add_argument("--dns", action="append", required=True, help="a DNS name (repeat)")
    parser.add_argument("--ip", action="append", default=[], help="an IP address (repeat)")
    args = parser.parse_args(argv)
    names = Names(tuple(args.dns), tuple(args.ip))
    made = ensure(args.ca_dir, args.broker_dir, names)
    what = "made a new CA and broker certificate" if made else "kept the CA and certificate"
    sys.stderr.write(f"tls: {what} for {', '.join([*names.dns, *names.ips])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
