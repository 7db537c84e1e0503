"""The local stack: Kafka, mongod and the services as child processes of one supervisor.

``python -m deploy.local up`` starts a detached supervisor and returns when everything
answers, having written ``.run/stack.env``; ``down`` stops it (and with it every child);
``run`` is the main job, in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.local.launcher import Kafka, Mongod, Server, _say, install_kafka, install_mongod

RUN_DIR = Path(".run")
ENV_FILE = RUN_DIR / "stack.env"
PID_FILE = RUN_DIR / "stack.pid"


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


class ServiceProcess(Server):
    def __init__(self, spec: ServiceSpec, env: dict[str, str], run_dir: Path):
        super().__init__()
        self.name = spec.name
        self.spec = spec
        self.url = f"http://127.0.0.1:{spec.port}"
        prefix = spec.name.upper()
        child_env = {**os.environ, **env, f"{prefix}_HTTP_PORT": str(spec.port)}
        command = [sys.executable, "-m", spec.module, *spec.args]
        self._spawn(command, run_dir / f"{spec.name}.log", child_env)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(f"{self.url}{self.spec.ready_path}", timeout=2).status_code == 200:
                    _say(f"{self.name} ready at {self.url}")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready in {timeout}s; see {self.log_path}")


class Stack:
    def __init__(
        self,
        run_dir: Path,
        kafka_port: int,
        controller_port: int,
        mongo_port: int,
        service_env: dict[str, str] | None = None,
    ):
        self.run_dir = run_dir
        self.service_env = service_env or {}
        self.kafka = Kafka(run_dir / "data" / "kafka", kafka_port, controller_port)
        self.mongod = Mongod(run_dir / "data" / "mongod", mongo_port)
        self.started: list[Server] = []

    def start(self) -> dict[str, str]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started.append(self.kafka.start())
        self.started.append(self.mongod.start())
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "MONGODB_URI": self.mongod.uri,
        }
        child_env = {**env, **self.service_env}
        services = [
            ServiceProcess(spec, child_env, self.run_dir) for spec in (PROVIDERS, *SERVICES)
        ]
        self.started.extend(services)
        for service in services:
            service.wait_ready()
            env[service.spec.url_var] = service.url
        (self.run_dir / "stack.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        return env

    def stop(self) -> None:
        for server in reversed(self.started):
            _say(f"stopping {server.name}")
            server.stop()
        self.started.clear()
        (self.run_dir / "stack.env").unlink(missing_ok=True)


def _ports(args: argparse.Namespace) -> tuple[int, int, int]:
    return args.kafka_port, args.kafka_controller_port, args.mongo_port


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def supervise(args: argparse.Namespace) -> None:
    stack = Stack(RUN_DIR, *_ports(args))
    try:
        stack.start()
        _say("stack is up")
        _wait_for_signal()
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
    _say(f"supervisor pid {proc.pid}; log in {RUN_DIR / 'stack.log'}")
    while not ENV_FILE.exists():
        if proc.poll() is not None:
            PID_FILE.unlink(missing_ok=True)
            sys.exit("stack failed to start:\n" + (RUN_DIR / "stack.log").read_text()[-3000:])
        time.sleep(0.5)
    sys.stdout.write(ENV_FILE.read_text())


def install(args: argparse.Namespace) -> None:
    install_kafka()
    install_mongod()


def down(args: argparse.Namespace) -> None:
    if not PID_FILE.exists():
        _say("no stack running")
        return
    pid = int(PID_FILE.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _tick in range(600):
            os.kill(pid, 0)
            time.sleep(0.1)
        _say("supervisor did not stop in 60 s; killing it")
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    PID_FILE.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    _say("stack stopped")


def run(args: argparse.Namespace) -> None:
    """The main job: a fresh stack, the simulated programme, the funnel, then wait."""
    from tools.simulate import print_funnel, settled_funnel, simulate

    if PID_FILE.exists():
        sys.exit("a stack started by `make up` is running; `make down` first")
    shutil.rmtree(RUN_DIR / "data", ignore_errors=True)  # a fresh programme each run
    stack = Stack(RUN_DIR, *_ports(args))
    try:
        env = stack.start()
        _say(f"simulating {args.participants} participants through the 7P")
        result = asyncio.run(
            simulate(env["KAFKA_BOOTSTRAP_SERVERS"], participants=args.participants, seed=args.seed)
        )
        print_funnel(result, settled_funnel(env["REGISTRY_URL"], result.intended))
        for key, value in env.items():
            _say(f"{key}={value}")
        for service in SERVICES:
            _say(f"{service.name} AsyncAPI docs: {env[service.url_var]}/docs/asyncapi")
        _say(
            f"messages sent to participants: {env[PROVIDERS.url_var]}/ (between 21:00 and "
            "07:00 WIB they wait for 07:00: quiet hours)"
        )
        _say(f"the funnel dashboard: {env['REGISTRY_URL']}/dashboard")
        if args.exit:
            return
        _say("stack keeps running; Ctrl-C stops it")
        _wait_for_signal()
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "supervise", "run"):
        p = sub.add_parser(name)
        p.add_argument("--kafka-port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)))
        p.add_argument(
            "--kafka-controller-port",
            type=int,
            default=int(os.environ.get("KAFKA_CONTROLLER_PORT", 9093)),
        )
        p.add_argument("--mongo-port", type=int, default=int(os.environ.get("MONGO_PORT", 27017)))
        if name == "run":
            p.add_argument("--participants", type=int, default=1000)
            p.add_argument("--seed", type=int, default=2021)
            p.add_argument("--exit", action="store_true", help="stop after the tally")
    sub.add_parser("down")
    sub.add_parser("install")
    args = parser.parse_args()
    commands: dict[str, Callable[[argparse.Namespace], None]] = {
        "up": up,
        "supervise": supervise,
        "run": run,
        "down": down,
        "install": install,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
