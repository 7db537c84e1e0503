"""Fixtures: one Kafka and one mongod for the session, with the security production uses:
SASL/SCRAM and per-principal ACLs generated from the catalogue on Kafka, authorisation and
a user per service on MongoDB. Each service under test logs in as its own principal and
user (:meth:`Servers.settings_for`); the tests themselves play the internal systems as the
simulator's principal (:attr:`Servers.kafka`), as ``make run``'s tools do.

The servers are, in this order:

1. servers named by the environment, administered as their super users:
   ``KAFKA_BOOTSTRAP_SERVERS`` with ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_ADMIN_USERNAME`` and
   ``KAFKA_ADMIN_PASSWORD`` (SCRAM credentials for every principal are set, to
   ``KAFKA_<PRINCIPAL>_PASSWORD`` where given, else a fresh one), and ``MONGODB_ADMIN_URI``
   (a user per service, ``MONGODB_<SERVICE>_PASSWORD`` or fresh); a local stack's
   ``.run/stack.env`` has the first four and the last;
2. the project's own launcher (``deploy/local``).

(No testcontainers path: its images would need the same SCRAM users and ACLs, and no Docker
engine here could test it.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from deploy.kafka_users import logs_in, password_variable, set_scram_credentials
from deploy.local.launcher import (
    ADMIN,
    Kafka,
    Mongod,
    _in_thread,
    free_port,
    grant_mongo_user,
    stop_all,
)
from shared.access import (
    INBOUND,
    PRINCIPALS,
    SERVICES,
    SIMULATOR,
    Acl,
    acls,
    cluster_rules,
    grant_as,
)
from shared.contracts import event_of_topic
from shared.kafka import KafkaAccess
from shared.logging import configure_logging
from tests import auth_helpers

# The services under test run on the development keys (as `make test` sets it too).
os.environ.setdefault("JAKPRENEUR_ENV", "development")
# ... and check bearer tokens against the session's own issuer (AUTH_* set here).
auth_helpers.configure_session()

# Each service's in-process fixture, visible to every test (the e2e flows use several).
pytest_plugins = [
    "tests.registry.fixtures",
    "tests.coaching.fixtures",
    "tests.marketplace.fixtures",
    "tests.notifications.fixtures",
]


class ExistingKafka:
    """A cluster named by the environment, administered as its super user."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.admin = KafkaAccess.from_env(env, admin=True)
        self.bootstrap_servers = self.admin.bootstrap_servers
        self.passwords = {
            user: env.get(password_variable(user)) or secrets.token_urlsafe(24)
            for user in PRINCIPALS
        }
        _in_thread(self._credentials)

    async def _credentials(self) -> None:
        admin = AIOKafkaAdminClient(**self.admin.client_kwargs())
        await admin.start()
        try:
            await set_scram_credentials(admin, self.passwords)
        finally:
            await admin.close()
        await asyncio.gather(*(logs_in(self._scram(u)) for u in self.passwords))

    def _scram(self, user: str) -> KafkaAccess:
        return KafkaAccess(
            self.bootstrap_servers,
            self.admin.security_protocol,
            "SCRAM-SHA-512",
            user,
            self.passwords[user],
            self.admin.ssl_cafile,
        )

    def access(self, user: str) -> dict[str, str]:
        return (self.admin if user == ADMIN else self._scram(user)).env()

    def grant(self, rules: Iterable[Acl]) -> None:
        _in_thread(lambda: grant_as(self.admin, rules))


class ExistingMongo:
    """A MongoDB replica set named by the environment, administered as its admin."""

    def __init__(self, admin_uri: str, env: Mapping[str, str]) -> None:
        self.uri, self.env = admin_uri, env
        parts = urlsplit(admin_uri)
        self.address = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.passwords: dict[str, str] = {}

    def uri_for(self, user: str) -> str:
        parts = urlsplit(self.address)
        query = "&".join(q for q in (parts.query, "authSource=admin") if q)
        login = f"{quote(user)}:{quote(self.passwords[user])}@{parts.netloc}"
        return urlunsplit(parts._replace(netloc=login, query=query))

    def grant(self, user: str, databases: Iterable[str]) -> str:
        if user not in self.passwords:
            variable = f"MONGODB_{user.upper()}_PASSWORD"
            self.passwords[user] = self.env.get(variable) or secrets.token_urlsafe(24)
        grant_mongo_user(self.uri, user, self.passwords[user], databases)
        return self.uri_for(user)


