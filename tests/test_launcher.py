"""The launcher leaves no orphan: a server dies with the process that started it. The stack
supervisor brings back whatever dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pymongo import MongoClient, WriteConcern
from pymongo.errors import OperationFailure

from deploy.local.launcher import (
    Kafka,
    Mongod,
    install_kafka,
    install_mongod,
    stop_all,
)
from deploy.local.stack import SERVICES, free_ports_env, shown, spawn_supervisor

T = TypeVar("T")

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0; it is gone for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_stop_ends_the_server(tmp_path: Path) -> None:
    mongod = Mongod(tmp_path).start()
    assert mongod.process is not None
    pid = mongod.process.pid
    assert alive(pid)
    mongod.stop()
    assert wait_gone(pid)


def test_a_server_dies_with_a_killed_launcher(tmp_path: Path) -> None:
    install_mongod()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from deploy.local.launcher import Mongod
        m = Mongod(Path({str(tmp_path)!r})).start()
        print(m.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_gone(child), "mongod outlived the launcher that started it"


# ------------------------------------------------------------------ the stack supervisor


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s")


def processes(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The supervisor's state file, by process name (it is replaced atomically)."""
    state = json.loads((run_dir / "supervisor.json").read_text())
    return {row["name"]: row for row in state["processes"]}


