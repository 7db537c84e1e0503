"""``tools.demo`` and ``make bench``'s baseline on the secured servers: the demo submits as
the portal with the simulator's principal and reads the answers; the bare baseline makes
topics and consumer groups of its own, outside the catalogue, as the super user."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import Servers
from tests.registry.fixtures import Registry
from tools.bench import HOPS, baseline
from tools.demo import submit_and_tally

pytestmark = pytest.mark.integration
COUNT = 60


async def test_the_demo_is_answered_as_intended(
    servers: Servers, registry: Registry, coaching: CoachingUnderTest
) -> None:
    tally = await submit_and_tally(
        servers.kafka,  # the simulator's principal, sending as the portal
        registry.settings.topic_prefix,
        COUNT,
        seed=random.randrange(2**32),  # NIKs of their own, apart from other tests'
        timeout_s=120,
    )

    assert (tally.submitted, tally.answered) == (COUNT, COUNT)
    assert tally.unexpected == tally.duplicates == tally.dead_lettered == 0
    assert tally.registered > 0 and tally.enrolled == tally.registered
    assert "unknown-source" not in tally.rejected


async def test_the_bench_baseline_runs_as_the_super_user_and_leaves_nothing(
    servers: Servers,
) -> None:
    result = await baseline(servers.admin, 300)

    assert (result["messages"], result["hops"]) == (300, HOPS)
    assert result["throughput_per_s"] > 0
    admin = AIOKafkaAdminClient(**servers.admin.client_kwargs())
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith("bench-baseline-")]
    finally:
        await admin.close()


def test_a_tool_logs_in_from_the_environment_or_the_stack_never_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a local stack's stack.env present, an environment that names another cluster
    is used alone: the stack's admin password and protocol are not sent there."""
    import deploy.local.stack
    from tools.demo import stack_access

    env_file = tmp_path / "stack.env"
    env_file.write_text(
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092\nKAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT\n"
        "KAFKA_SASL_USERNAME=simulator\nKAFKA_SASL_PASSWORD=local-sim\n"
        "KAFKA_ADMIN_USERNAME=admin\nKAFKA_ADMIN_PASSWORD=local-admin\n"
    )
    monkeypatch.setattr(deploy.local.stack, "ENV_FILE", env_file)
    for name in [n for n in os.environ if n.startswith("KAFKA_")]:
        monkeypatch.delenv(name)
    local = stack_access(admin=True)
    assert (local.username, local.password, local.security_protocol) == (
        "admin",
        "local-admin",
        "SASL_PLAINTEXT",
    )
    assert stack_access().username == "simulator"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.prod:9093")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "ops")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "ops-pw")
    remote = stack_access(admin=True)
    assert (remote.bootstrap_servers, remote.security_protocol) == ("kafka.prod:9093", "SASL_SSL")
    assert (remote.username, remote.password) == ("ops", "ops-pw")
    assert stack_access("elsewhere:9093").bootstrap_servers == "elsewhere:9093"


def test_the_benchmark_tells_the_runs_work_from_start_up_and_idle_polling() -> None:
    from tools.bench import IDLE_S, cpu_accounting

    started = {"kafka": {"cpu_s": 6.0}, "registry": {"cpu_s": 2.0}}  # start-up
    idle = {"kafka": {"cpu_s": 6.0 + IDLE_S * 0.05}, "registry": {"cpu_s": 2.0 + IDLE_S * 0.05}}
    ended = {"kafka": {"cpu_s": idle["kafka"]["cpu_s"] + 11.0}, "registry": {"cpu_s": 9.5}}
    cpu = cpu_accounting(started, idle, ended, run_s=20.0, participants=1000)
    assert cpu["idle_cpu_s_per_s"] == 0.1  # two processes polling 0.05 CPU-s a second each
    assert cpu["from_start_ms"] == round((17.5 + 9.5) * 1000 / 1000, 2)
    during = 11.0 + (9.5 - 2.5)
    assert cpu["during_run_ms"] == during
    assert cpu["work_ms"] == during - 0.1 * 20.0  # less 20 s of idle polling
    assert cpu["per_process_during_run_ms"] == {"kafka": 11.0, "registry": 7.0}
