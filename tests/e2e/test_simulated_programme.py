"""A few hundred simulated participants through the whole programme: the registry's funnel
equals what the simulator intended, stage by stage (export and naik kelas too) and outcome
by outcome; nothing is lost or doubled; and played on the simulator's compressed calendar,
the funnel's time in stage is the programme's (business time), not the seconds the run took."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from shared.contracts import TrainingCompleted, TrainingEnrolled, TrainingNotCompleted
from tests import auth_helpers, waiting
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

        async def funnel_now() -> Any:
            return (await http.get(url)).json()

        def counts_of(funnel: Any) -> dict[str, int]:
            return {row["stage"]: row["count"] for row in funnel["stages"]}

        funnel = await waiting.until(
            "the funnel and its outcomes to equal the simulator's intent",
            funnel_now,
            done=lambda f: counts_of(f) == result.intended and f["outcomes"] == result.outcomes,
        )
        counts = counts_of(funnel)
    assert counts == result.intended
    assert funnel["outcomes"] == result.outcomes
    for stage in ("training-completed", "product-listed", "export-facilitated", "naik-kelas"):
        assert result.intended[stage] > 0, stage  # every stage exercised, outcomes too
    assert result.outcomes["financing_approved"]["total_idr"] > 0

    # Business time: registrations spread over the programme year, realistic days per stage
    months = [m["month"] for m in funnel["registrations_per_month"]]
    assert (
        len(months) == 12
        and sum(m["participants"] for m in funnel["registrations_per_month"])
        == counts["registered"]
    )
    days = {row["stage"]: row["median_days_from_previous"] for row in funnel["stages"]}
    assert 3 <= days["training-enrolled"] + days["training-completed"] <= 70  # cohort + course
    assert 20 <= days["mentoring-completed"] <= 100  # three visits, weeks apart
    assert days["sales-reported"] is not None and 5 <= days["sales-reported"] <= 70
    assert days["naik-kelas"] is not None and days["naik-kelas"] >= 60  # months of sales
    to_next = {row["stage"]: row["median_days_to_next"] for row in funnel["stages"]}
    assert to_next["registered"] == 0.0  # enrolled when registered (a caused event)
    assert all(to_next[s] and to_next[s] > 1 for s in ("training-enrolled", "product-certified"))

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
