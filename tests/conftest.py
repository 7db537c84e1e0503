"""Fixtures: real servers for the session, picked in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` if both are set (existing servers);
2. testcontainers, if a Docker engine answers;
3. the project's own launcher (``deploy/local``): one Kafka and one mongod per session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from deploy.local.launcher import Kafka, Mongod, free_port, stop_all
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


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    origin: str


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _testcontainers() -> Iterator[Servers]:
    from pymongo import MongoClient
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    kafka = (
        KafkaContainer("confluentinc/cp-kafka:7.6.0")
        .with_kraft()
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    mongo = DockerContainer("mongo:7.0").with_command("--replSet rs0 --bind_ip_all")
    mongo = mongo.with_exposed_ports(27017)
    with kafka, mongo:
        wait_for_logs(mongo, "Waiting for connections")
        uri = f"mongodb://{mongo.get_container_host_ip()}:{mongo.get_exposed_port(27017)}"
        uri += "/?directConnection=true"
        client: MongoClient[dict[str, object]] = MongoClient(uri)
        client.admin.command(
            "replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]}
        )
        while not client.admin.command("hello").get("isWritablePrimary"):
            pass
        client.close()
        yield Servers(kafka.get_bootstrap_server(), uri, "testcontainers")


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongodb_uri = os.environ.get("MONGODB_URI")
    if bootstrap and mongodb_uri:
        yield Servers(bootstrap, mongodb_uri, "environment")
    elif _docker_answers():
        yield from _testcontainers()
    else:
        root = tmp_path_factory.mktemp("servers")
        started = []
        try:
            kafka = Kafka(root / "kafka").start()
            started.append(kafka)
            mongod = Mongod(root / "mongod").start()
            started.append(mongod)
            yield Servers(kafka.bootstrap_servers, mongod.uri, "launcher")
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
def topic_prefix() -> str:
    """One prefix for the session's in-process services, so they feed each other."""
    return random_id("test-") + "."


@pytest.fixture(scope="session")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the in-process services log (JSON, masked, DEBUG), so tests can read it."""
    path = tmp_path_factory.mktemp("logs") / "services.log"
    with path.open("a") as stream:
        configure_logging("tests", "DEBUG", stream=stream, json=True)
        yield path


@pytest_asyncio.fixture(scope="session")
async def producer(servers: Servers) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(
        bootstrap_servers=servers.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def port() -> int:
    return free_port()
