"""The local stack: Kafka, mongod and the services as child processes of one supervisor.

``python -m deploy.local up`` starts a detached supervisor and returns when everything
answers, having written ``.run/stack.env``; ``down`` stops it (and with it every child).
:func:`fresh_stack` is the same stack in the foreground, from a fresh data directory, for
``make run``, which then plays the programme on it. ``stack.env`` is
written by :meth:`Stack.start` and read by :func:`stack_env`, here beside each other.

Nothing stops the pipeline: as a kubelet would, the supervisor restarts any process that
dies (a service, the provider stand-in, mongod, Kafka) after a capped exponential backoff,
on the same ports and data directories, so the data survives. It keeps each process's pid,
state and restart count in ``.run/supervisor.json`` (``jakpreneur stack status``).

``JAKPRENEUR_RUN_DIR`` moves ``.run``; ``KAFKA_PORT``, ``KAFKA_CONTROLLER_PORT``,
``MONGO_PORT``, ``<SERVICE>_HTTP_PORT`` (REGISTRY, COACHING, MARKETPLACE, NOTIFICATIONS,
PROVIDERS) and ``PROVIDERS_SMTP_PORT`` move the ports, so a second stack (a test) can run
beside a developer's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from deploy.local.identity import DevelopmentIdentity
from deploy.local.launcher import (
    ADMIN,
    Kafka,
    Mongod,
    Server,
    die_with_parent,
    free_port,
    install_kafka,
    install_mongod,
    say,
)
from shared.access import PRINCIPALS, SIMULATOR, acls, cluster_rules

RUN_DIR = Path(os.environ.get("JAKPRENEUR_RUN_DIR") or ".run")
# The variables that move the stack's ports (see the module's docstring).
PORT_VARS = (
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "MONGO_PORT",
    "PROVIDERS_HTTP_PORT",
    "PROVIDERS_SMTP_PORT",
    "REGISTRY_HTTP_PORT",
    "COACHING_HTTP_PORT",
    "MARKETPLACE_HTTP_PORT",
    "NOTIFICATIONS_HTTP_PORT",
)


def spawn_supervisor(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m deploy.local supervise`` of its own (a test, a chaos run), logging to
    ``log_path`` and dying with its parent."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.local", "supervise"],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )


def free_ports_env() -> dict[str, str]:
    """Every port variable set to a distinct free port: a second stack (a test, a chaos
    run) beside a developer's ``make up``."""
    ports: set[int] = set()
    while len(ports) < len(PORT_VARS):
        ports.add(free_port())
    return {name: str(port) for name, port in zip(PORT_VARS, sorted(ports), strict=True)}


ENV_FILE = RUN_DIR / "stack.env"
PID_FILE = RUN_DIR / "stack.pid"
STATE_FILE = RUN_DIR / "supervisor.json"

# Restart backoff, as Kubernetes does it (there 10 s doubling to 5 min, reset after 10 min
# of running): shorter here, because a developer is waiting on a laptop.
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
STABLE_AFTER_S = 60.0  # a process that ran this long starts its backoff afresh
_POLL_S = 0.25


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    url_var: str
    args: tuple[str, ...] = ()
    ready_path: str = "/readyz"


SERVICES = (
    ServiceSpec("registry", "services.registry", 8001, "REGISTRY_URL"),
    ServiceSpec("coaching", "services.coaching", 8002, "COACHING_URL"),
    ServiceSpec("marketplace", "services.marketplace", 8003, "MARKETPLACE_URL"),
    ServiceSpec("notifications", "services.notifications", 8004, "NOTIFICATIONS_URL"),
)
# Stand-in WhatsApp/SMS providers and SMTP sink: where notifications go by default.
PROVIDERS = ServiceSpec(
    "providers",
    "deploy.local.providers",
    8025,
    "PROVIDERS_URL",
    args=("--http-port", "8025", "--smtp-port", "2525"),
    ready_path="/_messages",
)
PROVIDERS_SMTP_PORT = 2525
# JAKPRENEUR_OPS_TOKEN in stack.env: an ops token for the tools, valid while a stack runs
# (a day; `jakpreneur token --role ops` mints another).
OPS_TOKEN_TTL_S = 24 * 3600


