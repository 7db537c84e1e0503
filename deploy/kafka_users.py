"""``python -m deploy.kafka_users``: as the cluster's admin, give every Kafka principal of the
catalogue (:data:`shared.access.PRINCIPALS`, and the admin itself) its SCRAM-SHA-512
credential, and grant the catalogue's ACLs (:func:`shared.access.acls` for ``TOPIC_PREFIX``,
and :func:`shared.access.cluster_rules`). The compose stack's ``kafka-init`` container runs it
after the broker is up, before the services start; it is idempotent (a credential is set to
the password it is given, an ACL that exists stays), so it runs at every ``compose up``.

- The admin's connection: the ``KAFKA_*`` variables (:meth:`shared.kafka.KafkaAccess.from_env`);
  in compose, SASL/PLAIN over TLS, the one mechanism the broker knows the admin by before any
  SCRAM credential exists.
- Each principal's password: ``KAFKA_<PRINCIPAL>_PASSWORD`` (upper case, ``-`` as ``_``,
  e.g. ``KAFKA_PENDAMPING_APP_PASSWORD``); :func:`password_variable`. One missing stops it.

It returns when every principal logs in with its password and the broker applies every ACL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from typing import TypeAlias

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from shared.access import ADMIN, PRINCIPALS, acls, cluster_rules, grant
from shared.kafka import KafkaAccess

SCRAM_SHA_512 = 2  # the mechanism's id in AlterUserScramCredentials
ITERATIONS = 8192  # Kafka accepts 4096 to 16384 for SCRAM-SHA-512
USERS: tuple[str, ...] = (ADMIN, *PRINCIPALS)


def password_variable(user: str) -> str:
    return f"KAFKA_{user.upper().replace('-', '_')}_PASSWORD"


def passwords(env: Mapping[str, str], users: Iterable[str] = USERS) -> dict[str, str]:
    """Each user's password from ``env``; SystemExit naming every variable that is unset."""
    found = {user: env.get(password_variable(user), "") for user in users}
    missing = [password_variable(user) for user, password in found.items() if not password]
    if missing:
        raise SystemExit(f"kafka_users: no password in {', '.join(missing)}")
    return found


def salted_password(password: str, salt: bytes, iterations: int = ITERATIONS) -> bytes:
    """SCRAM's SaltedPassword := Hi(password, salt, i) (RFC 5802), i.e. PBKDF2 with
    HMAC-SHA-512 and one block, as Kafka's ScramFormatter computes it."""
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)


# ---------------------------------------------- AlterUserScramCredentials (KIP-554), v0
# aiokafka has no admin method for it; its protocol types describe the request.


class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("tags", TaggedFields),
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


AlterUserScramCredentialsStruct: TypeAlias = AlterUserScramCredentialsRequest_v0


class AlterUserScramCredentials(Request[AlterUserScramCredentialsStruct]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, credentials: Mapping[str, str], iterations: int = ITERATIONS) -> None:
        self.upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for user, password in sorted(credentials.items()):
            salt = secrets.token_bytes(32)
            salted = salted_password(password, salt, iterations)
            self.upsertions.append((user, SCRAM_SHA_512, iterations, salt, salted, {}))

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsStruct]
    ) -> AlterUserScramCredentialsStruct:
        return request_struct_class([], self.upsertions, {})


async def set_scram_credentials(admin: AIOKafkaAdminClient, credentials: Mapping[str, str]) -> None:
    """Create or replace each user's SCRAM-SHA-512 credential (a started admin client of a
    super user)."""
    if not credentials:
        return
    response = await admin._send_request(AlterUserScramCredentials(credentials))
    errors = {
        user: message or f"error {code}" for user, code, message, _tags in response.results if code
    }
    if errors:
        raise RuntimeError(f"AlterUserScramCredentials refused: {errors}")


async def logs_in(access: KafkaAccess, timeout: float = 30) -> None:
    """Wait until ``access`` authenticates (a new credential reaches the broker's cache
    shortly after the controller has committed it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        client = AIOKafkaClient(**access.client_kwargs(), request_timeout_ms=5000)
        try:
            await client.bootstrap()
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{access.username} cannot log in: {exc!r}") from exc
        finally:
            await client.close()
        await asyncio.sleep(0.2)


async def run(env: Mapping[str, str]) -> list[str]:
    """Credentials and ACLs for every user; the users, in order."""
    users = passwords(env)
    admin_access = KafkaAccess.from_env(env)
    admin = AIOKafkaAdminClient(**admin_access.client_kwargs())
    await admin.start()
    try:
        await set_scram_credentials(admin, users)
        prefix = env.get("TOPIC_PREFIX", "")
        await grant(admin, [*acls(prefix), *cluster_rules()])
    finally:
        await admin.close()
    scram = KafkaAccess(
        admin_access.bootstrap_servers,
        admin_access.security_protocol,
        "SCRAM-SHA-512",
        ssl_cafile=admin_access.ssl_cafile,
    )
    await asyncio.gather(*(logs_in(scram.as_user(u, p)) for u, p in users.items()))
    return list(users)


def main(env: Mapping[str, str] | None = None) -> int:
    users = asyncio.run(run(os.environ if env is None else env))
    sys.stderr.write(f"kafka_users: SCRAM credentials and ACLs of {', '.join(users)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
