"""A few hundred simulated participants through the whole programme: the registry's funnel
equals what the simulator intended, stage by stage; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from shared.contracts import TrainingCompleted, TrainingEnrolled, TrainingNotCompleted
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import Servers, random_id
from tests.marketplace.fixtures import MarketplaceUnderTest
from tests.registry.fixtures import Registry
from tools.simulate import simulate

pytestmark = pytest.mark.integration
PARTICIPANTS = 200


async def test_the_funnel_equals_the_simulators_intent(
    servers: Servers,
    registry: Registry,
    coaching: CoachingUnderTest,
    marketplace: MarketplaceUnderTest,
) -> None:
    kecamatan = random_id("Sim-")  # this run's participants, apart from other tests'
    result = await simulate(
        servers.kafka,  # the simulator's principal: it plays every internal system
        prefix=registry.settings.topic_prefix,
        participants=PARTICIPANTS,
        seed=7,
        kecamatan=kecamatan,
    )
    assert result.settled == PARTICIPANTS  # every plan saw its last event

    url = f"{registry.url}/funnel?kecamatan={kecamatan}"
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        for _ in range(300):
            funnel = (await http.get(url)).json()
            counts = {row["stage"]: row["count"] for row in funnel["stages"]}
            if counts == result.intended:
                break
            await asyncio.sleep(0.2)
    assert counts == result.intended
    assert result.intended["training-completed"] > 0 and result.intended["product-listed"] > 0

    # every submission has exactly one outcome
    submitted = {p.data["submission_id"] for p in result.plans}
    await registry.outcomes.caught_up()
    answers = Counter(
        r.json()["submission_id"]
        for r in registry.outcomes.records
        if r.topic != registry.dlq and r.json().get("submission_id") in submitted
    )
    assert set(answers) == submitted and set(answers.values()) == {1}

    # every enrolled participant ends completed or not completed, once
    pids = {p.participant_id for p in result.plans if p.participant_id}
    await coaching.events.caught_up()
    for event in (TrainingEnrolled, TrainingCompleted, TrainingNotCompleted):
        seen = Counter(
            r.json()["participant_id"]
            for r in coaching.events.records
            if r.topic == coaching.topic(event) and r.json()["participant_id"] in pids
        )
        assert set(seen.values()) <= {1}, event.name
    enrolled = {
        r.json()["participant_id"]
        for r in coaching.events.records
        if r.topic == coaching.topic(TrainingEnrolled) and r.json()["participant_id"] in pids
    }
    ended = {
        r.json()["participant_id"]
        for r in coaching.events.records
        if r.topic in (coaching.topic(TrainingCompleted), coaching.topic(TrainingNotCompleted))
        and r.json()["participant_id"] in pids
    }
    assert enrolled == pids == ended
    assert funnel["side_stages"]["training-not-completed"] + counts["training-completed"] == len(
        pids
    )