def service_specs(environ: Mapping[str, str] = os.environ) -> tuple[ServiceSpec, ...]:
    """The provider stand-in and the services, on the ports the environment asks for."""
    specs = []
    for spec in (PROVIDERS, *SERVICES):
        port = int(environ.get(f"{spec.name.upper()}_HTTP_PORT") or spec.port)
        specs.append(replace(spec, port=port))
    smtp = int(environ.get("PROVIDERS_SMTP_PORT") or PROVIDERS_SMTP_PORT)
    specs[0] = replace(specs[0], args=("--http-port", str(specs[0].port), "--smtp-port", str(smtp)))
    return tuple(specs)


def _provider_wiring(providers: ServiceSpec) -> dict[str, str]:
    """Where notifications sends by default: the stand-in, wherever its ports are."""
    smtp = providers.args[providers.args.index("--smtp-port") + 1]
    base = f"http://127.0.0.1:{providers.port}"
    return {
        "NOTIFICATIONS_WHATSAPP_BASE_URL": f"{base}/whatsapp",
        "NOTIFICATIONS_SMS_BASE_URL": f"{base}/sms",
        "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
        "NOTIFICATIONS_SMTP_PORT": smtp,
    }


class ServiceProcess(Server):
    def __init__(
        self, spec: ServiceSpec, env: dict[str, str], run_dir: Path, name: str | None = None
    ):
        super().__init__()
        self.name = name or spec.name
        self.spec = spec
        self.url = f"http://127.0.0.1:{spec.port}"
        self.run_dir = run_dir
        # A local stack runs on the development keys and tokens: allowed only when so marked.
        self.env = {
            "JAKPRENEUR_ENV": "development",
            **env,
            f"{spec.name.upper()}_HTTP_PORT": str(spec.port),
        }

    def launch(self) -> None:
        command = [sys.executable, "-m", self.spec.module, *self.spec.args]
        self._spawn(command, self.run_dir / f"{self.name}.log", self.env)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(f"{self.url}{self.spec.ready_path}", timeout=2).status_code == 200:
                    say(f"{self.name} ready at {self.url}")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready in {timeout}s; see {self.log_path}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Supervised:
    """One process under supervision, and what ``stack status`` reports of it."""

    server: Server
    address: str
    state: str = "starting"  # starting | running | backoff | stopped
    restarts: int = 0
    last_exit: int | None = None  # the return code; -9 is SIGKILL
    since: str = field(default_factory=_now)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def row(self) -> dict[str, Any]:
        process = self.server.process
        alive = process is not None and process.poll() is None
        return {
            "name": self.server.name,
            "pid": process.pid if alive and process is not None else None,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "since": self.since,
            "address": self.address,
            "log": str(self.server.log_path) if self.server.log_path else None,
        }


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    """The supervisor's state file, or None when no live supervisor wrote it."""
    path = path or STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["supervisor_pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        return None  # left behind by a supervisor that was killed
    except PermissionError:
        pass
    return state


class Stack:
    def __init__(
        self,
        run_dir: Path,
        kafka_port: int,
        controller_port: int,
        mongo_port: int,
        service_env: dict[str, str] | None = None,
        tuned: bool = False,
        replicas: int = 1,
    ):
        """``tuned``: mongod's cache as a production node's (the benchmark) instead of the
        tests' and the demo's 0.25 GB. ``replicas``: instances of each service, sharing its
        consumer group and database (the second on its port + 100, named ``<service>-2``)."""
        self.replicas = replicas
        self.run_dir = run_dir
        self.service_env = service_env or {}
        self.specs = service_specs()
        self.kafka = Kafka(
            run_dir / "data" / "kafka", kafka_port, controller_port, users=PRINCIPALS
        )
        # Each service's user may read and write its own database (named as the service,
        # unless <SERVICE>_MONGODB_DATABASE says otherwise) and no other.
        environ = {**os.environ, **self.service_env}
        self.mongod = Mongod(
            run_dir / "data" / "mongod",
            mongo_port,
            users={
                spec.name: [environ.get(f"{spec.name.upper()}_MONGODB_DATABASE") or spec.name]
                for spec in SERVICES
            },
            cache_gb=1.0 if tuned else 0.25,
        )
        self.topic_prefix = environ.get("TOPIC_PREFIX", "")
        self.started: list[Server] = []
        self.supervised: list[Supervised] = []
        self._stopping = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._state_lock = threading.Lock()

    @property
    def state_file(self) -> Path:
        return self.run_dir / STATE_FILE.name

    def _add(self, server: Server, address: str) -> Supervised:
        self.started.append(server)
        unit = Supervised(server, address)
        self.supervised.append(unit)
        self._record()
        return unit

    def start(self, supervise: bool = True) -> dict[str, str]:
        """Start everything and wait until it answers; then (by default) keep it running."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        for server, address in (
            (self.kafka, self.kafka.bootstrap_servers),
            (self.mongod, f"127.0.0.1:{self.mongod.port}"),
        ):
            unit = self._add(server, address)
            server.start()
            self._update(unit, state="running")
        self.kafka.grant([*acls(self.topic_prefix), *cluster_rules()])
        admin = self.kafka.access(ADMIN)
        # What tools and tests use: the simulator's principal (it plays the internal systems
        # and reads every topic), the super user and MongoDB's admin for ops tools.
        env = {
            **self.kafka.access(SIMULATOR),
            "KAFKA_ADMIN_USERNAME": admin["KAFKA_SASL_USERNAME"],
            "KAFKA_ADMIN_PASSWORD": admin["KAFKA_SASL_PASSWORD"],
            "MONGODB_URI": self.mongod.address,
            "MONGODB_ADMIN_URI": self.mongod.uri,
        }
        # The local token issuer (deploy/local/identity.py), a new key each start: the
        # services read its JWKS; tools read the services with the ops token.
        identity = DevelopmentIdentity.create(self.run_dir / "auth")
        env["JAKPRENEUR_OPS_TOKEN"] = identity.mint("ops", ttl_s=OPS_TOKEN_TTL_S)
        child_env = {
            **_provider_wiring(self.specs[0]),
            **os.environ,
            **identity.env(),
            **self.service_env,
        }
        for name in (*env, "KAFKA_ADMIN_USERNAME", "KAFKA_ADMIN_PASSWORD"):
            child_env.pop(name, None)  # a service logs in as itself, never as someone else
        # The key of the DLQ's personal fields: the services seal with it, ops' CLI (dlq
        # replay) opens with it from stack.env. Kept with the data, so dead letters of an
        # earlier run of the same stack still open.
        dlq_key = child_env.get("DLQ_PERSONAL_KEY") or dlq_personal_key(self.run_dir / "data")
        child_env["DLQ_PERSONAL_KEY"] = env["DLQ_PERSONAL_KEY"] = dlq_key
        services = [
            ServiceProcess(spec, {**child_env, **self._login(spec.name)}, self.run_dir)
            for spec in self.specs
        ]
        services += [  # further replicas of each service (the stand-in is no service)
            ServiceProcess(
                replace(spec, port=spec.port + 100 * n),
                {**child_env, **self._login(spec.name)},
                self.run_dir,
                name=f"{spec.name}-{n + 1}",
            )
            for n in range(1, self.replicas)
            for spec in self.specs
            if spec.name != PROVIDERS.name
        ]
        units = [self._add(service, service.url) for service in services]
        for service in services:
            service.launch()
        self._record()
        for service, unit in zip(services, units, strict=True):
            service.wait_ready()
            self._update(unit, state="running")
            env.setdefault(service.spec.url_var, service.url)  # the first replica's
        write_stack_env(env, self.run_dir / ENV_FILE.name)
        if supervise:
            for unit in self.supervised:
                # PR_SET_PDEATHSIG fires when the *thread* that spawned a child ends, so each
                # process is respawned by a watcher thread that lives as long as the stack.
                watcher = threading.Thread(
                    target=self._watch, args=(unit,), name=f"watch-{unit.server.name}", daemon=True
                )
                watcher.start()
                self._watchers.append(watcher)
        return env

    def _login(self, name: str) -> dict[str, str]:
        """A service's own Kafka principal and MongoDB user; nothing for the stand-in."""
        if name not in self.mongod.users:
            return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers}
        return {**self.kafka.access(name), "MONGODB_URI": self.mongod.uri_for(name)}

    # ------------------------------------------------------------------- supervision

    def _watch(self, unit: Supervised) -> None:
        """Restart the unit's process whenever it dies, until the stack stops."""
        failures = 0  # deaths since the process last ran STABLE_AFTER_S
        while True:
            code = self._wait_exit(unit)
            if code is None:
                return
            if time.monotonic() - unit.started >= STABLE_AFTER_S:
                failures = 0
            delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**failures)
            failures += 1
            say(f"{unit.server.name} exited with {code}; restarting in {delay:g}s")
            self._update(unit, state="backoff", last_exit=code)
            if self._stopping.wait(delay) or not self._relaunch(unit):
                return
            self._wait_running(unit)

    def _wait_exit(self, unit: Supervised) -> int | None:
        """The process's return code once it has exited; None when the stack stops."""
        while not self._stopping.is_set():
            process = unit.server.process
            code = process.poll() if process is not None else -1
            if code is not None:
                return None if self._stopping.is_set() else code
            self._stopping.wait(_POLL_S)
        return None

    def _relaunch(self, unit: Supervised) -> bool:
        with unit.lock:  # stop() holds it while it stops this process
            if self._stopping.is_set():
                return False
            unit.started = time.monotonic()
            try:
                unit.server.launch()
            except Exception as exc:  # e.g. the JVM could not be spawned: back off again
                say(f"{unit.server.name} could not be launched: {exc!r}")
                return True
            unit.restarts += 1
            self._update(unit, state="starting")
        return True

    def _wait_running(self, unit: Supervised) -> None:
        """Wait until the relaunched process answers. One that is alive but slow is left
        alone (a service waits for Kafka and mongod to come back); one that dies, or fails
        its start in another way, is dealt with by the next turn of ``_watch``."""
        server = unit.server
        while not self._stopping.is_set():
            try:
                server.wait_ready(60)
            except TimeoutError:
                continue
            except Exception as exc:
                process = server.process
                if process is not None and process.poll() is None and not self._stopping.is_set():
                    say(f"{server.name} failed to start ({exc!r}); killing it")
                    process.kill()
                return
            self._update(unit, state="running")
            say(f"{server.name} is running again (restart {unit.restarts})")
            return

    def _update(self, unit: Supervised, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(unit, key, value)
        if "state" in changes and "since" not in changes:
            unit.since = _now()
        self._record()

    def _record(self) -> None:
        """Rewrite the state file atomically: a reader sees the old or the new, never half."""
        with self._state_lock:
            state = {
                "supervisor_pid": os.getpid(),
                "updated_at": _now(),
                "processes": [unit.row() for unit in self.supervised],
            }
            self.run_dir.mkdir(parents=True, exist_ok=True)
            partial = self.state_file.with_name(f".{self.state_file.name}.{threading.get_ident()}")
            partial.write_text(json.dumps(state, indent=2) + "\n")
            os.replace(partial, self.state_file)

    def stop(self) -> None:
        """The services together (each flushes its outbox), then mongod, then Kafka."""
        self._stopping.set()
        services = [u for u in self.supervised if isinstance(u.server, ServiceProcess)]
        others = [u for u in reversed(self.supervised) if u not in services]
        for tier in (services, *([unit] for unit in others)):
            for unit in tier:
                say(f"stopping {unit.server.name}")
                with unit.lock:
                    process = unit.server.process
                    if process is not None and process.poll() is None:
                        process.terminate()
            for unit in tier:
                with unit.lock:
                    unit.server.stop()
                unit.state = "stopped"
        for watcher in self._watchers:
            watcher.join(timeout=10)
        self._watchers.clear()
        self.started.clear()
        self.supervised.clear()
        (self.run_dir / ENV_FILE.name).unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "auth", ignore_errors=True)  # its tokens die with it
        self.state_file.unlink(missing_ok=True)