@dataclass
class Servers:
    """The session's Kafka and mongod, and who logs in to them."""

    broker: Kafka | ExistingKafka
    mongod: Mongod | ExistingMongo
    _granted: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def principal(self, user: str) -> KafkaAccess:
        return KafkaAccess.from_env(self.broker.access(user))

    @property
    def kafka(self) -> KafkaAccess:
        """The simulator's principal: writes every inbound fact, reads every topic."""
        return self.principal(SIMULATOR)

    @property
    def admin(self) -> KafkaAccess:
        """The super user: for what no principal may do (forging a service's event)."""
        return self.principal(ADMIN)

    @property
    def mongodb_uri(self) -> str:
        """MongoDB's admin, for tests that look into any service's database."""
        return self.mongod.uri

    def grant(self, prefix: str) -> None:
        """The catalogue's ACLs for the topics and groups under ``prefix`` (once each)."""
        with self._lock:
            if prefix not in self._granted:
                self.broker.grant(acls(prefix))
                self._granted.add(prefix)

    def settings_for(self, user: str, prefix: str, database: str) -> dict[str, Any]:
        """A service's infrastructure settings: its own Kafka principal (``admin`` for a
        kernel test's made-up service) and its own MongoDB user, which may read and write
        ``database`` only."""
        self.grant(prefix)
        uri = self.mongod.grant(user, [database]) if user in SERVICES else self.mongod.uri
        access = self.principal(user)
        return {
            "kafka_bootstrap_servers": access.bootstrap_servers,
            "kafka_security_protocol": access.security_protocol,
            "kafka_sasl_mechanism": access.sasl_mechanism,
            "kafka_sasl_username": access.username,
            "kafka_sasl_password": access.password,
            "mongodb_uri": uri,
            "topic_prefix": prefix,
            "mongodb_database": database,
        }

    def env_for(self, user: str, prefix: str, database: str) -> dict[str, str]:
        """The same as environment variables of a service process (``TOPIC_PREFIX`` too; its
        database is a prefixed variable, e.g. ``COACHING_MONGODB_DATABASE``)."""
        fields = self.settings_for(user, prefix, database)
        return {
            **self.principal(user).env(),
            "MONGODB_URI": fields["mongodb_uri"],
            "TOPIC_PREFIX": prefix,
        }


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    named = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_ADMIN_USERNAME", "MONGODB_ADMIN_URI")
    if all(os.environ.get(name) for name in named):
        existing = ExistingKafka(os.environ)
        existing.grant(cluster_rules())
        yield Servers(existing, ExistingMongo(os.environ["MONGODB_ADMIN_URI"], os.environ))
        return
    root = tmp_path_factory.mktemp("servers")
    started: list[Any] = []
    try:
        kafka = Kafka(root / "kafka", users=PRINCIPALS).start()
        started.append(kafka)
        mongod = Mongod(root / "mongod").start()
        started.append(mongod)
        kafka.grant(cluster_rules())
        yield Servers(kafka, mongod)
    finally:
        stop_all(started)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-records", type=int, default=300, help="hostile records in tests/e2e/test_fuzz.py"
    )
    parser.addoption("--fuzz-seed", type=int, default=20240501, help="its Hypothesis seed")


@pytest.fixture(scope="session")
def fuzz_records(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-records"))


@pytest.fixture(scope="session")
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-seed"))


def random_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def topic_prefix(servers: Servers) -> str:
    """One prefix for the session's in-process services, so they feed each other."""
    prefix = random_id("test-") + "."
    servers.grant(prefix)
    return prefix


@pytest.fixture(scope="session")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the in-process services log (JSON, masked, DEBUG), so tests can read it."""
    path = tmp_path_factory.mktemp("logs") / "services.log"
    with path.open("a") as stream:
        configure_logging("tests", "DEBUG", stream=stream, json=True)
        yield path


class Upstream:
    """A producer that sends each record as whoever the catalogue lets write its topic: an
    inbound fact as the simulator (which plays the internal systems), a service's event as
    that service's principal. So a test feeding a service is held to the same ACLs as the
    programme; what no principal may write needs the ``forger``."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.producers: dict[str, AIOKafkaProducer] = {}

    def user_of(self, topic: str) -> str:
        event = event_of_topic(topic)
        if event is None:
            raise ValueError(f"no event is published on {topic}; use the forger")
        return SIMULATOR if event in INBOUND else event.producers[0]

    async def of(self, topic: str) -> AIOKafkaProducer:
        user = self.user_of(topic)
        if user not in self.producers:
            access = self.servers.principal(user)
            producer = AIOKafkaProducer(
                **access.client_kwargs(), acks="all", enable_idempotence=True
            )
            await producer.start()
            self.producers[user] = producer
        return self.producers[user]

    async def send(self, topic: str, value: Any = None, **kwargs: Any) -> Any:
        return await (await self.of(topic)).send(topic, value, **kwargs)

    async def send_and_wait(self, topic: str, value: Any = None, **kwargs: Any) -> Any:
        return await (await self.of(topic)).send_and_wait(topic, value, **kwargs)

    async def flush(self) -> None:
        for producer in self.producers.values():
            await producer.flush()

    async def stop(self) -> None:
        for producer in self.producers.values():
            await producer.stop()


@pytest_asyncio.fixture(scope="session")
async def producer(servers: Servers) -> AsyncIterator[Upstream]:
    """Plays every upstream producer, each as its own principal (see :class:`Upstream`)."""
    upstream = Upstream(servers)
    yield upstream
    await upstream.stop()


@pytest_asyncio.fixture(scope="session")
async def forger(servers: Servers) -> AsyncIterator[AIOKafkaProducer]:
    """The super user: writes what no principal may (a service's event forged on its topic),
    to test what a consumer does with it should a principal be stolen."""
    p = AIOKafkaProducer(**servers.admin.client_kwargs(), acks="all", enable_idempotence=True)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def port() -> int:
    return free_port()
