"""``tools.demo`` and ``make bench``'s baseline on the secured servers: the demo submits as
the portal with the simulator's principal and reads the answers; the bare baseline makes
topics and consumer groups of its own, outside the catalogue, as the super user."""

from __future__ import annotations

import random

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
