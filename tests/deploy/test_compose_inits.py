"""The compose stack's one-shot inits, in-process: deploy/tls.py (tls-init) makes a CA and a
broker certificate a TLS client accepts for the broker's names only, keeps them while they
are good and makes new ones when not; deploy/kafka_users.py (kafka-init) finds a password
for every principal or names the missing ones. (test_compose_kafka.py runs both against a
broker.)"""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from deploy import kafka_users, tls
from shared.access import ADMIN, PRINCIPALS

NAMES = tls.Names(("kafka", "localhost"), ("127.0.0.1",))


def make(tmp_path: Path, names: tls.Names = NAMES, **kwargs: datetime.datetime) -> bool:
    (tmp_path / "ca").mkdir(exist_ok=True)
    (tmp_path / "broker").mkdir(exist_ok=True)
    return tls.ensure(tmp_path / "ca", tmp_path / "broker", names, **kwargs)


def handshake(tmp_path: Path, server_hostname: str) -> None:
    """A TLS handshake over a socket pair: the broker's kafka.pem on one side, a client that
    trusts ca.crt alone (as KAFKA_SSL_CAFILE) on the other."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "broker" / tls.BROKER_PEM)
    client_context = ssl.create_default_context(cafile=tmp_path / "ca" / tls.CA_CERT)
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(right, server_side=True) as server:
                server.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(left, server_hostname=server_hostname) as client:
            client.sendall(b"x")
    finally:
        left.close()
        thread.join(timeout=10)


def test_the_broker_certificate_is_trusted_for_its_names_only(tmp_path: Path) -> None:
    assert make(tmp_path)
    for name in ("kafka", "localhost", "127.0.0.1"):
        handshake(tmp_path, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, "mongo")


def test_files_kafka_reads_and_who_may_read_them(tmp_path: Path) -> None:
    make(tmp_path)
    pem = (tmp_path / "broker" / tls.BROKER_PEM).read_bytes()
    # Kafka's PEM keystore: one unencrypted PKCS#8 key, then the chain from the leaf up.
    assert pem.count(b"-----BEGIN PRIVATE KEY-----") == 1 and b"ENCRYPTED" not in pem
    chain = x509.load_pem_x509_certificates(pem)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / tls.CA_CERT).read_bytes())
    assert [c.subject for c in chain] == [chain[0].subject, ca.subject]
    assert (tmp_path / "broker" / tls.CA_CERT).read_bytes() == (
        tmp_path / "ca" / tls.CA_CERT
    ).read_bytes()
    modes = {
        path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in tmp_path.rglob("*")
        if path.is_file()
    }
    assert modes == {"broker/kafka.pem": 0o440, "broker/ca.crt": 0o444, "ca/ca.crt": 0o444}
    assert not list(tmp_path.rglob("*ca.key*")), "the CA key is never written"


def test_kept_while_good_made_anew_when_not(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert make(tmp_path, now=now)
    first = (tmp_path / "broker" / tls.BROKER_PEM).read_bytes()
    assert not make(tmp_path, now=now + datetime.timedelta(days=1))
    assert (tmp_path / "broker" / tls.BROKER_PEM).read_bytes() == first
    # near its end, for other names, or with a CA that did not sign it: made anew
    assert make(tmp_path, now=now + tls.VALIDITY - tls.RENEW_BEFORE + datetime.timedelta(days=1))
    assert make(tmp_path, tls.Names(("kafka",)))
    (tmp_path / "ca" / tls.CA_CERT).chmod(0o644)
    other = tmp_path / "other"
    other.mkdir()
    tls.ensure(other, other, NAMES)
    (tmp_path / "ca" / tls.CA_CERT).write_bytes((other / tls.CA_CERT).read_bytes())
    assert make(tmp_path)
    handshake(tmp_path, "kafka")


def test_kafka_init_names_every_missing_password() -> None:
    env = {kafka_users.password_variable(user): "x" for user in kafka_users.USERS}
    assert kafka_users.passwords(env).keys() == {ADMIN, *PRINCIPALS}
    assert kafka_users.password_variable("pendamping-app") == "KAFKA_PENDAMPING_APP_PASSWORD"
    del env["KAFKA_PENDAMPING_APP_PASSWORD"]
    env["KAFKA_OPS_PASSWORD"] = ""
    with pytest.raises(SystemExit) as missing:
        kafka_users.passwords(env)
    assert str(missing.value) == (
        "kafka_users: no password in KAFKA_PENDAMPING_APP_PASSWORD, KAFKA_OPS_PASSWORD"
    )
