"""The compose stack's Kafka security, run for real without a Docker engine: the broker's
server properties are made from compose.yaml's ``kafka`` environment as the apache/kafka image
makes them (:func:`tests.deploy.support.server_properties`), with only its addresses moved to
free loopback ports and its paths into a temporary directory; it runs on the project's own
Kafka jars (``deploy/local``), with the certificates of deploy/tls.py as ``tls-init`` makes
them; deploy/kafka_users.py then runs with ``kafka-init``'s environment, as in compose.

So the listeners, SASL mechanisms, JAAS lines, PEM stores, authorizer and super users of
compose.yaml are the ones under test here; what differs is the Kafka version (the jars of
``make up``, not the image's) and that the image's scripts are not run.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from deploy import kafka_users, tls
from deploy.local.launcher import Server, _port_open, free_port, install_kafka
from shared.access import ADMIN, PRINCIPALS, SERVICES
from shared.kafka import KafkaAccess
from tests.deploy.support import server_properties

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def environment(entry: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in entry.get("environment", {}).items()}


def _relocate(ports: dict[str, int], name: str) -> str:
    return f"{name}://127.0.0.1:{ports[name]}"


@dataclass
class Moved:
    """Where the compose broker runs here: its listeners' ports and its directories."""

    ports: dict[str, int]
    tls_dir: Path
    data_dir: Path

    def properties(self, compose_props: dict[str, str], tls_mount: str, data: str) -> str:
        props = dict(compose_props)
        for key in ("listeners", "advertised.listeners"):
            props[key] = ",".join(
                _relocate(self.ports, address.split("://")[0]) for address in props[key].split(",")
            )
        controller = props["controller.listener.names"]
        node = props["node.id"]
        props["controller.quorum.voters"] = f"{node}@127.0.0.1:{self.ports[controller]}"
        lines = []
        for key, value in props.items():
            value = value.replace(tls_mount, str(self.tls_dir)).replace(data, str(self.data_dir))
            lines.append(f"{key}={value}\n")
        return "".join(lines)