def restarted(run_dir: Path, name: str, killed: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        row = processes(run_dir)[name]
        running = row["state"] == "running" and row["pid"] not in (None, killed)
        return row if running and row["restarts"] == 1 else None

    return check


def test_the_supervisor_restarts_what_dies(tmp_path: Path) -> None:
    """SIGKILL a service, then mongod and Kafka: each comes back (restart 1), answers, and
    mongod and Kafka come back on their data, as ``make up`` would have them."""
    install_kafka()
    install_mongod()
    run_dir = tmp_path / "run"
    env = {**os.environ, "JAKPRENEUR_RUN_DIR": str(run_dir), **free_ports_env()}
    run_dir.mkdir()
    supervisor = spawn_supervisor(env, tmp_path / "supervisor.log")
    try:

        def up() -> bool | None:
            assert supervisor.poll() is None, (tmp_path / "supervisor.log").read_text()
            return True if (run_dir / "stack.env").exists() else None

        wait_for(up, 240, "the stack")
        stack_env = dict(
            line.split("=", 1) for line in (run_dir / "stack.env").read_text().splitlines()
        )
        # what tools and tests log in with: the simulator's principal, the super users; the
        # file holds passwords, so it is its owner's only
        assert (run_dir / "stack.env").stat().st_mode & 0o777 == 0o600
        assert stack_env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert stack_env["KAFKA_SASL_USERNAME"] == "simulator"
        assert stack_env["KAFKA_ADMIN_USERNAME"] == "admin"
        assert stack_env["KAFKA_SASL_PASSWORD"] and stack_env["KAFKA_ADMIN_PASSWORD"]
        assert "@" not in stack_env["MONGODB_URI"]  # the address; the admin's is apart
        # and no log of the stack (the supervisor's, each process's, Kafka's and mongod's
        # own) holds a password: any principal's or MongoDB user's
        secrets = [
            password
            for server in ("kafka", "mongod")
            for password in json.loads(
                (run_dir / "data" / server / "credentials.json").read_text()
            ).values()
        ]
        assert stack_env["KAFKA_ADMIN_PASSWORD"] in secrets and len(secrets) > 15
        logs = [tmp_path / "supervisor.log", *run_dir.rglob("*.log")]
        assert len(logs) > 7
        for log in logs:
            assert not [s for s in secrets if s in log.read_text(errors="replace")], log
        assert shown("KAFKA_ADMIN_PASSWORD", "x") != "x" and shown("REGISTRY_URL", "u") == "u"
        before = processes(run_dir)
        assert {row["state"] for row in before.values()} == {"running"}
        assert {row["restarts"] for row in before.values()} == {0}

        # a service
        os.kill(before["registry"]["pid"], signal.SIGKILL)
        row = wait_for(restarted(run_dir, "registry", before["registry"]["pid"]), 120, "registry")
        assert row["last_exit"] == -signal.SIGKILL
        assert httpx.get(f"{stack_env['REGISTRY_URL']}/healthz", timeout=5).status_code == 200
        # the stack's ops token (its own issuer's) opens the restarted registry; none: 401
        funnel = f"{stack_env['REGISTRY_URL']}/funnel"
        ops = {"Authorization": f"Bearer {stack_env['JAKPRENEUR_OPS_TOKEN']}"}
        assert httpx.get(funnel, headers=ops, timeout=5).status_code == 200
        assert httpx.get(funnel, timeout=5).status_code == 401

        # mongod and Kafka, together; something durable in each first
        admin_uri = stack_env["MONGODB_ADMIN_URI"]
        client: MongoClient[dict[str, Any]] = MongoClient(admin_uri, serverSelectionTimeoutMS=5000)
        kept = client.supervisor_test.get_collection(
            "kept", write_concern=WriteConcern(w=1, j=True)
        )
        kept.insert_one({"_id": "survives-a-kill"})
        client.close()
        anonymous: MongoClient[dict[str, Any]] = MongoClient(
            stack_env["MONGODB_URI"], serverSelectionTimeoutMS=5000
        )
        with pytest.raises(OperationFailure, match="requires authentication"):
            anonymous.supervisor_test.kept.find_one({})
        anonymous.close()
        os.kill(before["mongod"]["pid"], signal.SIGKILL)
        os.kill(before["kafka"]["pid"], signal.SIGKILL)
        for name in ("mongod", "kafka"):
            wait_for(restarted(run_dir, name, before[name]["pid"]), 180, f"{name} again")
        client = MongoClient(admin_uri, serverSelectionTimeoutMS=5000)
        try:
            assert client.admin.command("ping")["ok"] == 1
            assert client.supervisor_test.kept.find_one({"_id": "survives-a-kill"}) is not None
        finally:
            client.close()

        # what the ops team sees: whole, machine-readable, through the real CLI, which
        # finds the stack's address and super user in its stack.env (JAKPRENEUR_RUN_DIR)
        cli = Path(sys.executable).with_name("jakpreneur")
        cli_env = {k: v for k, v in env.items() if not k.startswith("KAFKA_")}
        topics = subprocess.run(
            [str(cli), "topics", "list", "--output", "json"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        # created by the services at their start, before Kafka was killed: the data survived
        assert {"topic": "registration-submitted"} in json.loads(topics.stdout)
        status = subprocess.run(
            [str(cli), "stack", "status", "--output", "json"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert set(rows) == {"kafka", "mongod", "providers", *(s.name for s in SERVICES)}
        for name in ("registry", "mongod", "kafka"):
            assert (rows[name]["state"], rows[name]["restarts"]) == ("running", 1)
            assert rows[name]["pid"] != before[name]["pid"]

        # a clean stop ends every process and removes the state file
        last = [row["pid"] for row in rows.values() if row["pid"]]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
        assert all(wait_gone(pid, 10) for pid in last)
        assert not (run_dir / "supervisor.json").exists()
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                supervisor.kill()  # its children die with it (PR_SET_PDEATHSIG)
                supervisor.wait()


def test_the_tests_run_on_servers_named_by_the_environment(tmp_path: Path) -> None:
    """A cluster and a replica set that know only their admins (as a CI's own servers
    would): the fixtures give every principal its SCRAM credential, grant the ACLs and make
    the services' MongoDB users, and the access tests pass there."""
    kafka = Kafka(tmp_path / "kafka").start()
    mongod = Mongod(tmp_path / "mongod").start()
    try:
        admin = kafka.access("admin")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MONGODB_"))},
            "KAFKA_BOOTSTRAP_SERVERS": admin["KAFKA_BOOTSTRAP_SERVERS"],
            "KAFKA_SECURITY_PROTOCOL": admin["KAFKA_SECURITY_PROTOCOL"],
            "KAFKA_SASL_MECHANISM": admin["KAFKA_SASL_MECHANISM"],
            "KAFKA_ADMIN_USERNAME": "admin",
            "KAFKA_ADMIN_PASSWORD": admin["KAFKA_SASL_PASSWORD"],
            "MONGODB_ADMIN_URI": mongod.uri,
        }
        # This Kafka knows no principal and this mongod no service user: the access tests
        # (the portal logs in and is refused, a service's user reaches its own database)
        # pass only if the fixtures made them there.
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/shared/test_access.py"],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[:6000] + done.stderr[-2000:]
        assert " passed" in done.stdout and "failed" not in done.stdout
        assert set(kafka.passwords) == {"admin", "controller"}  # none of the launcher's
    finally:
        stop_all([kafka, mongod])