def write_stack_env(env: Mapping[str, str], path: Path) -> None:
    """What tools and tests log in with (see :meth:`Stack.start`), one ``NAME=value`` a line;
    it holds passwords, so it is its owner's only."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


def stack_env(path: Path | None = None) -> dict[str, str]:
    """The running local stack's ``stack.env`` (``JAKPRENEUR_RUN_DIR``'s, else ``.run``'s,
    unless ``path`` names another); empty when no stack wrote one."""
    path = path or ENV_FILE
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def add_port_options(parser: argparse.ArgumentParser) -> None:
    """The stack's Kafka and mongod ports (defaults from the environment, see the module's
    docstring), for every command that starts one."""
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)))
    parser.add_argument(
        "--kafka-controller-port",
        type=int,
        default=int(os.environ.get("KAFKA_CONTROLLER_PORT", 9093)),
    )
    parser.add_argument("--mongo-port", type=int, default=int(os.environ.get("MONGO_PORT", 27017)))


def _ports(args: argparse.Namespace) -> tuple[int, int, int]:
    return args.kafka_port, args.kafka_controller_port, args.mongo_port


def wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def supervise(args: argparse.Namespace) -> None:
    stack = Stack(RUN_DIR, *_ports(args))
    try:
        stack.start()
        say("stack is up")
        wait_for_signal()
    finally:
        stack.stop()
        PID_FILE.unlink(missing_ok=True)


def up(args: argparse.Namespace) -> None:
    if PID_FILE.exists():
        sys.exit(f"a stack is already running (pid {PID_FILE.read_text().strip()}); make down")
    install_kafka()
    install_mongod()
    RUN_DIR.mkdir(exist_ok=True)
    log = (RUN_DIR / "stack.log").open("ab")
    command = [
        sys.executable,
        "-m",
        "deploy.local",
        "supervise",
        "--kafka-port",
        str(args.kafka_port),
        "--kafka-controller-port",
        str(args.kafka_controller_port),
        "--mongo-port",
        str(args.mongo_port),
    ]
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    PID_FILE.write_text(str(proc.pid))
    say(f"supervisor pid {proc.pid}; log in {RUN_DIR / 'stack.log'}")
    while not ENV_FILE.exists():
        if proc.poll() is not None:
            PID_FILE.unlink(missing_ok=True)
            sys.exit("stack failed to start:\n" + (RUN_DIR / "stack.log").read_text()[-3000:])
        time.sleep(0.5)
    for name, value in stack_env(ENV_FILE).items():
        sys.stdout.write(f"{name}={shown(name, value)}\n")


def dlq_personal_key(data_dir: Path) -> str:
    """This stack's Fernet key of the DLQ's personal fields, made on its first start."""
    from cryptography.fernet import Fernet

    path = data_dir / "dlq-personal.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


def shown(name: str, value: str) -> str:
    """A stack.env value as printed: passwords, tokens, keys and the admin URI stay in the
    file."""
    secret = any(word in name for word in ("PASSWORD", "TOKEN", "KEY")) or name.endswith(
        "ADMIN_URI"
    )
    return f"<in {ENV_FILE}>" if secret else value


def install(args: argparse.Namespace) -> None:
    install_kafka()
    install_mongod()


def down(args: argparse.Namespace) -> None:
    if not PID_FILE.exists():
        say("no stack running")
        return
    pid = int(PID_FILE.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _tick in range(600):
            os.kill(pid, 0)
            time.sleep(0.1)
        say("supervisor did not stop in 60 s; killing it")
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    PID_FILE.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    say("stack stopped")


@contextmanager
def fresh_stack(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """A stack in the foreground on a fresh data directory (the ports of
    :func:`add_port_options`), its ``stack.env`` given; stopped on the way out. Refused
    while a stack of ``make up`` runs."""
    if PID_FILE.exists():
        sys.exit("a stack started by `make up` is running; `make down` first")
    shutil.rmtree(RUN_DIR / "data", ignore_errors=True)
    stack = Stack(RUN_DIR, *_ports(args))
    try:
        yield stack.start()
    finally:
        stack.stop()


def announce(env: Mapping[str, str]) -> None:
    """Where everything is: stack.env (secrets masked), each service's AsyncAPI page, the
    messages delivered to the stand-in, the dashboard as ops."""
    for key, value in env.items():
        say(f"{key}={shown(key, value)}")
    for service in SERVICES:
        say(f"{service.name} AsyncAPI docs: {env[service.url_var]}/docs/asyncapi")
    say('(with a token: curl -H "Authorization: Bearer $JAKPRENEUR_OPS_TOKEN", stack.env)')
    say(
        f"messages sent to participants: {env[PROVIDERS.url_var]}/ (between 21:00 and "
        "07:00 WIB they wait for 07:00: quiet hours)"
    )
    # The token in the fragment: the browser never sends it to the server (the page
    # keeps it in the tab's session storage and sends it as a bearer token).
    token = env["JAKPRENEUR_OPS_TOKEN"]
    say(f"the funnel dashboard (as ops): {env['REGISTRY_URL']}/dashboard#token={token}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "supervise"):
        add_port_options(sub.add_parser(name))
    sub.add_parser("down")
    sub.add_parser("install")
    args = parser.parse_args()
    commands: dict[str, Callable[[argparse.Namespace], None]] = {
        "up": up,
        "supervise": supervise,
        "down": down,
        "install": install,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