class ComposeKafka(Server):
    name = "kafka (compose configuration)"

    def __init__(self, root: Path, properties: str, cluster_id: str, admin: KafkaAccess):
        super().__init__()
        self.root = root
        self.properties = properties
        self.cluster_id = cluster_id
        self.admin = admin

    def launch(self) -> None:
        classpath = f"{install_kafka()}/*"
        config = self.root / "server.properties"
        config.write_text(self.properties)
        (self.root / "log4j2.properties").write_text(
            "rootLogger.level=WARN\n"
            "rootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\n"
            "appender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
        )
        # As the image's KafkaDockerWrapper formats the storage: the cluster id, no more.
        subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id}",
                "-c",
                str(config),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        command = [
            "java",
            "-Xmx512m",
            "-Xms128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]
        self._spawn(command, self.root / "kafka.log")

    def wait_ready(self, timeout: float) -> None:
        port = self.admin.bootstrap_servers.rsplit(":", 1)[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if _port_open(int(port)):
                try:
                    asyncio.run(kafka_users.logs_in(self.admin, timeout=1))
                    return
                except TimeoutError:
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"the compose-configured Kafka did not answer in {timeout}s")


@dataclass
class Stack:
    kafka: ComposeKafka
    init_env: dict[str, str]  # kafka-init's environment, addresses moved
    host: KafkaAccess  # the HOST listener (clients on the machine), no user yet
    passwords: dict[str, str]

    def on_host(self, user: str, password: str | None = None) -> KafkaAccess:
        secret = self.passwords[user] if password is None else password
        return self.host.as_user(user, secret)


@pytest.fixture(scope="module")
def stack(compose: Obj, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose-kafka")
    services = compose["services"]
    kafka_env = environment(services["kafka"])
    props = server_properties(kafka_env)
    names = [a.split("://")[0] for a in props["listeners"].split(",")]
    moved = Moved({name: free_port() for name in names}, root / "tls", root / "data")
    (tls_mount,) = [
        v.split(":")[1] for v in services["kafka"]["volumes"] if v.startswith("kafka-tls:")
    ]
    text = moved.properties(props, tls_mount, props["log.dirs"])

    # tls-init, as compose runs it (its arguments, into two directories here)
    command = services["tls-init"]["command"]
    dns = [command[i + 1] for i, arg in enumerate(command) if arg == "--dns"]
    ips = [command[i + 1] for i, arg in enumerate(command) if arg == "--ip"]
    moved.tls_dir.mkdir()
    (root / "ca").mkdir()
    assert tls.ensure(root / "ca", moved.tls_dir, tls.Names(tuple(dns), tuple(ips)))
    ca_file = str(root / "ca" / "ca.crt")

    init_env = environment(services["kafka-init"])
    internal = props["inter.broker.listener.name"]
    init_env |= {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{moved.ports[internal]}",
        "KAFKA_SSL_CAFILE": ca_file,
    }
    admin = KafkaAccess.from_env(init_env)
    host_listener = next(n for n in names if n not in (internal, "CONTROLLER"))
    host = KafkaAccess(
        f"127.0.0.1:{moved.ports[host_listener]}", "SASL_SSL", "SCRAM-SHA-512", ssl_cafile=ca_file
    )
    kafka = ComposeKafka(root, text, kafka_env["CLUSTER_ID"], admin)
    try:
        kafka.start(timeout=180)
        passwords = kafka_users.passwords(init_env)
        yield Stack(kafka, init_env, host, passwords)
    finally:
        kafka.stop()


def test_kafka_init_gives_every_principal_its_credential_and_acls(stack: Stack) -> None:
    """What kafka-init does at `compose up`, twice (it runs at every `up`)."""
    for _ in range(2):
        users = asyncio.run(kafka_users.run(stack.init_env))
        assert users == [ADMIN, *PRINCIPALS]

    async def log_in_on_the_host_listener() -> None:
        await asyncio.gather(*(kafka_users.logs_in(stack.on_host(u)) for u in PRINCIPALS))

    asyncio.run(log_in_on_the_host_listener())


def test_wrong_password_no_sasl_and_no_tls_are_refused(stack: Stack) -> None:
    asyncio.run(kafka_users.run(stack.init_env))
    refused = [
        stack.on_host("registry", "not-its-password"),
        KafkaAccess(stack.host.bootstrap_servers, "SSL", ssl_cafile=stack.host.ssl_cafile),
        KafkaAccess(stack.host.bootstrap_servers, "PLAINTEXT"),
        KafkaAccess(stack.host.bootstrap_servers, "SASL_PLAINTEXT", "SCRAM-SHA-512").as_user(
            "registry", stack.passwords["registry"]
        ),
        # the admin's PLAIN login is for the containers' listener only
        KafkaAccess(
            stack.host.bootstrap_servers, "SASL_SSL", "PLAIN", ssl_cafile=stack.host.ssl_cafile
        ).as_user(ADMIN, stack.passwords[ADMIN]),
    ]
    for access in refused:
        with pytest.raises(TimeoutError):
            asyncio.run(kafka_users.logs_in(access, timeout=1))


def test_a_principal_writes_only_what_the_catalogue_lets_it(stack: Stack) -> None:
    """The portal may not forge Bank DKI's decision; Bank DKI may write it. (The topic is
    made by ops, as `jakpreneur topics create` would.)"""
    asyncio.run(kafka_users.run(stack.init_env))
    topic = stack.init_env.get("TOPIC_PREFIX", "") + "financing-decided"

    async def scenario() -> None:
        ops = AIOKafkaAdminClient(**stack.on_host("ops").client_kwargs())
        await ops.start()
        try:
            try:
                await ops.create_topics([NewTopic(topic, 1, 1)])
            except KafkaError as exc:
                if "exists" not in repr(exc).lower():
                    raise
        finally:
            await ops.close()
        for user, allowed in (("bank-dki", True), ("portal", False), ("registry", False)):
            producer = AIOKafkaProducer(
                **stack.on_host(user).client_kwargs(), request_timeout_ms=10000
            )
            await producer.start()
            try:
                if allowed:
                    await producer.send_and_wait(topic, b"{}")
                else:
                    with pytest.raises(TopicAuthorizationFailedError):
                        await producer.send_and_wait(topic, b"{}")
            finally:
                await producer.stop()

    asyncio.run(scenario())
    assert set(SERVICES) <= set(PRINCIPALS)
